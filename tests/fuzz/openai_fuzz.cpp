// libFuzzer target for the OpenAI request parser: any bytes, parsed as the server parses
// a body (nlohmann without exceptions), then read as a chat and as a completions request,
// must give a request or a named 400 and never throw (an escaped exception aborts, which
// libFuzzer reports). Error objects are dumped with nlohmann's strict UTF-8 check, which
// error_json's replacement must make safe, and with the server's error_handler_t::replace.
// The raw bytes also check valid_utf8: its output always dumps, and it keeps valid text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "launch/serve/openai_api.hpp"

namespace {

using nlohmann::json;

void dump_both(const json& j) {
  (void)j.dump();
  (void)j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void check_request(const json& body, bool chat) {
  auto r = baton::api::parse_request(body, chat);
  if (auto* e = std::get_if<baton::api::api_error>(&r)) {
    if (e->status != 400 || e->message.empty()) {
      std::abort();  // every refusal is a 400 that says why
    }
    dump_both(baton::api::error_json(*e));
    return;
  }
  const auto& req = std::get<baton::api::completion_request>(r);
  if (req.stop.size() > baton::api::k_max_stop_strings) {
    std::abort();
  }
  for (const std::string& s : req.stop) {
    if (s.size() > baton::api::k_max_stop_bytes) {
      std::abort();
    }
  }
  for (int32_t id : req.prompt_tokens) {
    if (id < 0) {
      std::abort();  // no id wrapped around
    }
  }
  if (req.chat != chat || (chat && req.messages.empty()) || req.max_tokens == 0 ||
      req.n < 1 || req.n > baton::api::k_max_choices) {
    std::abort();
  }
  if (chat) {
    // the chat template takes every role the parser lets through
    auto segments = baton::apply_chat_template_segments(std::nullopt, req.messages, true);
    if (!segments) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const json body = json::parse(bytes, nullptr, false);
  if (!body.is_discarded()) {
    check_request(body, true);
    check_request(body, false);
  }
  // raw bytes, as a served model name or a path would reach an error message
  const std::string clean = baton::api::valid_utf8(bytes);
  dump_both(baton::api::error_json({400, bytes, bytes, bytes, bytes}));
  (void)json(clean).dump();
  bool strict_ok = true;
  try {
    (void)json(bytes).dump();
  } catch (const json::exception&) {
    strict_ok = false;
  }
  if (strict_ok != (clean == bytes)) {
    std::abort();  // valid_utf8 and nlohmann disagree on what is valid UTF-8
  }
  return 0;
}
