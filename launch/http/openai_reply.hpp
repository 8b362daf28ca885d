// Reading the replies of an OpenAI-compatible server, for the commands that talk to one
// (`baton client`, `baton bench serve`): the text and usage of a /v1/completions or
// /v1/chat/completions reply, of each chunk of its event stream, the model GET /v1/models
// lists first, and the message of an error object. Its own file because both commands read the same shapes and neither
// needs the other's flags; apart from http_client because it is JSON, not transport, and
// a unit test reads sample replies without a server. The server writes these shapes in
// launch/serve/openai_api; this side is lenient as clients of vLLM are: a field that is
// absent or null reads as empty, and only a chunk that is not JSON, or an error event,
// is an error.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "runtime/system/error.hpp"

namespace baton::cli {

/// Which endpoint answered, so where the text is: choices[0].text (completions) or
/// choices[0].message.content / .delta.content (chat).
enum class openai_route { completions, chat };

/// What the commands read of one reply or one streamed chunk.
struct openai_reply {
  /// choices[0].text, .message.content (chat reply) or .delta.content (chat chunk);
  /// "" when absent, null or not a string (the role chunk, the finish_reason chunk).
  std::string text;
  nlohmann::json usage;            ///< the usage object; null when there is none
  int64_t prompt_tokens = -1;      ///< usage.prompt_tokens; -1 when absent or not an integer
  int64_t completion_tokens = -1;  ///< usage.completion_tokens; -1 likewise
};

/// Reads a whole (unstreamed) reply body. Never fails: a reply without choices has "".
openai_reply read_openai_reply(const nlohmann::json& reply, openai_route route);

/// Parses one `data:` payload of an event stream (without "data: "; `[DONE]` is not a
/// chunk). Errors: "a streamed event is not a JSON object: <its first 80 bytes>", and an
/// error event sent after the 200 (an object with "error"), whose message is the server's.
result<openai_reply> parse_openai_chunk(std::string_view data, openai_route route);

/// The id of the first model a GET /v1/models reply lists (data[0].id); an error naming
/// the --model flag when it lists none.
result<std::string> first_model_id(const nlohmann::json& models);

/// The message of an error reply's body: error.message of an OpenAI error object,
/// {"error": "<text>"}, or older vLLM's {"object": "error", "message": ...}; else the body
/// itself, trimmed and cut to 200 bytes ("..." appended); "" for an empty body.
std::string openai_error_message(std::string_view body);

}  // namespace baton::cli
