// The OpenAI-compatible request and response shapes, apart from any HTTP: parsing a
// /v1/completions or /v1/chat/completions body into what the router needs (every
// invalid parameter named, wrong types refused, fields that ask for what baton does not
// implement yet refused by name, other unknown fields ignored), the error object (its status, type and code from status_table.hpp) and the usage
// object; openai_server builds the responses and SSE chunks around them. Nothing here
// throws on any JSON value: every integer is range-checked before it is converted, every
// field's type is checked before it is read, and error objects hold valid UTF-8 only, so
// that dumping them with nlohmann's strict default cannot throw either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "launch/serve/status_table.hpp"
#include "runtime/text/chat_template.hpp"
#include "runtime/serving/sampler.hpp"

namespace baton::api {

/// Limits on what one request may ask for; a request past one gets a 400 naming it.
inline constexpr size_t k_max_stop_strings = 64;      ///< entries of 'stop'
inline constexpr size_t k_max_stop_bytes = 1024;      ///< bytes of one stop string
inline constexpr int64_t k_max_tokens_limit = 1000000000;  ///< max_tokens, top_k
inline constexpr int64_t k_max_choices = 128;         ///< n (OpenAI's bound)
inline constexpr int64_t k_max_logprobs = 20;         ///< logprobs (completions), top_logprobs

/// An error as OpenAI reports it: HTTP status and {"error": {message, type, param, code}}.
/// Made by error_for, so that its status, type and code are status_table.hpp's.
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  ///< the offending field ("messages[1].content[0]"), or empty
  std::string code;   ///< e.g. "invalid_api_key", "model_not_found", or empty
  reject_reason reason = reject_reason::invalid_request;  ///< the status table's row
};

/// The error for `why` (its status, type and code from the status table) with the
/// message for people and the offending field, if any.
api_error error_for(reject_reason why, std::string message, std::string param = "");

/// The error object; its strings are made valid UTF-8 (each bad byte becomes U+FFFD),
/// so `error_json(e).dump()` never throws whatever bytes `e` holds.
nlohmann::json error_json(const api_error& e);

/// `text` with every byte that is not part of a well-formed UTF-8 sequence (RFC 3629:
/// no overlong forms, surrogates or code points past U+10FFFF) replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

/// Where a request field is read, as bits of a set: the two completion endpoints and
/// the chat form of POST /tokenize (which renders the same prompt).
enum field_scope : uint8_t {
  in_completions = 1,
  in_chat = 2,
  in_tokenize_chat = 4,
};

/// The first field of `body` that asks for what baton does not implement yet
/// (the legacy function calling, beam search, a suffix...) on an endpoint in
/// `scope`, as a 400 naming it; nothing when each such field is absent, null or holds
/// its default. One table in openai_api.cpp lists them: a row goes when its feature
/// lands. A value of the wrong type is a 400 too ("'echo' must be a boolean").
/// (best_of, whose accepted value is the request's n, is parse_request's.)
std::optional<api_error> refuse_unsupported(const nlohmann::json& body, uint8_t scope);

/// 'messages' of a chat request (or of /tokenize's chat form): a non-empty array of
/// {role, content}, content a string or a list of text parts; "developer" reads as
/// "system". A `tool` message becomes Llama 3.1's `ipython` turn, and an assistant
/// message's `tool_calls` its call's JSON (launch/serve/tool_calls.hpp).
std::variant<std::vector<chat_message>, api_error> parse_messages(const nlohmann::json& body);

/// One entry of `tools` (type "function").
struct tool_function {
  std::string name;         ///< ^[a-zA-Z0-9_-]{1,64}$, unique in the request
  std::string description;
  std::string parameters;   ///< its JSON Schema as JSON text ("{}" when absent)
  bool strict = false;      ///< OpenAI's `strict`: a required or named call refuses what
                            ///< the grammar cannot enforce in it
};

/// `tool_choice`: whether the reply may, or must, call a tool.
enum class tool_choice_mode : uint8_t {
  none,       ///< no tool: the tools are not even shown to the model
  automatic,  ///< "auto": the model chooses between a call and text
  required,   ///< a call to any of the tools
  named,      ///< {"type": "function", "function": {"name": N}}: a call to N
};

struct completion_request {
  bool chat = false;
  std::string model;
  std::string prompt;                   ///< /v1/completions: the text
  std::vector<int32_t> prompt_tokens;   ///< /v1/completions: ids, each in [0, INT32_MAX]
                                        ///< (the caller checks them against n_vocab)
  std::vector<chat_message> messages;   ///< /v1/chat/completions
  int32_t max_tokens = -1;              ///< -1: until the context ends (chat) / 16 (completions)
  sampling_params sampling;
  bool seeded = false;                  ///< a seed was given (else each request draws one)
  /// Choices in the reply, in [1, k_max_choices]; choice i samples with seed + i.
  int32_t n = 1;
  std::vector<std::string> stop;        ///< at most k_max_stop_strings of k_max_stop_bytes
  bool stream = false;
  bool include_usage = false;           ///< stream_options.include_usage
  bool logprobs = false;                ///< the chosen tokens' log-probabilities
  bool ignore_eos = false;              ///< vLLM's extension, for benchmarks
  std::string user;
  /// The reply must be one JSON document matching this JSON Schema (response_format
  /// json_object / json_schema, or a required or named tool call); empty: free text.
  std::string json_schema;
  /// With json_schema: refuse a keyword the grammar cannot enforce (OpenAI's `strict`)
  /// instead of leaving it out with a warning.
  bool schema_strict = false;
  /// logit_bias: token id and the bias added to its logit, in [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias;
  /// Tools the model may call (chat; launch/serve/tool_calls.hpp), and `tool_choice`.
  std::vector<tool_function> tools;
  tool_choice_mode tool_choice = tool_choice_mode::automatic;
  std::string tool_choice_name;         ///< the function a `named` choice must call
  bool parallel_tool_calls = true;      ///< accepted; a reply holds at most one call
};

/// Parses a request body (already JSON: the caller parses hostile bytes with
/// allow_exceptions = false); `chat` picks the endpoint's shape. Never throws.
/// Integers: max_tokens / max_completion_tokens in [1, 1e9], top_k in [-1, 1e9] (-1 and
/// 0: off), n in [1, 128] (best_of absent, null or equal to n: baton samples no extra
/// choices to pick from), logprobs in [0, 20] for completions (a boolean for chat),
/// top_logprobs in [0, 20], seed any int64 or uint64 (a negative seed is taken modulo
/// 2^64; -1 draws a random one, as llama.cpp's server does).
std::variant<completion_request, api_error> parse_request(const nlohmann::json& body, bool chat);

/// Token usage, as responses and the final stream chunk carry it.
nlohmann::json usage_json(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens);

}  // namespace baton::api
