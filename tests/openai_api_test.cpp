// OpenAI request parser tests (unit): every field with every wrong JSON type gives a 400
// naming that field and never throws; integers out of range are refused before any
// conversion (no wrap-around of 2^32 + 1); int64 and uint64 seeds; the limits on 'stop';
// content parts; n up to 128 and best_of only restating it; fields not implemented yet
// (legacy function calling, beam search...) refused by name unless they hold their
// default; error objects that dump without throwing whatever bytes they hold; and the
// status table's rows for the pipeline's refusal kinds.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "launch/serve/openai_api.hpp"

namespace {

using baton::api::api_error;
using baton::api::completion_request;
using baton::api::parse_request;
using nlohmann::json;

json chat_body() {
  return json{{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
}

json completion_body() {
  return json{{"prompt", "hi"}};
}

/// The parse of `body`; fails the test if parsing throws.
std::variant<completion_request, api_error> parse(const json& body, bool chat) {
  std::variant<completion_request, api_error> out = api_error{};
  EXPECT_NO_THROW(out = parse_request(body, chat)) << body.dump();
  return out;
}

/// The error of a request that must be refused (an empty one, with a failure, if not).
api_error refused(const json& body, bool chat) {
  auto r = parse(body, chat);
  if (auto* e = std::get_if<api_error>(&r)) {
    EXPECT_EQ(e->status, 400);
    EXPECT_NO_THROW((void)baton::api::error_json(*e).dump());
    return *e;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return {};
}

/// The request of a body that must be accepted.
completion_request accepted(const json& body, bool chat) {
  auto r = parse(body, chat);
  if (auto* e = std::get_if<api_error>(&r)) {
    ADD_FAILURE() << "refused: " << body.dump() << ": " << e->message;
    return {};
  }
  return std::get<completion_request>(r);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(OpenAiApi, DefaultsOfAChatAndACompletion) {
  const auto chat = accepted(chat_body(), true);
  ASSERT_EQ(chat.messages.size(), 1u);
  EXPECT_EQ(chat.messages[0].role, "user");
  EXPECT_EQ(chat.messages[0].content, "hi");
  EXPECT_EQ(chat.max_tokens, -1);
  EXPECT_FALSE(chat.seeded);
  EXPECT_EQ(chat.sampling.top_k, 0);
  const auto completion = accepted(completion_body(), false);
  EXPECT_EQ(completion.prompt, "hi");
  EXPECT_EQ(completion.max_tokens, 16);
}

// Each field, each wrong value: a 400 whose param is the field and whose message quotes it.
TEST(OpenAiApi, WrongTypesOfEveryFieldAreNamed) {
  struct wrong {
    bool chat;
    std::string pointer;  ///< where the value goes in the base body
    json value;
    std::string param;    ///< expected api_error::param
  };
  std::vector<wrong> cases;
  const auto each = [&cases](bool chat, const std::string& pointer, std::vector<json> values,
                             const std::string& param) {
    for (json& v : values) {
      cases.push_back({chat, pointer, std::move(v), param});
    }
  };
  const json obj = json::object();
  const json arr = json::array();
  for (bool chat : {true, false}) {
    each(chat, "/model", {5, true, arr, obj, 1.5}, "model");
    for (const char* key : {"max_tokens", "max_completion_tokens", "top_k", "n"}) {
      each(chat, std::string("/") + key, {"1", true, arr, obj, 1.5, 2.0, json::array({1})}, key);
    }
    for (const char* key : {"temperature", "top_p", "min_p", "presence_penalty",
                            "frequency_penalty", "repetition_penalty"}) {
      each(chat, std::string("/") + key, {"1", true, arr, obj, json::array({0.5})}, key);
    }
    for (const char* key : {"stream", "ignore_eos"}) {
      each(chat, std::string("/") + key, {1, 0, "true", arr, obj, 1.5}, key);
    }
    each(chat, "/stream_options", {1, "x", arr, true}, "stream_options");
    each(chat, "/stream_options", {json{{"include_usage", 1}}, json{{"include_usage", "yes"}}},
         "stream_options.include_usage");
    each(chat, "/stop", {5, true, obj, 1.5}, "stop");
    each(chat, "/stop", {json::array({5}), json::array({nullptr}), json::array({obj})}, "stop[0]");
    each(chat, "/stop", {json::array({"a", true})}, "stop[1]");
    each(chat, "/seed", {"1", 1.5, true, arr, obj}, "seed");
    each(chat, "/user", {5, true, arr, obj}, "user");
  }
  each(true, "/logprobs", {1, 0, "true", 1.5, arr, obj}, "logprobs");
  each(true, "/top_logprobs", {"1", true, 1.5, arr, obj}, "top_logprobs");
  each(false, "/logprobs", {"1", 1.5, arr, obj}, "logprobs");
  each(true, "/messages", {"x", 5, obj, arr, true}, "messages");
  each(true, "/messages/0", {"x", 5, arr, true}, "messages[0]");
  each(true, "/messages/0/role", {5, nullptr, true, arr, obj}, "messages[0].role");
  each(true, "/messages/0/content", {5, true, obj, 1.5}, "messages[0].content");
  each(true, "/messages/0/content",
       {json::array({5}), json::array({nullptr}), json::array({"hi"}), json::array({arr})},
       "messages[0].content[0]");
  each(false, "/prompt", {5, true, obj, arr, nullptr, json::array({"a", "b"}),
                          json::array({true}), json::array({obj})},
       "prompt");
  each(false, "/prompt", {json::array({1, "a"}), json::array({1, 1.5}), json::array({1, nullptr})},
       "prompt[1]");
  int n_checked = 0;
  for (const wrong& c : cases) {
    json body = c.chat ? chat_body() : completion_body();
    body[json::json_pointer(c.pointer)] = c.value;
    const api_error e = refused(body, c.chat);
    EXPECT_EQ(e.param, c.param) << body.dump() << ": " << e.message;
    EXPECT_TRUE(contains(e.message, "'" + c.param + "'")) << body.dump() << ": " << e.message;
    ++n_checked;
  }
  EXPECT_GT(n_checked, 200);
  // A message with no role at all, and a body that is not an object.
  json no_role = chat_body();
  no_role["messages"][0].erase("role");
  EXPECT_EQ(refused(no_role, true).param, "messages[0].role");
  for (const json& body : {json(5), json("x"), json::array(), json(nullptr), json(true)}) {
    EXPECT_TRUE(contains(refused(body, true).message, "must be a JSON object"));
    EXPECT_TRUE(contains(refused(body, false).message, "must be a JSON object"));
  }
}

// A field that would change the answer in a way not implemented is a 400 naming it, never
// ignored; its default values, and the benign fields clients send, are accepted.
TEST(OpenAiApi, FieldsNotImplementedYetAreRefusedByNameUnlessDefault) {
  struct row {
    bool chat;
    const char* field;
    json value;
    const char* says;  ///< a part of the message
  };
  // (structured output, logit_bias and tools are implemented: their own tests, and
  // tool_calls_test.cpp, check them)
  const json tool = {{"type", "function"}, {"function", {{"name", "f"}}}};
  const std::vector<row> refused_rows = {
      {true, "functions", json::array({tool}), "function calling"},
      {true, "function_call", "auto", "function calling"},
      {false, "best_of", 2, "= 2"},
      {false, "echo", true, "= true"},
      {true, "echo", true, "echoing"},
      {false, "suffix", "end", "suffix"},
      {false, "guided_regex", "[a-z]+", "structured output"},
      {true, "guided_choice", json::array({"yes", "no"}), "with 2 entries"},
      {false, "guided_grammar", "root ::= \"a\"", "structured output"},
      {true, "structured_outputs", json{{"json", json::object()}}, "structured output"},
      {false, "grammar", "root ::= \"a\"", "grammar"},
      {true, "min_tokens", 5, "minimum length"},
      {false, "stop_token_ids", json::array({2}), "stop token ids"},
      {true, "use_beam_search", true, "beam search"},
      {true, "add_generation_prompt", false, "assistant's header"},
      {true, "continue_final_message", true, "continuing"},
      {true, "chat_template", "{{ x }}", "chat template"},
  };
  for (const auto& r : refused_rows) {
    json body = r.chat ? chat_body() : completion_body();
    body[r.field] = r.value;
    const api_error e = refused(body, r.chat);
    EXPECT_EQ(e.param, r.field) << body.dump();
    EXPECT_TRUE(contains(e.message, r.says)) << e.message;
    EXPECT_TRUE(contains(e.message, "not supported")) << e.message;
  }
  // a wrong type is named as such, not as a missing feature
  for (const auto& [field, value, expected] :
       {std::tuple{"echo", json("yes"), "must be a boolean"},
        std::tuple{"best_of", json(1.5), "must be an integer"},
        std::tuple{"tools", json::object(), "must be a list"},
        std::tuple{"response_format", json("json"), "must be an object"},
        std::tuple{"logit_bias", json::array(), "must be an object"},
        std::tuple{"tool_choice", json(5), "must be \"none\", \"auto\""},
        std::tuple{"function_call", json(5), "must be a string or an object"}}) {
    json body = chat_body();
    body[field] = value;
    const api_error e = refused(body, true);
    EXPECT_EQ(e.param, field);
    EXPECT_TRUE(contains(e.message, expected)) << e.message;
  }
  // defaults, nulls, fields of the other endpoint, and benign fields clients send
  json chat = chat_body();
  chat.update({{"response_format", {{"type", "text"}}}, {"tools", json::array()},
               {"tool_choice", "none"}, {"logit_bias", json::object()}, {"echo", false},
               {"best_of", 1}, {"guided_json", nullptr}, {"min_tokens", 0},
               {"add_generation_prompt", true}, {"chat_template", ""},
               {"parallel_tool_calls", true}, {"metadata", {{"k", "v"}}}, {"store", false},
               {"service_tier", "auto"}, {"suffix", "only completions read it"},
               {"stream_options", {{"include_usage", true}}}});
  (void)accepted(chat, true);
  json completion = completion_body();
  completion.update({{"suffix", ""}, {"grammar", ""}, {"echo", false}, {"best_of", 1},
                     {"stop_token_ids", json::array()}, {"tools", json::array({1})}});
  (void)accepted(completion, false);
  // the chat form of /tokenize reads the template's fields only
  json tokenize = chat_body();
  tokenize["logit_bias"] = json{{"1", 1}};
  EXPECT_FALSE(baton::api::refuse_unsupported(tokenize, baton::api::in_tokenize_chat));
  tokenize["tools"] = json::array({tool});  // shown to the model, as in a chat completion
  EXPECT_FALSE(baton::api::refuse_unsupported(tokenize, baton::api::in_tokenize_chat));
  tokenize["chat_template"] = "{{ x }}";
  const auto e = baton::api::refuse_unsupported(tokenize, baton::api::in_tokenize_chat);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "chat_template");
}

TEST(OpenAiApi, ContentPartsAreTextOnlyAndNamedByIndex) {
  const auto with_parts = [](json parts) {
    json body = chat_body();
    body["messages"].push_back({{"role", "user"}, {"content", std::move(parts)}});
    return body;
  };
  // The attack's parts: a type that is not a string, and null.
  for (const json& bad : {json{{"type", 5}, {"text", "hi"}}, json(nullptr),
                          json{{"type", nullptr}, {"text", "hi"}}, json{{"text", "hi"}},
                          json{{"type", "image_url"}, {"image_url", "http://x"}},
                          json{{"type", "text"}}, json{{"type", "text"}, {"text", 5}},
                          json{{"type", json::array({"text"})}, {"text", "hi"}}}) {
    const json parts = json::array({{{"type", "text"}, {"text", "ok"}}, bad});
    const api_error e = refused(with_parts(parts), true);
    EXPECT_EQ(e.param, "messages[1].content[1]") << bad.dump();
    EXPECT_TRUE(contains(e.message, "'messages[1].content[1]'")) << e.message;
  }
  const auto ok = accepted(with_parts(json::array({{{"type", "text"}, {"text", "a"}},
                                                   {{"type", "text"}, {"text", "b"}}})),
                           true);
  ASSERT_EQ(ok.messages.size(), 2u);
  EXPECT_EQ(ok.messages[1].content, "ab");
  EXPECT_EQ(accepted(with_parts(json::array()), true).messages[1].content, "");
  // content null: an assistant turn that only called tools
  json tools = chat_body();
  tools["messages"].push_back({{"role", "assistant"}, {"content", nullptr}});
  EXPECT_EQ(accepted(tools, true).messages[1].content, "");
  json developer = chat_body();
  developer["messages"][0]["role"] = "developer";
  EXPECT_EQ(accepted(developer, true).messages[0].role, "system");
  developer["messages"][0]["role"] = std::string(100000, 'x');
  const api_error long_role = refused(developer, true);
  EXPECT_EQ(long_role.param, "messages[0].role");
  EXPECT_LT(long_role.message.size(), 200u) << "quotes the whole role";
}

TEST(OpenAiApi, IntegersAreRangeCheckedBeforeConversion) {
  struct out_of_range {
    bool chat;
    const char* key;
    json value;
    const char* range;  ///< both ends, as the message must state them
  };
  const json two_32_plus_1 = 4294967297LL;
  const json huge = 18446744073709551615ULL;
  const json lowest = std::numeric_limits<int64_t>::min();
  const std::vector<out_of_range> cases = {
      {false, "logprobs", two_32_plus_1, "between 0 and 20"},
      {false, "logprobs", 21, "between 0 and 20"},
      {false, "logprobs", -1, "between 0 and 20"},
      {false, "logprobs", huge, "between 0 and 20"},
      {true, "top_logprobs", two_32_plus_1, "between 0 and 20"},
      {true, "top_logprobs", -1, "between 0 and 20"},
      {true, "max_tokens", two_32_plus_1, "between 1 and 1000000000"},
      {true, "max_tokens", 0, "between 1 and 1000000000"},
      {true, "max_tokens", lowest, "between 1 and 1000000000"},
      {false, "max_completion_tokens", huge, "between 1 and 1000000000"},
      {true, "top_k", two_32_plus_1, "between -1 and 1000000000"},
      {true, "top_k", -2, "between -1 and 1000000000"},
      {true, "n", two_32_plus_1, "between 1 and 128"},
      {true, "n", 0, "between 1 and 128"},
      {false, "n", 129, "between 1 and 128"},
      {false, "n", -1, "between 1 and 128"},
      {false, "n", huge, "between 1 and 128"},
  };
  for (const out_of_range& c : cases) {
    json body = c.chat ? chat_body() : completion_body();
    body[c.key] = c.value;
    const api_error e = refused(body, c.chat);
    EXPECT_EQ(e.param, c.key);
    EXPECT_TRUE(contains(e.message, c.range)) << e.message;
    EXPECT_TRUE(contains(e.message, c.value.dump())) << e.message;
  }
  json logprobs = completion_body();
  logprobs["logprobs"] = 20;
  auto lp = accepted(logprobs, false);
  EXPECT_TRUE(lp.logprobs);
  EXPECT_EQ(lp.sampling.top_logprobs, 20);
  json edges = chat_body();
  edges["max_tokens"] = 1000000000;
  edges["top_k"] = -1;
  edges["logprobs"] = true;
  edges["top_logprobs"] = 20;
  const auto ok = accepted(edges, true);
  EXPECT_EQ(ok.max_tokens, 1000000000);
  EXPECT_EQ(ok.sampling.top_k, 0);
  EXPECT_EQ(ok.sampling.top_logprobs, 20);
  json needs = chat_body();
  needs["top_logprobs"] = 2;
  EXPECT_EQ(refused(needs, true).param, "top_logprobs");
}

// n: up to OpenAI's 128 choices, on both endpoints; best_of may only restate n (baton
// samples no extra choices to pick from), and vLLM's rule best_of >= n is said first.
TEST(OpenAiApi, ChoicesUpTo128AndBestOfOnlyRestatingN) {
  for (bool chat : {true, false}) {
    json body = chat ? chat_body() : completion_body();
    EXPECT_EQ(accepted(body, chat).n, 1);
    body["n"] = nullptr;
    EXPECT_EQ(accepted(body, chat).n, 1);
    for (int n : {1, 3, 128}) {
      body["n"] = n;
      EXPECT_EQ(accepted(body, chat).n, n);
      body["best_of"] = n;
      EXPECT_EQ(accepted(body, chat).n, n) << "best_of = n asks for nothing more";
      body["best_of"] = nullptr;
      EXPECT_EQ(accepted(body, chat).n, n);
      body.erase("best_of");
    }
  }
  struct row {
    json n;  ///< null: absent
    json best_of;
    const char* says;
  };
  const std::vector<row> rows = {
      {3, 2, "'best_of' (2) must be >= 'n' (3)"},
      {3, -5, "'best_of' (-5) must be >= 'n' (3)"},
      {nullptr, 0, "'best_of' (0) must be >= 'n' (1)"},
      {3, 5, "'best_of' = 5: best-of-n sampling is not supported"},
      {nullptr, 4, "(accepted: null or the value of 'n', 1)"},
      {2, 18446744073709551615ULL, "= 18446744073709551615"},  // no wrap to -1
      {2, std::numeric_limits<int64_t>::min(), "must be >= 'n' (2)"},
      {2, 2.0, "'best_of' must be an integer, got 2.0"},
      {2, "2", "'best_of' must be an integer, got a string"},
  };
  for (const row& r : rows) {
    json body = completion_body();
    if (!r.n.is_null()) {
      body["n"] = r.n;
    }
    body["best_of"] = r.best_of;
    const api_error e = refused(body, false);
    EXPECT_EQ(e.param, "best_of") << body.dump();
    EXPECT_TRUE(contains(e.message, r.says)) << body.dump() << ": " << e.message;
  }
}

TEST(OpenAiApi, PromptTokenIdsNeverWrap) {
  json body = completion_body();
  body["prompt"] = json::array({9906, 4294977202LL});  // 4294977202 mod 2^32 = 9906
  api_error e = refused(body, false);
  EXPECT_EQ(e.param, "prompt[1]");
  EXPECT_TRUE(contains(e.message, "4294977202")) << e.message;
  EXPECT_TRUE(contains(e.message, "between 0 and 2147483647")) << e.message;
  for (const json& id : {json(-1), json(2147483648LL), json(18446744073709551615ULL),
                         json(std::numeric_limits<int64_t>::min())}) {
    body["prompt"] = json::array({1, 2, id});
    e = refused(body, false);
    EXPECT_EQ(e.param, "prompt[2]") << id.dump();
    EXPECT_TRUE(contains(e.message, id.dump())) << e.message;
  }
  body["prompt"] = json::array({0, 2147483647LL, 128000});
  EXPECT_EQ(accepted(body, false).prompt_tokens,
            (std::vector<int32_t>{0, 2147483647, 128000}));
}

TEST(OpenAiApi, SeedsTakeTheWholeInt64AndUint64Ranges) {
  const auto seed_of = [](const json& seed) {
    json body = chat_body();
    body["seed"] = seed;
    return accepted(body, true);
  };
  auto max = seed_of(std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(max.seeded);
  EXPECT_EQ(max.sampling.seed, 9223372036854775807ULL);
  auto min = seed_of(std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(min.seeded);
  EXPECT_EQ(min.sampling.seed, 9223372036854775808ULL);
  auto umax = seed_of(18446744073709551615ULL);
  EXPECT_TRUE(umax.seeded);
  EXPECT_EQ(umax.sampling.seed, 18446744073709551615ULL);
  auto zero = seed_of(0);
  EXPECT_TRUE(zero.seeded);
  EXPECT_EQ(zero.sampling.seed, 0u);
  EXPECT_EQ(seed_of(-2).sampling.seed, 18446744073709551614ULL);
  EXPECT_FALSE(seed_of(-1).seeded) << "-1 draws a random seed, as llama.cpp's server";
  EXPECT_FALSE(seed_of(nullptr).seeded);
  // 2^64 no longer fits an integer: nlohmann reads it as a float, which is refused.
  json body = chat_body();
  body["seed"] = json::parse("18446744073709551616");
  EXPECT_EQ(refused(body, true).param, "seed");
}

TEST(OpenAiApi, StopStringsAreLimited) {
  json body = completion_body();
  body["stop"] = json::array();
  for (int i = 0; i < 300000; ++i) {
    body["stop"].push_back("s");
  }
  api_error e = refused(body, false);
  EXPECT_EQ(e.param, "stop");
  EXPECT_EQ(e.message, "'stop' may hold at most 64 strings, got 300000");
  body["stop"] = std::vector<std::string>(65, "s");
  EXPECT_EQ(refused(body, false).message, "'stop' may hold at most 64 strings, got 65");
  body["stop"] = std::vector<std::string>(64, std::string(1024, 'x'));
  EXPECT_EQ(accepted(body, false).stop.size(), 64u);
  body["stop"][3] = std::string(1025, 'x');
  e = refused(body, false);
  EXPECT_EQ(e.param, "stop[3]");
  EXPECT_EQ(e.message, "'stop[3]' may be at most 1024 bytes long, got 1025");
  body["stop"] = std::string(5000, 'x');
  e = refused(body, false);
  EXPECT_EQ(e.param, "stop");
  EXPECT_EQ(e.message, "'stop' may be at most 1024 bytes long, got 5000");
  body["stop"] = "\n\n";
  EXPECT_EQ(accepted(body, false).stop, std::vector<std::string>{"\n\n"});
}

TEST(OpenAiApi, FloatRangesAreChecked) {
  for (const auto& [key, value] : std::vector<std::pair<const char*, json>>{
           {"temperature", 2.5}, {"temperature", -0.1}, {"top_p", 0}, {"top_p", 1.5},
           {"min_p", -0.5}, {"presence_penalty", 3}, {"frequency_penalty", -2.5},
           {"repetition_penalty", 0}, {"temperature", 1e308}, {"top_p", -1e308}}) {
    json body = chat_body();
    body[key] = value;
    const api_error e = refused(body, true);
    EXPECT_EQ(e.param, key);
    EXPECT_TRUE(contains(e.message, "between")) << e.message;
  }
  json body = chat_body();
  body["temperature"] = 0;
  body["top_p"] = 1;
  body["presence_penalty"] = -2;
  body["repetition_penalty"] = 1.1;
  body["top_k"] = 40;
  const auto ok = accepted(body, true);
  EXPECT_EQ(ok.sampling.temperature, 0.0f);
  EXPECT_EQ(ok.sampling.presence_penalty, -2.0f);
  EXPECT_EQ(ok.sampling.top_k, 40);
}

TEST(OpenAiApi, InvalidUtf8IsRefusedAtParseAndNeverThrowsInErrors) {
  // nlohmann rejects invalid UTF-8 while parsing: the caller's 400, before parse_request.
  for (const std::string& bytes : {std::string("{\"prompt\": \"\xff\"}"),
                                  std::string("{\"prompt\": \"\xc0\x80\"}"),
                                  std::string("{\"prompt\": \"\xed\xa0\x80\"}"),
                                  std::string("{\"mod\xfe\": 1, \"prompt\": \"x\"}")}) {
    const json body = json::parse(bytes, nullptr, false);
    EXPECT_TRUE(body.is_discarded()) << bytes;
  }
  // Strings built in C++ are not checked: the parser must not dump them strictly, and
  // error_json replaces their bad bytes.
  json body = chat_body();
  body["messages"][0]["role"] = "us\xff" "er";
  const api_error e = refused(body, true);
  std::string dumped;
  ASSERT_NO_THROW(dumped = baton::api::error_json(e).dump());
  EXPECT_TRUE(contains(dumped, "us\xef\xbf\xbd" "er")) << dumped;
  const api_error raw{500, "bad \xc3", "server_error\xff", "p\x80", "c\xf8"};
  ASSERT_NO_THROW(dumped = baton::api::error_json(raw).dump());
  const json back = json::parse(dumped);
  EXPECT_EQ(back["error"]["message"], "bad \xef\xbf\xbd");
  EXPECT_EQ(back["error"]["param"], "p\xef\xbf\xbd");
}

TEST(OpenAiApi, ValidUtf8ReplacesEachBadByte) {
  using baton::api::valid_utf8;
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(valid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
            "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");  // é € 😀 stay
  EXPECT_EQ(valid_utf8("\xff"), fffd);
  EXPECT_EQ(valid_utf8("\xc0\x80"), fffd + fffd);             // overlong NUL
  EXPECT_EQ(valid_utf8("\xe0\x80\xaf"), fffd + fffd + fffd);  // overlong '/'
  EXPECT_EQ(valid_utf8("\xed\xa0\x80"), fffd + fffd + fffd);  // surrogate U+D800
  EXPECT_EQ(valid_utf8("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // past U+10FFFF
  EXPECT_EQ(valid_utf8("a\xe2\x82"), "a" + fffd + fffd);      // cut short at the end
  EXPECT_EQ(valid_utf8("\xe2\x82" "b"), fffd + fffd + "b");
  EXPECT_EQ(valid_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(OpenAiApi, TheStatusTableGivesEveryRefusalItsStatusAndEveryReasonOneLabel) {
  using baton::refusal;
  using baton::api::reason_of;
  using baton::api::reject_reason;
  using baton::api::status_of;
  const std::vector<std::pair<refusal, int>> rows = {
      {refusal::queue_full, 429}, {refusal::key_quota, 429},     {refusal::stage_down, 503},
      {refusal::shutting_down, 503}, {refusal::invalid, 400},    {refusal::internal, 500},
  };
  for (const auto& [r, status] : rows) {
    EXPECT_EQ(status_of(reason_of(r)).status, status) << baton::to_string(r);
  }
  EXPECT_STREQ(status_of(reason_of(refusal::queue_full)).type, "rate_limit_exceeded");
  const api_error e =
      baton::api::error_for(reject_reason::context_length, "too long", "prompt");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.message, "too long");
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_EQ(e.param, "prompt");
  EXPECT_EQ(e.code, "context_length_exceeded");
  std::set<std::string> labels;
  for (int r = 0; r <= static_cast<int>(reject_reason::stage_failed); ++r) {
    EXPECT_TRUE(labels.insert(status_of(static_cast<reject_reason>(r)).label).second) << r;
  }
}
