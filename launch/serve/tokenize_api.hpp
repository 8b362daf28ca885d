// POST /tokenize and POST /detokenize as vLLM's server has them, apart from any HTTP:
// a body in, the reply's JSON or an api_error out. /tokenize takes a text
// ({"prompt", "add_special_tokens": true}) or a conversation ({"messages",
// "add_generation_prompt": true}, and `tools` / `tool_choice` as a chat completion takes
// them) and answers {"count", "max_model_len", "tokens",
// "token_strs"}; the conversation's ids are the very prompt /v1/chat/completions would
// compute from it (the same template and encode_chat), so a client can count a chat's
// tokens before it sends it. /detokenize takes {"tokens": [ids]} and answers
// {"prompt": text}, control tokens written out ("<|begin_of_text|>"), as vLLM's does.
// Nothing here throws on any JSON value; every id is range-checked before use.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "launch/serve/openai_api.hpp"
#include "runtime/text/tokenizer.hpp"

namespace baton::api {

/// What both endpoints need to know of the server.
struct tokenize_settings {
  std::string model_name;                      ///< a request's 'model', if any, must be it
  int64_t n_ctx = 0;                           ///< answered as max_model_len
  bool allow_special_tokens_in_chat = false;   ///< as for chat completions
};

/// POST /tokenize. The chat form's `add_special_tokens` (vLLM's default false) changes
/// nothing: baton's templates hold no BOS text, the tokenizer adds one BOS either way,
/// as it does for a chat completion (vLLM would add a second one for true).
std::variant<nlohmann::json, api_error> tokenize_reply(const nlohmann::json& body,
                                                       const tokenizer& tok,
                                                       const tokenize_settings& s);

/// POST /detokenize: each id must lie in [0, n_vocab); the error names the first that
/// does not, and its index.
std::variant<nlohmann::json, api_error> detokenize_reply(const nlohmann::json& body,
                                                         const tokenizer& tok,
                                                         const tokenize_settings& s);

}  // namespace baton::api
