// The OpenAI request parser and reply pieces of openai_api.hpp. Defaults follow OpenAI
// (and vLLM's server): temperature 1, top_p 1, no top-k, no min-p, no penalties;
// completions default to 16 tokens. Fields are read through `field_reader`
// (field_reader.hpp), which checks a value's type, and an integer's range, before
// converting it; the first bad field is the error. Fields baton does not implement yet
// are one table (`k_unsupported`), each row with the values that ask for nothing new;
// best_of, whose accepted value is n's, is read beside n instead.
// One file because it is one parser: every field's check ends in the same api_error
// shape, and the fuzz target and the unit test drive it whole.
#include "launch/serve/openai_api.hpp"

#include <limits>
#include <optional>
#include <random>

#include "launch/serve/field_reader.hpp"
#include "launch/serve/tool_calls.hpp"

namespace baton::api {

namespace {

using nlohmann::json;

// -- fields not implemented yet -----------------------------------------------------------

/// The JSON type a field's value must have.
enum class json_kind { boolean, integer, string, list, object, string_or_object, any };

bool has_kind(const json& v, json_kind k) {
  switch (k) {
    case json_kind::boolean: return v.is_boolean();
    case json_kind::integer: return v.is_number_integer();
    case json_kind::string: return v.is_string();
    case json_kind::list: return v.is_array();
    case json_kind::object: return v.is_object();
    case json_kind::string_or_object: return v.is_string() || v.is_object();
    case json_kind::any: return true;
  }
  return false;
}

const char* kind_name(json_kind k) {
  switch (k) {
    case json_kind::boolean: return "a boolean";
    case json_kind::integer: return "an integer";
    case json_kind::string: return "a string";
    case json_kind::list: return "a list";
    case json_kind::object: return "an object";
    case json_kind::string_or_object: return "a string or an object";
    case json_kind::any: return "any value";
  }
  return "";
}

/// A field whose values other than `accepted` ones would change the answer in a way baton
/// does not implement yet: refused by name, never ignored. Delete the row when the
/// feature lands.
struct unsupported_field {
  const char* name;
  json_kind kind;
  bool (*accepted)(const json& v);  ///< given a value of `kind`: it asks for nothing new
  const char* feature;              ///< what other values ask for
  const char* accepted_text;        ///< the accepted values, for the message; "" for none
  uint8_t scope;                    ///< field_scope bits: where the field is read
};

bool is_false(const json& v) { return v == false; }
bool is_true(const json& v) { return v == true; }
bool is_zero(const json& v) { return v == 0; }
bool is_none(const json& v) { return v == "none"; }
bool never(const json&) { return false; }
bool is_empty(const json& v) {
  return v.is_string() ? v.get_ref<const std::string&>().empty() : v.empty();
}

constexpr uint8_t k_completions = in_completions | in_chat;
constexpr uint8_t k_chat = in_chat | in_tokenize_chat;

// OpenAI's fields first, then vLLM's extensions, then llama.cpp's.
const unsupported_field k_unsupported[] = {
    {"functions", json_kind::list, is_empty, "function calling", "an empty list", in_chat},
    {"function_call", json_kind::string_or_object, is_none, "function calling", R"("none")",
     in_chat},
    {"echo", json_kind::boolean, is_false, "echoing the prompt", "false", k_completions},
    {"suffix", json_kind::string, is_empty, "a suffix (insertion)", R"("")", in_completions},
    {"guided_regex", json_kind::any, never, "structured output", "", k_completions},
    {"guided_choice", json_kind::any, never, "structured output", "", k_completions},
    {"guided_grammar", json_kind::any, never, "structured output", "", k_completions},
    {"structured_outputs", json_kind::any, never, "structured output", "", k_completions},
    {"min_tokens", json_kind::integer, is_zero, "a minimum length", "0", k_completions},
    {"stop_token_ids", json_kind::list, is_empty, "stop token ids", "an empty list",
     k_completions},
    {"include_stop_str_in_output", json_kind::boolean, is_false, "stop strings in the output",
     "false", k_completions},
    {"use_beam_search", json_kind::boolean, is_false, "beam search", "false", k_completions},
    {"allowed_token_ids", json_kind::list, is_empty, "a restricted vocabulary", "an empty list",
     k_completions},
    {"bad_words", json_kind::list, is_empty, "banned words", "an empty list", k_completions},
    {"prompt_logprobs", json_kind::any, never, "prompt log-probabilities", "", k_completions},
    {"add_generation_prompt", json_kind::boolean, is_true,
     "a prompt without the assistant's header", "true", in_chat},
    {"continue_final_message", json_kind::boolean, is_false, "continuing the last message",
     "false", k_chat},
    {"chat_template", json_kind::string, is_empty, "a chat template of the request's own",
     R"("")", k_chat},
    {"chat_template_kwargs", json_kind::object, is_empty, "chat template arguments", "{}",
     k_chat},
    {"grammar", json_kind::string, is_empty, "grammar-constrained sampling", R"("")",
     k_completions},
};

/// A refused value as the message names it: "= true", "with 2 entries", "of type
/// 'json_schema'".
std::string described(const json& v) {
  if (v.is_string()) {
    return "= " + excerpt(v.get_ref<const std::string&>());
  }
  if (v.is_array()) {
    return "with " + std::to_string(v.size()) + (v.size() == 1 ? " entry" : " entries");
  }
  if (v.is_object()) {
    const auto t = v.find("type");
    if (t != v.end() && t->is_string()) {
      return "of type " + excerpt(t->get_ref<const std::string&>());
    }
    return "with " + std::to_string(v.size()) + (v.size() == 1 ? " key" : " keys");
  }
  return "= " + shown(v);
}

/// messages[i] of a chat request: its role and text.
std::variant<chat_message, api_error> parse_message_text(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) {
    return invalid(where, "'" + where + "' must be an object with 'role' and 'content', got " +
                              shown(m));
  }
  chat_message cm;
  auto role = m.find("role");
  if (role == m.end() || !role->is_string()) {
    return invalid(where + ".role", "'" + where + ".role' must be a string, got " +
                                        (role == m.end() ? std::string("nothing") : shown(*role)));
  }
  cm.role = role->get<std::string>();
  if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" &&
      cm.role != "developer" && cm.role != "tool") {
    return invalid(where + ".role", "'" + where + ".role' must be system, developer, user, "
                                    "assistant or tool, got " + excerpt(cm.role));
  }
  if (cm.role == "developer") {
    cm.role = "system";
  }
  auto content = m.find("content");
  if (content == m.end() || content->is_null()) {
    return cm;  // an assistant turn that only called tools
  }
  if (content->is_string()) {
    cm.content = content->get<std::string>();
    return cm;
  }
  if (!content->is_array()) {
    return invalid(where + ".content", "'" + where + ".content' must be a string or an array of "
                                       "text parts, got " + shown(*content));
  }
  for (size_t j = 0; j < content->size(); ++j) {
    const json& part = (*content)[j];
    const std::string at = where + ".content[" + std::to_string(j) + "]";
    const std::string expected = "'" + at + "' must be {\"type\": \"text\", \"text\": \"...\"}"
                                 " (only text parts are supported), got ";
    if (!part.is_object()) {
      return invalid(at, expected + shown(part));
    }
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return invalid(at, expected + "'type' " +
                             (type == part.end() ? std::string("missing") : shown(*type)));
    }
    if (type->get_ref<const std::string&>() != "text") {
      return invalid(at, expected + "type " + excerpt(type->get<std::string>()));
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return invalid(at, expected + "'text' " +
                             (text == part.end() ? std::string("missing") : shown(*text)));
    }
    cm.content += text->get_ref<const std::string&>();
  }
  return cm;
}

/// messages[i] of a chat request as a turn of Llama 3.1's format (tool_calls.hpp).
std::variant<chat_message, api_error> parse_message(const json& m, size_t i) {
  auto cm = parse_message_text(m, i);
  if (auto* c = std::get_if<chat_message>(&cm)) {
    if (auto e = read_tool_turn(m, "messages[" + std::to_string(i) + "]", *c)) {
      return *e;
    }
  }
  return cm;
}

/// 'prompt' of a completions request: text, a list of one text, or token ids.
std::optional<api_error> parse_prompt(const json& body, completion_request& r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) {
    return invalid("prompt", "'prompt' is required");
  }
  if (it->is_string()) {
    r.prompt = it->get<std::string>();
    return std::nullopt;
  }
  if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    r.prompt = (*it)[0].get<std::string>();
    return std::nullopt;
  }
  if (!it->is_array() || it->empty() || !(*it)[0].is_number()) {
    return invalid("prompt", "'prompt' must be a string, a list of one string, or a list of "
                             "token ids (batches of prompts: send one request each), got " +
                                 shown(*it));
  }
  r.prompt_tokens.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string at = "prompt[" + std::to_string(i) + "]";
    constexpr int64_t max_id = std::numeric_limits<int32_t>::max();
    const std::string expected = "'" + at + "' must be a token id, an integer between 0 and " +
                                 std::to_string(max_id) + ", got ";
    if (!t.is_number_integer()) {
      return invalid(at, expected + shown(t));
    }
    if (t.is_number_unsigned() ? t.get<uint64_t>() > static_cast<uint64_t>(max_id)
                               : (t.get<int64_t>() < 0 || t.get<int64_t>() > max_id)) {
      return invalid(at, expected + t.dump());
    }
    r.prompt_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

/// 'stop': a string or a list of strings, under the limits of openai_api.hpp.
std::optional<api_error> parse_stop(const json& body, std::vector<std::string>& out) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) {
    return std::nullopt;
  }
  const auto one = [&out](const json& s, const std::string& at) -> std::optional<api_error> {
    if (!s.is_string()) {
      return invalid(at, "'" + at + "' must be a string, got " + shown(s));
    }
    const auto& text = s.get_ref<const std::string&>();
    if (text.size() > k_max_stop_bytes) {
      return invalid(at, "'" + at + "' may be at most " + std::to_string(k_max_stop_bytes) +
                             " bytes long, got " + std::to_string(text.size()));
    }
    out.push_back(text);
    return std::nullopt;
  };
  if (it->is_string()) {
    return one(*it, "stop");
  }
  if (!it->is_array()) {
    return invalid("stop", "'stop' must be a string or a list of strings, got " + shown(*it));
  }
  if (it->size() > k_max_stop_strings) {
    return invalid("stop", "'stop' may hold at most " + std::to_string(k_max_stop_strings) +
                               " strings, got " + std::to_string(it->size()));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    if (auto e = one((*it)[i], "stop[" + std::to_string(i) + "]")) {
      return e;
    }
  }
  return std::nullopt;
}

/// 'seed': the whole int64 and uint64 ranges (a negative seed modulo 2^64); -1 and
/// absent both mean a fresh random seed.
std::optional<api_error> parse_seed(const json& body, completion_request& r) {
  auto it = body.find("seed");
  if (it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) {
      return invalid("seed", "'seed' must be an integer between -9223372036854775808 and "
                             "18446744073709551615, got " + shown(*it));
    }
    const bool random = !it->is_number_unsigned() && it->get<int64_t>() == -1;
    if (!random) {
      r.sampling.seed = it->is_number_unsigned()
                            ? it->get<uint64_t>()
                            : static_cast<uint64_t>(it->get<int64_t>());
      r.seeded = true;
      return std::nullopt;
    }
  }
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  r.sampling.seed = rng();
  return std::nullopt;
}

/// best_of: baton samples no extra choices to pick the best from, so best_of may only
/// restate n (absent, null or equal to it). vLLM's rule, best_of >= n, is said first.
std::optional<api_error> parse_best_of(const json& body, int32_t n) {
  const auto it = body.find("best_of");
  if (it == body.end() || it->is_null()) {
    return std::nullopt;
  }
  if (!it->is_number_integer()) {
    return invalid("best_of", "'best_of' must be an integer, got " + shown(*it));
  }
  // compared as nlohmann holds it: a uint64 past INT64_MAX must not wrap
  const bool below = it->is_number_unsigned() ? it->get<uint64_t>() < static_cast<uint64_t>(n)
                                              : it->get<int64_t>() < n;
  if (below) {
    return invalid("best_of", "'best_of' (" + shown(*it) + ") must be >= 'n' (" +
                                  std::to_string(n) + ")");
  }
  if (*it == n) {
    return std::nullopt;
  }
  return invalid("best_of", "'best_of' = " + shown(*it) +
                                ": best-of-n sampling is not supported by this server yet "
                                "(accepted: null or the value of 'n', " + std::to_string(n) + ")");
}

/// A schema given as an object, or as JSON text (vLLM's guided_json takes both).
std::optional<std::string> schema_text(const json& v) {
  if (v.is_object() || v.is_boolean()) {
    return v.dump();
  }
  if (v.is_string()) {
    const json parsed = json::parse(v.get_ref<const std::string&>(), nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_boolean())) {
      return v.get<std::string>();
    }
  }
  return std::nullopt;
}

/// response_format (OpenAI's json_object and json_schema; llama.cpp's json_object with a
/// "schema"), vLLM's guided_json and llama.cpp's json_schema: at most one of them.
std::optional<api_error> parse_structured_output(const json& body, completion_request& r) {
  const char* from = nullptr;
  auto take = [&](const char* field, std::string schema, bool strict) -> std::optional<api_error> {
    if (from) {
      return invalid(field, std::string("'") + field + "' and '" + from +
                                "' both constrain the output: send one of them");
    }
    from = field;
    r.json_schema = std::move(schema);
    r.schema_strict = strict;
    return std::nullopt;
  };
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return invalid("response_format", "'response_format' must be an object such as "
                                        "{\"type\": \"json_object\"}, got " + shown(*it));
    }
    const auto type = it->find("type");
    if (type == it->end() || !type->is_string()) {
      return invalid("response_format.type",
                     "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
    }
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "json_object") {
      std::string schema = R"({"type":"object"})";
      if (auto sc = it->find("schema"); sc != it->end() && !sc->is_null()) {
        auto text = schema_text(*sc);
        if (!text) {
          return invalid("response_format.schema",
                         "'response_format.schema' must be a JSON Schema object, got " + shown(*sc));
        }
        schema = *text;
      }
      if (auto e = take("response_format", std::move(schema), false)) {
        return e;
      }
    } else if (t == "json_schema") {
      const auto js = it->find("json_schema");
      if (js == it->end() || !js->is_object()) {
        return invalid("response_format.json_schema",
                       "'response_format.json_schema' must be an object {\"name\", \"schema\", "
                       "\"strict\"}");
      }
      if (auto n = js->find("name"); n != js->end() && !n->is_string()) {
        return invalid("response_format.json_schema.name",
                       "'response_format.json_schema.name' must be a string, got " + shown(*n));
      }
      bool strict = false;
      if (auto st = js->find("strict"); st != js->end() && !st->is_null()) {
        if (!st->is_boolean()) {
          return invalid("response_format.json_schema.strict",
                         "'response_format.json_schema.strict' must be a boolean, got " + shown(*st));
        }
        strict = st->get<bool>();
      }
      std::string schema = "{}";
      if (auto sc = js->find("schema"); sc != js->end() && !sc->is_null()) {
        auto text = schema_text(*sc);
        if (!text) {
          return invalid("response_format.json_schema.schema",
                         "'response_format.json_schema.schema' must be a JSON Schema object, got " +
                             shown(*sc));
        }
        schema = *text;
      }
      if (auto e = take("response_format", std::move(schema), strict)) {
        return e;
      }
    } else if (t != "text") {
      return invalid("response_format.type", "'response_format.type' must be \"text\", "
                                             "\"json_object\" or \"json_schema\", got " + shown(*type));
    }
  }
  for (const char* field : {"guided_json", "json_schema"}) {
    if (auto it = body.find(field); it != body.end() && !it->is_null()) {
      auto text = schema_text(*it);
      if (!text) {
        return invalid(field, std::string("'") + field + "' must be a JSON Schema object, got " +
                                  shown(*it));
      }
      if (auto e = take(field, std::move(*text), false)) {
        return e;
      }
    }
  }
  return std::nullopt;
}

/// logit_bias: {"token id": bias in [-100, 100]} (ids are checked against the
/// vocabulary by the server).
std::optional<api_error> parse_logit_bias(const json& body, completion_request& r) {
  const auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) {
    return std::nullopt;
  }
  if (!it->is_object()) {
    return invalid("logit_bias", "'logit_bias' must be an object {\"token id\": bias}, got " +
                                     shown(*it));
  }
  constexpr size_t k_max_bias_entries = 1024;
  if (it->size() > k_max_bias_entries) {
    return invalid("logit_bias", "'logit_bias' has " + std::to_string(it->size()) +
                                     " entries; at most " + std::to_string(k_max_bias_entries));
  }
  for (auto e = it->begin(); e != it->end(); ++e) {
    const std::string& k = e.key();
    const bool digits = !k.empty() && k.size() <= 10 &&
                        std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; });
    const long long id = digits ? std::stoll(k) : -1;
    if (!digits || id > INT32_MAX) {
      return invalid("logit_bias", "'logit_bias' keys must be token ids (\"1234\"), got " +
                                       shown(json(valid_utf8(k))));
    }
    if (!e.value().is_number() || e.value().get<double>() < -100 || e.value().get<double>() > 100) {
      return invalid("logit_bias", "'logit_bias' values must be numbers in [-100, 100], got " +
                                       shown(e.value()) + " for token " + k);
    }
    r.logit_bias.emplace_back(static_cast<int32_t>(id), e.value().get<float>());
  }
  return std::nullopt;
}

/// Appends the UTF-8 bytes of U+FFFD.
void replacement(std::string& out) {
  out += "\xEF\xBF\xBD";
}

}  // namespace

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // the sequence length and the range its second byte must lie in (RFC 3629's table)
    size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      lo = c == 0xE0 ? 0xA0 : 0x80;
      hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      lo = c == 0xF0 ? 0x90 : 0x80;
      hi = c == 0xF4 ? 0x8F : 0xBF;
    }
    size_t good = 0;  // bytes of a well-formed sequence starting at i
    if (n > 0 && i + n <= s.size()) {
      good = n;
      for (size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        const bool in_range = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!in_range) {
          good = 0;
          break;
        }
      }
    }
    if (good == 0) {
      replacement(out);
      ++i;
      continue;
    }
    out.append(s.substr(i, good));
    i += good;
  }
  return out;
}

api_error error_for(reject_reason why, std::string message, std::string param) {
  const reply_status r = status_of(why);
  return api_error{r.status, std::move(message), r.type, std::move(param), r.code, why};
}

json error_json(const api_error& e) {
  return {{"error",
           {{"message", valid_utf8(e.message)},
            {"type", valid_utf8(e.type)},
            {"param", e.param.empty() ? json(nullptr) : json(valid_utf8(e.param))},
            {"code", e.code.empty() ? json(nullptr) : json(valid_utf8(e.code))}}}};
}

std::optional<api_error> refuse_unsupported(const json& body, uint8_t scope) {
  for (const unsupported_field& f : k_unsupported) {
    if ((f.scope & scope) == 0) {
      continue;
    }
    const auto it = body.find(f.name);
    if (it == body.end() || it->is_null()) {
      continue;
    }
    const std::string name = f.name;
    if (!has_kind(*it, f.kind)) {
      return invalid(name, "'" + name + "' must be " + kind_name(f.kind) + ", got " + shown(*it));
    }
    if (f.accepted(*it)) {
      continue;
    }
    std::string message = "'" + name + "' " + described(*it) + ": " + f.feature +
                          " is not supported by this server yet";
    if (*f.accepted_text != '\0') {
      message += std::string(" (accepted: ") + f.accepted_text + ")";
    }
    return invalid(name, message);
  }
  return std::nullopt;
}

std::variant<std::vector<chat_message>, api_error> parse_messages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty()) {
    return invalid("messages", "'messages' must be a non-empty array of {role, content}, got " +
                                   (it == body.end() ? std::string("nothing")
                                    : it->is_array() ? std::string("[]")
                                                     : shown(*it)));
  }
  std::vector<chat_message> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    auto m = parse_message((*it)[i], i);
    if (auto* e = std::get_if<api_error>(&m)) {
      return *e;
    }
    out.push_back(std::move(std::get<chat_message>(m)));
  }
  return out;
}

std::variant<completion_request, api_error> parse_request(const json& body, bool chat) {
  if (!body.is_object()) {
    return invalid("", std::string("the request body must be a JSON object, got ") + shown(body));
  }
  completion_request r;
  r.chat = chat;
  // OpenAI's defaults, not llama.cpp's
  r.sampling.temperature = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1.0f;
  r.sampling.min_p = 0.0f;
  field_reader f(body);
  if (auto v = f.string("model")) {
    r.model = std::move(*v);
  }
  if (f.error()) {
    return *f.error();
  }
  if (auto e = refuse_unsupported(body, chat ? in_chat : in_completions)) {
    return *e;
  }
  if (chat) {
    auto messages = parse_messages(body);
    if (auto* e = std::get_if<api_error>(&messages)) {
      return *e;
    }
    r.messages = std::move(std::get<std::vector<chat_message>>(messages));
  } else {
    if (auto e = parse_prompt(body, r)) {
      return *e;
    }
    r.max_tokens = 16;
  }
  if (auto v = f.integer("max_tokens", 1, k_max_tokens_limit)) {
    r.max_tokens = static_cast<int32_t>(*v);
  }
  if (auto v = f.integer("max_completion_tokens", 1, k_max_tokens_limit)) {
    r.max_tokens = static_cast<int32_t>(*v);
  }
  if (auto v = f.number("temperature", 0, 2)) {
    r.sampling.temperature = static_cast<float>(*v);
  }
  if (auto v = f.number("top_p", 1e-9, 1)) {
    r.sampling.top_p = static_cast<float>(*v);
  }
  if (auto v = f.integer("top_k", -1, k_max_tokens_limit)) {
    r.sampling.top_k = *v < 0 ? 0 : static_cast<int32_t>(*v);  // vLLM: -1 = off
  }
  if (auto v = f.number("min_p", 0, 1)) {
    r.sampling.min_p = static_cast<float>(*v);
  }
  if (auto v = f.number("presence_penalty", -2, 2)) {
    r.sampling.presence_penalty = static_cast<float>(*v);
  }
  if (auto v = f.number("frequency_penalty", -2, 2)) {
    r.sampling.frequency_penalty = static_cast<float>(*v);
  }
  if (auto v = f.number("repetition_penalty", 1e-9, static_cast<double>(k_max_tokens_limit))) {
    r.sampling.repeat_penalty = static_cast<float>(*v);
  }
  if (auto v = f.integer("n", 1, k_max_choices)) {
    r.n = static_cast<int32_t>(*v);
  }
  if (auto v = f.boolean("stream")) {
    r.stream = *v;
  }
  if (auto v = f.boolean("ignore_eos")) {
    r.ignore_eos = *v;
  }
  if (auto v = f.string("user")) {
    r.user = std::move(*v);
  }
  if (f.error()) {
    return *f.error();
  }
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return invalid("stream_options", "'stream_options' must be an object, got " + shown(*it));
    }
    field_reader options(*it, "stream_options.");
    if (auto v = options.boolean("include_usage")) {
      r.include_usage = *v;
    }
    if (options.error()) {
      return *options.error();
    }
  }
  if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    if (it->is_boolean()) {
      r.logprobs = it->get<bool>();
    } else if (chat) {
      return invalid("logprobs", "'logprobs' must be a boolean, got " + shown(*it));
    } else if (auto n = f.integer("logprobs", 0, k_max_logprobs)) {
      r.logprobs = true;  // completions: logprobs = N alternatives per position
      r.sampling.top_logprobs = static_cast<int32_t>(*n);
    } else {
      return *f.error();
    }
  }
  r.sampling.logprobs = r.logprobs;
  if (chat) {
    const auto top = f.integer("top_logprobs", 0, k_max_logprobs).value_or(0);
    if (f.error()) {
      return *f.error();
    }
    if (top > 0 && !r.logprobs) {
      return invalid("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    r.sampling.top_logprobs = static_cast<int32_t>(top);
  }
  if (auto e = parse_best_of(body, r.n)) {
    return *e;
  }
  if (auto e = parse_stop(body, r.stop)) {
    return *e;
  }
  if (auto e = parse_seed(body, r)) {
    return *e;
  }
  if (auto e = parse_structured_output(body, r)) {
    return *e;
  }
  if (auto e = parse_logit_bias(body, r)) {
    return *e;
  }
  if (auto e = parse_tools(body, r)) {  // after response_format: a forced call conflicts
    return *e;
  }
  if (auto v = r.sampling.validate(); !v) {
    return invalid("", v.err().message);
  }
  return r;
}

json usage_json(int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

}  // namespace baton::api
