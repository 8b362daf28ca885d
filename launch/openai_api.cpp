// openai_api.hpp. Defaults follow OpenAI (and vLLM's server): temperature 1, top_p 1,
// no top-k, no min-p, no penalties; completions default to 16 tokens.
#include "launch/openai_api.hpp"

#include <random>

namespace baton::api {

namespace {

using nlohmann::json;

api_error bad(const std::string& param, const std::string& message) {
  return api_error{400, message, "invalid_request_error", param, ""};
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

/// Reads an optional number field into `out` when present (null counts as absent).
template <class T>
std::optional<api_error> number(const json& body, const char* key, T& out, double lo, double hi,
                                bool integer = false) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    return std::nullopt;
  }
  if (!it->is_number() || (integer && !it->is_number_integer())) {
    return bad(key, std::string("'") + key + "' must be " + (integer ? "an integer" : "a number") +
                        ", got " + type_name(*it));
  }
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) {
    return bad(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " +
                        json(hi).dump() + ", got " + it->dump());
  }
  out = static_cast<T>(v);
  return std::nullopt;
}

std::optional<api_error> boolean(const json& body, const char* key, bool& out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    return std::nullopt;
  }
  if (!it->is_boolean()) {
    return bad(key, std::string("'") + key + "' must be a boolean, got " + type_name(*it));
  }
  out = it->get<bool>();
  return std::nullopt;
}

}  // namespace

json error_json(const api_error& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

std::variant<completion_request, api_error> parse_request(const json& body, bool chat) {
  if (!body.is_object()) {
    return bad("", std::string("the request body must be a JSON object, got ") + type_name(body));
  }
  completion_request r;
  r.chat = chat;
  // OpenAI's defaults, not llama.cpp's
  r.sampling.temperature = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.top_p = 1.0f;
  r.sampling.min_p = 0.0f;
  if (auto it = body.find("model"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) {
      return bad("model", std::string("'model' must be a string, got ") + type_name(*it));
    }
    r.model = it->get<std::string>();
  }
  if (chat) {
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) {
      return bad("messages", "'messages' must be a non-empty array of {role, content}");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        return bad(where, "'" + where + "' must be an object with a string 'role'");
      }
      chat_message cm;
      cm.role = m["role"].get<std::string>();
      if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" &&
          cm.role != "developer" && cm.role != "tool") {
        return bad(where + ".role", "'" + where + ".role' must be system, developer, user, "
                                    "assistant or tool, got '" + cm.role + "'");
      }
      if (cm.role == "developer") {
        cm.role = "system";
      }
      const json& c = m.contains("content") ? m["content"] : json(nullptr);
      if (c.is_string()) {
        cm.content = c.get<std::string>();
      } else if (c.is_array()) {  // content parts: the text ones
        for (const json& part : c) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
              !part["text"].is_string()) {
            return bad(where + ".content", "'" + where + ".content' parts must be {\"type\": "
                                           "\"text\", \"text\": ...} (only text is supported)");
          }
          cm.content += part["text"].get<std::string>();
        }
      } else if (!c.is_null()) {
        return bad(where + ".content",
                   "'" + where + ".content' must be a string or an array of text parts");
      }
      r.messages.push_back(std::move(cm));
    }
  } else {
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) {
      return bad("prompt", "'prompt' is required");
    }
    if (it->is_string()) {
      r.prompt = it->get<std::string>();
    } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
      r.prompt = (*it)[0].get<std::string>();
    } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
      for (const json& t : *it) {
        if (!t.is_number_integer()) {
          return bad("prompt", "'prompt' as token ids must be an array of integers");
        }
        r.prompt_tokens.push_back(t.get<int32_t>());
      }
    } else {
      return bad("prompt", "'prompt' must be a string, a list of one string, or a list of "
                           "token ids (batches of prompts: send one request each)");
    }
    r.max_tokens = 16;
  }
  const double big = 1e9;
  if (auto e = number(body, "max_tokens", r.max_tokens, 1, big, true)) {
    return *e;
  }
  if (auto e = number(body, "max_completion_tokens", r.max_tokens, 1, big, true)) {
    return *e;
  }
  if (auto e = number(body, "temperature", r.sampling.temperature, 0, 2)) {
    return *e;
  }
  if (auto e = number(body, "top_p", r.sampling.top_p, 1e-9, 1)) {
    return *e;
  }
  if (auto e = number(body, "top_k", r.sampling.top_k, -1, big, true)) {
    return *e;
  }
  if (r.sampling.top_k < 0) {
    r.sampling.top_k = 0;  // vLLM: -1 = off
  }
  if (auto e = number(body, "min_p", r.sampling.min_p, 0, 1)) {
    return *e;
  }
  if (auto e = number(body, "presence_penalty", r.sampling.presence_penalty, -2, 2)) {
    return *e;
  }
  if (auto e = number(body, "frequency_penalty", r.sampling.frequency_penalty, -2, 2)) {
    return *e;
  }
  if (auto e = number(body, "repetition_penalty", r.sampling.repeat_penalty, 1e-9, big)) {
    return *e;
  }
  double seed = -1;
  if (auto e = number(body, "seed", seed, -9.2e18, 9.2e18, true)) {
    return *e;
  }
  if (seed != -1 && body.contains("seed") && !body["seed"].is_null()) {
    r.sampling.seed = static_cast<uint64_t>(body["seed"].get<int64_t>());
    r.seeded = true;
  } else {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    r.sampling.seed = rng();
  }
  int32_t n = 1;
  if (auto e = number(body, "n", n, 1, big, true)) {
    return *e;
  }
  if (n != 1) {
    return bad("n", "'n' must be 1 (send one request per completion), got " + std::to_string(n));
  }
  if (auto e = boolean(body, "stream", r.stream)) {
    return *e;
  }
  if (auto e = boolean(body, "ignore_eos", r.ignore_eos)) {
    return *e;
  }
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return bad("stream_options", "'stream_options' must be an object");
    }
    if (auto e = boolean(*it, "include_usage", r.include_usage)) {
      e->param = "stream_options.include_usage";
      return *e;
    }
  }
  if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    if (it->is_boolean()) {
      r.logprobs = it->get<bool>();
    } else if (!chat && it->is_number_integer() && it->get<int>() >= 0 &&
               it->get<int>() <= 20) {
      r.logprobs = true;  // completions: logprobs = N alternatives per position
      r.sampling.top_logprobs = it->get<int>();
    } else if (!chat && it->is_number_integer()) {
      return bad("logprobs", "'logprobs' must be between 0 and 20, got " + it->dump());
    } else {
      return bad("logprobs", std::string("'logprobs' must be a boolean, got ") + type_name(*it));
    }
  }
  if (chat) {
    int32_t top_logprobs = 0;
    if (auto e = number(body, "top_logprobs", top_logprobs, 0, 20, true)) {
      return *e;
    }
    if (top_logprobs > 0 && !r.logprobs) {
      return bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    }
    r.sampling.top_logprobs = top_logprobs;
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      r.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) {
          return bad("stop", "'stop' must be a string or a list of strings");
        }
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      return bad("stop", std::string("'stop' must be a string or a list of strings, got ") +
                             type_name(*it));
    }
  }
  if (auto it = body.find("user"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) {
      return bad("user", std::string("'user' must be a string, got ") + type_name(*it));
    }
    r.user = it->get<std::string>();
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
