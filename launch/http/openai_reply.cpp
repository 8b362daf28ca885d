// The OpenAI reply reader: see openai_reply.hpp. Nothing here throws on any JSON value:
// every field's type is checked before it is read.
#include "launch/http/openai_reply.hpp"

namespace baton::cli {

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) {
    return {};
  }
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

/// choices[0] then, for chat, its `holder` object ("message" or "delta"), then the string
/// at `key`; "" when any step is missing or of another type.
std::string choice_text(const nlohmann::json& j, openai_route route, const char* holder) {
  const auto c = j.find("choices");
  if (c == j.end() || !c->is_array() || c->empty() || !(*c)[0].is_object()) {
    return {};
  }
  const nlohmann::json* field = &(*c)[0];
  if (route == openai_route::chat) {
    const auto m = field->find(holder);
    if (m == field->end() || !m->is_object()) {
      return {};
    }
    field = &*m;
  }
  const auto t = field->find(route == openai_route::chat ? "content" : "text");
  return t != field->end() && t->is_string() ? t->get<std::string>() : std::string();
}

int64_t usage_count(const nlohmann::json& usage, const char* key) {
  const auto n = usage.find(key);
  return n != usage.end() && n->is_number_integer() ? n->get<int64_t>() : -1;
}

openai_reply read(const nlohmann::json& j, openai_route route, const char* holder) {
  openai_reply r;
  r.text = choice_text(j, route, holder);
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    r.usage = *u;
    r.prompt_tokens = usage_count(*u, "prompt_tokens");
    r.completion_tokens = usage_count(*u, "completion_tokens");
  }
  return r;
}

}  // namespace

openai_reply read_openai_reply(const nlohmann::json& reply, openai_route route) {
  if (!reply.is_object()) {
    return {};
  }
  return read(reply, route, "message");
}

result<openai_reply> parse_openai_chunk(std::string_view data, openai_route route) {
  const auto chunk = nlohmann::json::parse(data, nullptr, false);
  if (!chunk.is_object()) {
    return error{"a streamed event is not a JSON object: " + std::string(data.substr(0, 80))};
  }
  if (chunk.contains("error")) {  // an error after the 200, sent as an event
    return error{openai_error_message(data)};
  }
  return read(chunk, route, "delta");
}

result<std::string> first_model_id(const nlohmann::json& models) {
  const auto data = models.find("data");
  if (data == models.end() || !data->is_array() || data->empty() ||
      !(*data)[0].contains("id") || !(*data)[0]["id"].is_string()) {
    return error{"GET /v1/models lists no model with an 'id'; give --model"};
  }
  return (*data)[0]["id"].get<std::string>();
}

std::string openai_error_message(std::string_view body) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object()) {
    // OpenAI: {"error": {"message": ...}}; older vLLM: {"object": "error", "message": ...}
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_object()) {
        if (auto m = e->find("message"); m != e->end() && m->is_string()) {
          return m->get<std::string>();
        }
      } else if (e->is_string()) {
        return e->get<std::string>();
      }
    }
    if (auto m = j.find("message"); m != j.end() && m->is_string()) {
      return m->get<std::string>();
    }
  }
  std::string t = trim(body);
  if (t.size() > 200) {
    t = t.substr(0, 200) + "...";
  }
  return t;
}

}  // namespace baton::cli
