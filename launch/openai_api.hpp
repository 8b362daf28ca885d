// The OpenAI-compatible request and response shapes, apart from any HTTP: parsing a
// /v1/completions or /v1/chat/completions body into what the router needs (every
// invalid parameter named, wrong types refused, unknown fields ignored as OpenAI does),
// the error object, and the JSON of responses and SSE chunks.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "runtime/chat_template.hpp"
#include "runtime/sampler.hpp"

namespace baton::api {

/// An error as OpenAI reports it: HTTP status and {"error": {message, type, param, code}}.
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  ///< the offending field, or empty
  std::string code;   ///< e.g. "invalid_api_key", "model_not_found", or empty
};

nlohmann::json error_json(const api_error& e);

struct completion_request {
  bool chat = false;
  std::string model;
  std::string prompt;                   ///< /v1/completions: the text
  std::vector<int32_t> prompt_tokens;   ///< /v1/completions: token ids instead of text
  std::vector<chat_message> messages;   ///< /v1/chat/completions
  int32_t max_tokens = -1;              ///< -1: until the context ends (chat) / 16 (completions)
  sampling_params sampling;
  bool seeded = false;                  ///< a seed was given (else each request draws one)
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;           ///< stream_options.include_usage
  bool logprobs = false;                ///< the chosen tokens' log-probabilities
  bool ignore_eos = false;              ///< vLLM's extension, for benchmarks
  std::string user;
};

/// Parses a request body (already JSON); `chat` picks the endpoint's shape.
std::variant<completion_request, api_error> parse_request(const nlohmann::json& body, bool chat);

/// Token usage, as responses and the final stream chunk carry it.
nlohmann::json usage_json(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens);

}  // namespace baton::api
