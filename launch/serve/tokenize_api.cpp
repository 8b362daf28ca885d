// tokenize_api.hpp: the two bodies read through field_reader, the chat form through the
// completion parser's parse_messages, its tools (tool_calls.hpp) and its table of fields
// not implemented yet.
#include "launch/serve/tokenize_api.hpp"

#include <optional>
#include <vector>

#include "launch/serve/field_reader.hpp"
#include "launch/serve/tool_calls.hpp"
#include "runtime/text/chat_prompt.hpp"

namespace baton::api {

namespace {

using nlohmann::json;

/// What both bodies start with: an object, and no other model's name.
std::optional<api_error> check_common(const json& body, const tokenize_settings& s) {
  if (!body.is_object()) {
    return invalid("", "the request body must be a JSON object, got " + shown(body));
  }
  field_reader f(body);
  const auto model = f.string("model");
  if (f.error()) {
    return f.error();
  }
  if (model && !model->empty() && *model != s.model_name) {
    return error_for(reject_reason::model_not_found,
                     "The model " + excerpt(*model) + " does not exist (this server serves '" +
                         s.model_name + "')",
                     "model");
  }
  return std::nullopt;
}

bool present(const json& body, const char* key) {
  const auto it = body.find(key);
  return it != body.end() && !it->is_null();
}

}  // namespace

std::variant<json, api_error> tokenize_reply(const json& body, const tokenizer& tok,
                                             const tokenize_settings& s) {
  if (auto e = check_common(body, s)) {
    return *e;
  }
  const bool chat = present(body, "messages");
  if (chat && present(body, "prompt")) {
    return invalid("prompt", "give either 'prompt' (a text) or 'messages' (a conversation), "
                             "not both");
  }
  if (!chat && !present(body, "prompt")) {
    return invalid("prompt", "'prompt' (a text) or 'messages' (a conversation) is required");
  }
  field_reader f(body);
  const bool token_strs = f.boolean("return_token_strs").value_or(false);
  std::vector<int32_t> ids;
  if (chat) {
    const bool generation_prompt = f.boolean("add_generation_prompt").value_or(true);
    (void)f.boolean("add_special_tokens");  // type-checked; changes nothing (see the header)
    if (f.error()) {
      return *f.error();
    }
    if (auto e = refuse_unsupported(body, in_tokenize_chat)) {
      return *e;
    }
    auto messages = parse_messages(body);
    if (auto* e = std::get_if<api_error>(&messages)) {
      return *e;
    }
    completion_request r;  // for its tools, shown to the model as a chat completion shows them
    r.chat = true;
    r.messages = std::move(std::get<std::vector<chat_message>>(messages));
    if (auto e = parse_tools(body, r)) {
      return *e;
    }
    auto t = encode_chat(tok, r.messages, generation_prompt, s.allow_special_tokens_in_chat);
    if (!t) {
      return invalid("messages", t.err().message);
    }
    ids = std::move(*t);
  } else {
    const auto prompt = f.string("prompt");
    const bool special = f.boolean("add_special_tokens").value_or(true);
    if (f.error()) {
      return *f.error();
    }
    // special-token text is read as such, as for /v1/completions
    ids = tok.encode(*prompt, special, true);
  }
  json strs = nullptr;
  if (token_strs) {
    strs = json::array();
    for (const int32_t id : ids) {
      strs.push_back(tok.token_text(id));
    }
  }
  return json{{"count", ids.size()},
              {"max_model_len", s.n_ctx},
              {"tokens", ids},
              {"token_strs", std::move(strs)}};
}

std::variant<json, api_error> detokenize_reply(const json& body, const tokenizer& tok,
                                               const tokenize_settings& s) {
  if (auto e = check_common(body, s)) {
    return *e;
  }
  const auto it = body.find("tokens");
  if (it == body.end() || !it->is_array()) {
    return invalid("tokens", "'tokens' must be a list of token ids, got " +
                                 (it == body.end() ? std::string("nothing") : shown(*it)));
  }
  const int64_t n_vocab = tok.n_vocab();
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    // the range is checked on the int64 or uint64 nlohmann holds, before any conversion
    const bool in_range =
        t.is_number_integer() &&
        (t.is_number_unsigned() ? t.get<uint64_t>() < static_cast<uint64_t>(n_vocab)
                                : t.get<int64_t>() >= 0 && t.get<int64_t>() < n_vocab);
    if (!in_range) {
      const std::string at = "tokens[" + std::to_string(i) + "]";
      return invalid(at, "'" + at + "' must be a token id, an integer between 0 and " +
                             std::to_string(n_vocab - 1) + ", got " + shown(t));
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  decode_options o;
  o.render_special = true;
  auto text = tok.decode(ids, o);
  if (!text) {
    return invalid("tokens", text.err().message);
  }
  return json{{"prompt", std::move(*text)}};
}

}  // namespace baton::api
