// The OpenAI request parser and reply pieces of openai_api.hpp. Defaults follow OpenAI
// (and vLLM's server): temperature 1, top_p 1, no top-k, no min-p, no penalties;
// completions default to 16 tokens. Fields are read through `field_reader`, which checks
// a value's type, and an integer's range on the int64 or uint64 nlohmann holds, before
// converting it; the first bad field is the error. One file of some 530 lines because it
// is one parser: every field's check goes through the same field_reader and ends in the
// same api_error shape, and the fuzz target and the unit test drive it whole.
#include "launch/serve/openai_api.hpp"

#include <limits>
#include <optional>
#include <random>

namespace baton::api {

namespace {

using nlohmann::json;

api_error bad(const std::string& param, const std::string& message) {
  return error_for(reject_reason::invalid_request, message, param);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::binary: return "binary data";
    case json::value_t::discarded: return "invalid JSON";
    default: return "a number";
  }
}

/// A value as a message shows it: numbers and booleans as JSON spells them, anything
/// else by its type (a string may be megabytes long, or not UTF-8).
std::string shown(const json& v) {
  if (v.is_number() || v.is_boolean()) {
    return v.dump();
  }
  return type_name(v);
}

/// `s` cut to at most `n` bytes at a character boundary, in quotes, for messages.
std::string excerpt(const std::string& s, size_t n = 40) {
  const bool cut = s.size() > n;
  if (cut) {
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
      --n;
    }
  } else {
    n = s.size();
  }
  std::string out = "'";
  out.append(s, 0, n);
  out += cut ? "...'" : "'";
  return out;
}

/// Reads the fields of one JSON object; the first bad field is kept as `error()` and
/// every later read returns nothing.
class field_reader {
 public:
  /// `prefix` is how the object's fields are named ("stream_options.").
  explicit field_reader(const json& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  const std::optional<api_error>& error() const { return error_; }

  void fail(const std::string& param, const std::string& message) {
    if (!error_) {
      error_ = bad(param, message);
    }
  }

  /// The field, unless it is absent or null (both mean "default") or an error is held.
  const json* find(const char* key) const {
    if (error_) {
      return nullptr;
    }
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  /// An integer in [lo, hi]; floats such as 5.0 are refused, as any non-integer.
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) {
    const json* v = find(key);
    if (!v) {
      return std::nullopt;
    }
    const std::string name = prefix_ + key;
    const std::string range = "an integer between " + std::to_string(lo) + " and " +
                              std::to_string(hi);
    if (!v->is_number_integer()) {
      fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
      return std::nullopt;
    }
    if (v->is_number_unsigned()) {
      const auto u = v->get<uint64_t>();
      if (hi < 0 || u > static_cast<uint64_t>(hi) ||
          (lo > 0 && u < static_cast<uint64_t>(lo))) {
        fail(name, "'" + name + "' must be " + range + ", got " + std::to_string(u));
        return std::nullopt;
      }
      return static_cast<int64_t>(u);
    }
    const auto s = v->get<int64_t>();
    if (s < lo || s > hi) {
      fail(name, "'" + name + "' must be " + range + ", got " + std::to_string(s));
      return std::nullopt;
    }
    return s;
  }

  /// A number (integer or not) in [lo, hi].
  std::optional<double> number(const char* key, double lo, double hi) {
    const json* v = find(key);
    if (!v) {
      return std::nullopt;
    }
    const std::string name = prefix_ + key;
    const std::string range = "a number between " + json(lo).dump() + " and " + json(hi).dump();
    if (!v->is_number()) {
      fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
      return std::nullopt;
    }
    const auto d = v->get<double>();  // any JSON number converts (uint64 and int64 alike)
    if (!(d >= lo && d <= hi)) {
      fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
      return std::nullopt;
    }
    return d;
  }

  std::optional<bool> boolean(const char* key) {
    const json* v = find(key);
    if (!v) {
      return std::nullopt;
    }
    if (!v->is_boolean()) {
      const std::string name = prefix_ + key;
      fail(name, "'" + name + "' must be a boolean, got " + shown(*v));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  std::optional<std::string> string(const char* key) {
    const json* v = find(key);
    if (!v) {
      return std::nullopt;
    }
    if (!v->is_string()) {
      const std::string name = prefix_ + key;
      fail(name, "'" + name + "' must be a string, got " + shown(*v));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

 private:
  // -- member variables -------------------------------------------------------
  const json& object_;
  std::string prefix_;
  std::optional<api_error> error_;
};

/// messages[i] of a chat request.
std::variant<chat_message, api_error> parse_message(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) {
    return bad(where, "'" + where + "' must be an object with 'role' and 'content', got " +
                          shown(m));
  }
  chat_message cm;
  auto role = m.find("role");
  if (role == m.end() || !role->is_string()) {
    return bad(where + ".role", "'" + where + ".role' must be a string, got " +
                                    (role == m.end() ? std::string("nothing") : shown(*role)));
  }
  cm.role = role->get<std::string>();
  if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" &&
      cm.role != "developer" && cm.role != "tool") {
    return bad(where + ".role", "'" + where + ".role' must be system, developer, user, "
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
    return bad(where + ".content", "'" + where + ".content' must be a string or an array of "
                                   "text parts, got " + shown(*content));
  }
  for (size_t j = 0; j < content->size(); ++j) {
    const json& part = (*content)[j];
    const std::string at = where + ".content[" + std::to_string(j) + "]";
    const std::string expected = "'" + at + "' must be {\"type\": \"text\", \"text\": \"...\"}"
                                 " (only text parts are supported), got ";
    if (!part.is_object()) {
      return bad(at, expected + shown(part));
    }
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return bad(at, expected + "'type' " +
                         (type == part.end() ? std::string("missing") : shown(*type)));
    }
    if (type->get_ref<const std::string&>() != "text") {
      return bad(at, expected + "type " + excerpt(type->get<std::string>()));
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return bad(at, expected + "'text' " +
                         (text == part.end() ? std::string("missing") : shown(*text)));
    }
    cm.content += text->get_ref<const std::string&>();
  }
  return cm;
}

/// 'prompt' of a completions request: text, a list of one text, or token ids.
std::optional<api_error> parse_prompt(const json& body, completion_request& r) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) {
    return bad("prompt", "'prompt' is required");
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
    return bad("prompt", "'prompt' must be a string, a list of one string, or a list of "
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
      return bad(at, expected + shown(t));
    }
    if (t.is_number_unsigned() ? t.get<uint64_t>() > static_cast<uint64_t>(max_id)
                               : (t.get<int64_t>() < 0 || t.get<int64_t>() > max_id)) {
      return bad(at, expected + t.dump());
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
      return bad(at, "'" + at + "' must be a string, got " + shown(s));
    }
    const auto& text = s.get_ref<const std::string&>();
    if (text.size() > k_max_stop_bytes) {
      return bad(at, "'" + at + "' may be at most " + std::to_string(k_max_stop_bytes) +
                         " bytes long, got " + std::to_string(text.size()));
    }
    out.push_back(text);
    return std::nullopt;
  };
  if (it->is_string()) {
    return one(*it, "stop");
  }
  if (!it->is_array()) {
    return bad("stop", "'stop' must be a string or a list of strings, got " + shown(*it));
  }
  if (it->size() > k_max_stop_strings) {
    return bad("stop", "'stop' may hold at most " + std::to_string(k_max_stop_strings) +
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
      return bad("seed", "'seed' must be an integer between -9223372036854775808 and "
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
  return api_error{r.status, std::move(message), r.type, std::move(param), r.code};
}

json error_json(const api_error& e) {
  return {{"error",
           {{"message", valid_utf8(e.message)},
            {"type", valid_utf8(e.type)},
            {"param", e.param.empty() ? json(nullptr) : json(valid_utf8(e.param))},
            {"code", e.code.empty() ? json(nullptr) : json(valid_utf8(e.code))}}}};
}

std::variant<completion_request, api_error> parse_request(const json& body, bool chat) {
  if (!body.is_object()) {
    return bad("", std::string("the request body must be a JSON object, got ") + shown(body));
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
  if (chat) {
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) {
      return bad("messages", "'messages' must be a non-empty array of {role, content}, got " +
                                 (it == body.end() ? std::string("nothing")
                                                   : it->is_array() ? std::string("[]")
                                                                    : shown(*it)));
    }
    r.messages.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      auto m = parse_message((*it)[i], i);
      if (auto* e = std::get_if<api_error>(&m)) {
        return *e;
      }
      r.messages.push_back(std::move(std::get<chat_message>(m)));
    }
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
  if (auto v = f.integer("n", 1, k_max_tokens_limit); v && *v != 1) {
    f.fail("n", "'n' must be 1 (send one request per completion), got " + std::to_string(*v));
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
      return bad("stream_options", "'stream_options' must be an object, got " + shown(*it));
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
      return bad("logprobs", "'logprobs' must be a boolean, got " + shown(*it));
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
      return bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    r.sampling.top_logprobs = static_cast<int32_t>(top);
  }
  if (auto e = parse_stop(body, r.stop)) {
    return *e;
  }
  if (auto e = parse_seed(body, r)) {
    return *e;
  }
  if (auto v = r.sampling.validate(); !v) {
    return bad("", v.err().message);
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
