// The OpenAI front end over a scripted backend (no pipeline): an exception anywhere in
// a handler is a 500 OpenAI error and the server goes on; every typed refusal and final
// event kind maps to its HTTP status (429 with Retry-After, 503, 400, 500) without any
// message text being matched; /tokenize and /detokenize (vLLM's shapes, the chat form
// equal to the prompt a chat completion submits, ids range-checked, keys required);
// CORS (preflights on any path before the key check, allowed and refused origins, SSE);
// tool calls (a reply read back as a call, whole and streamed; text held back only while
// it may be one; the constraint of a required call; tool turns in a later request); n
// choices (a backend that emulates the router's interleaved events: whole replies
// sorted by index with usage summed, streams with each choice's role, text and finish
// under its index and one usage and [DONE] after all, tool calls and structured output
// per choice, n and best_of refused, one choice's error ending the request).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "launch/http/http_server.hpp"
#include "launch/serve/openai_api.hpp"
#include "launch/serve/openai_server.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/chat_prompt.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/mpi_util.hpp"

namespace baton {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// What the backend does with the next submit.
struct script {
  bool throw_on_submit = false;
  refusal why = refusal::none;               ///< none: admitted
  refusal final_kind = refusal::none;        ///< the final event's error kind, when an error
  bool final_error = false;
  std::vector<std::string> reply;            ///< text pieces, one event each, then "stop"
  /// Replies by seed, as the router draws choice i with seed + i: choice i of a request
  /// seeded s answers by_seed[(s + i) % size]; empty: every choice answers `reply`.
  std::vector<std::vector<std::string>> by_seed;
  int32_t error_choice = -1;  ///< with final_error: the one choice that ends in error (-1: all)
};

class scripted_backend final : public api::serving_backend {
 public:
  script next;
  std::vector<int32_t> last_prompt;  ///< the prompt of the last submit
  std::string last_schema;           ///< and its output constraint's schema
  gen_request last;                  ///< the last submit, prompt and all
  /// Emulates the router's n choices: each choice's events carry the request's id and
  /// the choice's index and come interleaved, one piece of each choice in turn, each
  /// choice ending with its own final event as soon as its pieces are out (a shorter
  /// choice ends first, whatever its index).
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision) override {
    if (next.throw_on_submit) {
      throw std::runtime_error("scripted failure");
    }
    last = r;
    last_prompt = r.prompt;
    last_schema = r.constraint.json_schema;
    auto s = std::make_shared<event_stream>();
    decision->verdict = next.why == refusal::none ? admit::ok : admit::never;
    decision->reason = next.why;
    decision->message = "scripted refusal";
    decision->retry_after_s = 3;
    if (next.why != refusal::none) {
      return s;
    }
    const int32_t n = std::max<int32_t>(1, r.n);
    std::vector<std::vector<std::string>> pieces;
    size_t longest = 0;
    for (int32_t i = 0; i < n; ++i) {
      const uint64_t seed = r.sampling.seed + static_cast<uint64_t>(i);
      pieces.push_back(next.by_seed.empty() ? next.reply
                                            : next.by_seed[seed % next.by_seed.size()]);
      longest = std::max(longest, pieces.back().size());
    }
    for (size_t k = 0; k <= longest; ++k) {
      for (int32_t i = 0; i < n; ++i) {
        const auto& mine = pieces[static_cast<size_t>(i)];
        if (k > mine.size()) {
          continue;
        }
        gen_event e;
        e.request_id = r.id;
        e.index = i;
        if (k < mine.size()) {
          e.text = mine[k];
          e.token = static_cast<int32_t>(100 + k);
          e.logprob = -0.25f * static_cast<float>(i + 1);
          s->push(e);
          continue;
        }
        const bool error = next.final_error && (next.error_choice < 0 || next.error_choice == i);
        e.finish = error ? finish_reason::error
                   : mine.empty() ? finish_reason::length
                                  : finish_reason::stop;
        e.error = "scripted error";
        e.error_kind = next.final_kind;
        e.prompt_tokens = static_cast<int32_t>(r.prompt.size());
        e.completion_tokens = static_cast<int32_t>(mine.size());
        s->push(e);
      }
    }
    return s;
  }
  void cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_.push_back(id);
  }
  serving_snapshot snapshot() const override { return {}; }
  /// The ids cancel() was called with, and forgets them.
  std::vector<uint64_t> take_cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(cancelled_, {});
  }

 private:
  // -- member variables -------------------------------------------------------
  std::mutex mu_;  // cancel() comes from the thread that drains a request
  std::vector<uint64_t> cancelled_;
};

struct fixture_server {
  scripted_backend backend;
  std::shared_ptr<const tokenizer> tok;
  std::unique_ptr<api::front_end> fe;
  std::unique_ptr<http::server> server;
  std::thread io;

  explicit fixture_server(std::vector<std::string> keys = {}, http::cors_policy cors = {}) {
    auto f = gguf_file::open(mpi_test::fx().model);
    EXPECT_TRUE(static_cast<bool>(f));
    auto spec = load_vocab(*f);
    auto t = tokenizer::create(std::move(*spec));
    tok = std::make_shared<const tokenizer>(std::move(*t));
    api::front_end_options o;
    o.model_name = "m";
    o.n_ctx = 512;
    o.n_vocab = tok->n_vocab();
    fe = std::make_unique<api::front_end>(o, std::move(*api::api_keys::load(keys, "")), tok,
                                          backend);
    auto s = http::server::create(
        "127.0.0.1", 0,
        [this](http::request rq, std::shared_ptr<http::response> res) {
          fe->handle(std::move(rq), std::move(res));
        },
        http::server_limits{}, std::move(cors));
    server = std::move(*s);
    io = std::thread([this] { server->run(); });
  }
  ~fixture_server() {
    server->stop();
    io.join();
  }

  /// One request with Connection: close; the raw answer.
  std::string ask(const std::string& path, const std::string& body) {
    return ask(body.empty() ? "GET" : "POST", path, body, "");
  }
  /// `headers`: more header lines, each ending in \r\n.
  std::string ask(const std::string& method, const std::string& path, const std::string& body,
                  const std::string& headers) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string req = method + " " + path +
                            " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n" + headers + "\r\n" + body;
    EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    std::string out;
    char buf[4096];
    for (int i = 0; i < 200; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }
};

int status_of(const std::string& raw) { return raw.size() > 12 ? std::atoi(raw.c_str() + 9) : 0; }

json body_of(const std::string& raw) {
  const auto p = raw.find("\r\n\r\n");
  return json::parse(p == std::string::npos ? "" : raw.substr(p + 4), nullptr, false);
}

/// The value of header `name` in a raw answer ("" when absent); names match in any case.
std::string header_of(const std::string& raw, std::string name) {
  const auto lower = [](std::string x) {
    for (char& c : x) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return x;
  };
  const std::string head = lower(raw.substr(0, raw.find("\r\n\r\n")));
  const auto at = head.find("\r\n" + lower(name) + ":");
  if (at == std::string::npos) {
    return "";
  }
  const auto from = at + 3 + name.size();
  const auto to = raw.find("\r\n", from);
  std::string v = raw.substr(from, to - from);
  return v.erase(0, v.find_first_not_of(' '));
}

#define REQUIRE_FIXTURE() ASSERT_TRUE(mpi_test::fx().error.empty()) << mpi_test::fx().error

const std::string completion = R"({"prompt":"hello","max_tokens":2})";

TEST(openai_server, an_exception_in_a_handler_is_a_500_and_the_server_goes_on) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.throw_on_submit = true;
  const auto raw = s.ask("/v1/completions", completion);
  EXPECT_EQ(status_of(raw), 500) << raw;
  EXPECT_EQ(body_of(raw)["error"]["code"], "internal_error") << raw;
  s.backend.next.throw_on_submit = false;
  EXPECT_EQ(status_of(s.ask("/v1/completions", completion)), 200);
  EXPECT_EQ(status_of(s.ask("/health", "")), 200);
  const auto metrics = s.ask("/metrics", "");
  EXPECT_NE(metrics.find("baton:request_rejected_total{reason=\"internal_error\"} 1"),
            std::string::npos) << metrics;
}

TEST(openai_server, typed_refusals_and_final_events_choose_the_status) {
  REQUIRE_FIXTURE();
  fixture_server s;
  struct row {
    script sc;
    int status;
  };
  const std::vector<row> rows = {
      {{false, refusal::queue_full, refusal::none, false}, 429},
      {{false, refusal::key_quota, refusal::none, false}, 429},
      {{false, refusal::stage_down, refusal::none, false}, 503},
      {{false, refusal::shutting_down, refusal::none, false}, 503},
      {{false, refusal::invalid, refusal::none, false}, 400},
      {{false, refusal::none, refusal::stage_down, true}, 503},
      {{false, refusal::none, refusal::internal, true}, 500},
      {{false, refusal::none, refusal::none, false}, 200},
  };
  for (const auto& r : rows) {
    s.backend.next = r.sc;
    const auto raw = s.ask("/v1/completions", completion);
    EXPECT_EQ(status_of(raw), r.status) << to_string(r.sc.why) << " / "
                                        << to_string(r.sc.final_kind) << ": " << raw;
    if (r.status == 429) {
      EXPECT_NE(raw.find("Retry-After: 3"), std::string::npos) << raw;
    }
  }
}

// -- /tokenize and /detokenize -------------------------------------------------------------

TEST(openai_server, tokenize_and_detokenize_round_trip_as_vllm_shapes_them) {
  REQUIRE_FIXTURE();
  fixture_server s;
  auto raw = s.ask("/tokenize", R"({"prompt":"hello world"})");
  ASSERT_EQ(status_of(raw), 200) << raw;
  const json with_bos = body_of(raw);
  EXPECT_EQ(with_bos["max_model_len"], 512);
  EXPECT_TRUE(with_bos["token_strs"].is_null());
  const auto ids = with_bos["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(with_bos["count"], ids.size());
  EXPECT_EQ(ids, s.tok->encode("hello world", true, true));
  raw = s.ask("/tokenize", R"({"model":"m","prompt":"hello world","add_special_tokens":false,)"
                           R"("return_token_strs":true})");
  ASSERT_EQ(status_of(raw), 200) << raw;
  const json plain = body_of(raw);
  EXPECT_EQ(plain["tokens"].size() + (s.tok->add_bos() ? 1 : 0), ids.size());
  ASSERT_EQ(plain["token_strs"].size(), plain["tokens"].size());
  EXPECT_EQ(plain["token_strs"][0], s.tok->token_text(plain["tokens"][0].get<int32_t>()));
  // back to the text: exactly, and control tokens written out as vLLM's /detokenize does
  raw = s.ask("/detokenize", json{{"tokens", plain["tokens"]}}.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(body_of(raw), json({{"prompt", "hello world"}}));
  raw = s.ask("/detokenize", json{{"tokens", ids}, {"model", "m"}}.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  const std::string text = body_of(raw)["prompt"];
  EXPECT_EQ(text, (s.tok->add_bos() ? s.tok->token_text(s.tok->bos_id()) : "") + "hello world");
  EXPECT_EQ(body_of(s.ask("/detokenize", R"({"tokens":[]})"))["prompt"], "");
}

TEST(openai_server, tokenize_of_a_chat_is_the_prompt_a_chat_completion_submits) {
  REQUIRE_FIXTURE();
  fixture_server s;
  const json messages = {{{"role", "system"}, {"content", "be brief"}},
                         {{"role", "user"}, {"content", "Hi <|eot_id|> there"}}};
  ASSERT_EQ(status_of(s.ask("/v1/chat/completions", json{{"messages", messages}}.dump())), 200);
  auto raw = s.ask("/tokenize", json{{"messages", messages}}.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(body_of(raw)["tokens"].get<std::vector<int32_t>>(), s.backend.last_prompt);
  // the add_special_tokens of vLLM's chat form changes nothing: one BOS either way
  raw = s.ask("/tokenize", json{{"messages", messages}, {"add_special_tokens", true}}.dump());
  EXPECT_EQ(body_of(raw)["tokens"].get<std::vector<int32_t>>(), s.backend.last_prompt);
  raw = s.ask("/tokenize", json{{"messages", messages}, {"add_generation_prompt", false}}.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  const auto open = body_of(raw)["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(open, *encode_chat(*s.tok, {{"system", "be brief"}, {"user", "Hi <|eot_id|> there"}},
                               false, false));
  EXPECT_LT(open.size(), s.backend.last_prompt.size());
}

TEST(openai_server, tokenize_refusals_name_the_field_and_the_id) {
  REQUIRE_FIXTURE();
  fixture_server s;
  const int32_t n_vocab = s.tok->n_vocab();
  struct row {
    const char* path;
    std::string body;
    int status;
    std::string param;
    std::string says;  ///< a part of the message
  };
  const std::vector<row> rows = {
      {"/detokenize", json{{"tokens", {1, 2, n_vocab}}}.dump(), 400, "tokens[2]",
       std::to_string(n_vocab)},
      {"/detokenize", R"({"tokens":[5,-1]})", 400, "tokens[1]", "-1"},
      {"/detokenize", R"({"tokens":[1.5]})", 400, "tokens[0]", "between 0 and"},
      {"/detokenize", R"({"tokens":["1"]})", 400, "tokens[0]", "a string"},
      {"/detokenize", R"({"tokens":[18446744073709551615]})", 400, "tokens[0]",
       "18446744073709551615"},
      {"/detokenize", R"({"tokens":"1 2"})", 400, "tokens", "list of token ids"},
      {"/detokenize", R"({})", 400, "tokens", "nothing"},
      {"/detokenize", R"({"tokens":[1],"model":"other"})", 404, "model", "other"},
      {"/tokenize", R"({"prompt":5})", 400, "prompt", "must be a string"},
      {"/tokenize", R"({})", 400, "prompt", "required"},
      {"/tokenize", R"({"prompt":"a","messages":[{"role":"user","content":"b"}]})", 400, "prompt",
       "not both"},
      {"/tokenize", R"({"prompt":"a","add_special_tokens":"yes"})", 400, "add_special_tokens",
       "boolean"},
      {"/tokenize", R"({"prompt":"a","return_token_strs":1})", 400, "return_token_strs",
       "boolean"},
      {"/tokenize", R"({"messages":[{"role":"wizard","content":"b"}]})", 400, "messages[0].role",
       "wizard"},
      {"/tokenize", R"({"messages":[{"role":"user","content":"b"}],"tools":[{"type":"function"}]})",
       400, "tools[0].function", "must be an object"},
      {"/tokenize", R"({"messages":[],"prompt":null})", 400, "messages", "non-empty"},
      {"/tokenize", R"([1,2])", 400, "", "JSON object"},
      {"/tokenize", R"({"prompt":)", 400, "", "not valid JSON"},
  };
  for (const auto& r : rows) {
    const auto raw = s.ask(r.path, r.body);
    SCOPED_TRACE(std::string(r.path) + " " + r.body);
    ASSERT_EQ(status_of(raw), r.status) << raw;
    const json e = body_of(raw)["error"];
    EXPECT_EQ(e["param"], r.param.empty() ? json(nullptr) : json(r.param)) << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find(r.says), std::string::npos) << e.dump();
  }
  const auto get = s.ask("/tokenize", "");
  EXPECT_EQ(status_of(get), 405) << get;
  EXPECT_EQ(header_of(get, "Allow"), "POST");
}

TEST(openai_server, tokenize_needs_the_api_key_when_the_server_has_keys) {
  REQUIRE_FIXTURE();
  fixture_server s({"sekret"});
  for (const char* path : {"/tokenize", "/detokenize"}) {
    const auto raw = s.ask("POST", path, R"({"prompt":"a","tokens":[1]})", "");
    EXPECT_EQ(status_of(raw), 401) << raw;
    EXPECT_EQ(body_of(raw)["error"]["code"], "invalid_api_key");
  }
  const auto raw = s.ask("POST", "/tokenize", R"({"prompt":"a"})",
                         "Authorization: Bearer sekret\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
}

// -- tool calls --------------------------------------------------------------------------------

const json weather_tool = {
    {"type", "function"},
    {"function",
     {{"name", "get_weather"},
      {"parameters",
       {{"type", "object"},
        {"properties", {{"city", {{"type", "string"}}}}},
        {"required", {"city"}}}}}}};

json tool_request(bool stream, json extra = json::object()) {
  json body = {{"messages", json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}})},
               {"tools", json::array({weather_tool})},
               {"stream", stream},
               {"max_tokens", 64}};
  body.update(extra);
  return body;
}

/// The JSON of each `data:` event of a raw SSE answer, [DONE] left out.
std::vector<json> sse_events(const std::string& raw) {
  std::vector<json> out;
  size_t at = 0;
  while ((at = raw.find("data: ", at)) != std::string::npos) {
    const size_t end = raw.find("\n\n", at);
    const std::string data = raw.substr(at + 6, end - at - 6);
    at = end;
    if (data != "[DONE]") {
      out.push_back(json::parse(data, nullptr, false));
    }
  }
  return out;
}

const std::string weather_call = R"({"name": "get_weather", "parameters": {"city": "Paris"}})";

TEST(openai_server, a_reply_that_is_a_call_to_a_declared_tool_is_a_tool_call) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.reply = {"\n", R"({"name": "get_weather", )", R"("parameters": {"city": )",
                          R"("Paris"}})"};
  auto raw = s.ask("/v1/chat/completions", tool_request(false).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_TRUE(s.backend.last_schema.empty()) << "tool_choice auto constrains nothing";
  json choice = body_of(raw)["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls") << raw;
  EXPECT_TRUE(choice["message"]["content"].is_null()) << raw;
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << raw;
  const json call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u) << call;
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(call["function"]["arguments"], R"({"city":"Paris"})");
  // text, an undeclared tool, or tools not offered: content, as the model wrote it
  for (const auto& [reply, extra] :
       {std::pair{std::string("It is sunny."), json::object()},
        std::pair{std::string(R"({"name": "get_time", "parameters": {}})"), json::object()},
        std::pair{weather_call, json{{"tool_choice", "none"}}}}) {
    s.backend.next.reply = {reply};
    raw = s.ask("/v1/chat/completions", tool_request(false, extra).dump());
    ASSERT_EQ(status_of(raw), 200) << raw;
    choice = body_of(raw)["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "stop") << raw;
    EXPECT_EQ(choice["message"]["content"], reply) << raw;
    EXPECT_FALSE(choice["message"].contains("tool_calls")) << raw;
  }
}

TEST(openai_server, a_streamed_call_is_held_back_and_sent_as_openai_streams_tool_calls) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.reply = {" ", R"({"name": "get_weather", )", R"("parameters": {"city": )",
                          R"("Paris"}})"};
  auto raw = s.ask("/v1/chat/completions",
                   tool_request(true, {{"logprobs", true}, {"stream_options",
                                                             {{"include_usage", true}}}})
                       .dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  auto events = sse_events(raw);
  ASSERT_EQ(events.size(), 5u) << raw;  // role, call, arguments, finish, usage
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  const json first = events[1]["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(first["index"], 0);
  EXPECT_EQ(first["type"], "function");
  EXPECT_EQ(first["id"].get<std::string>().rfind("call_", 0), 0u) << first;
  EXPECT_EQ(first["function"], json({{"name", "get_weather"}, {"arguments", ""}}));
  const json args = events[2]["choices"][0];
  EXPECT_EQ(args["delta"]["tool_calls"][0],
            json({{"index", 0}, {"function", {{"arguments", R"({"city":"Paris"})"}}}}));
  EXPECT_EQ(args["logprobs"]["content"].size(), 4u) << "every held token's logprob goes out";
  EXPECT_EQ(events[3]["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(events[4]["choices"].empty());
  EXPECT_TRUE(events[4].contains("usage"));
  for (const json& e : events) {
    const json delta = e["choices"].empty() ? json() : e["choices"][0]["delta"];
    EXPECT_TRUE(delta.is_null() || !delta.contains("content") || delta["content"] == "")
        << "no call text went out as content: " << e;
  }
  EXPECT_NE(raw.find("data: [DONE]"), std::string::npos);
}

TEST(openai_server, streamed_text_is_held_only_while_it_may_be_a_call) {
  REQUIRE_FIXTURE();
  fixture_server s;
  const auto content_of = [](const std::vector<json>& events) {
    std::vector<std::string> pieces;
    for (const json& e : events) {
      if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content")) {
        pieces.push_back(e["choices"][0]["delta"]["content"]);
      }
    }
    return pieces;
  };
  // white space waits for the first other character; then text streams as it comes
  s.backend.next.reply = {"\n", " ", "It is", " sunny."};
  auto raw = s.ask("/v1/chat/completions", tool_request(true).dump());
  auto events = sse_events(raw);
  EXPECT_EQ(content_of(events), std::vector<std::string>({"", "\n It is", " sunny."})) << raw;
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "stop") << raw;
  // JSON that is no call: held to the end, then sent as content
  s.backend.next.reply = {R"({"answer": )", "42}"};
  raw = s.ask("/v1/chat/completions", tool_request(true).dump());
  events = sse_events(raw);
  EXPECT_EQ(content_of(events), std::vector<std::string>({"", R"({"answer": 42})"})) << raw;
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "stop") << raw;
  // tool_choice none, or no tools: nothing is held
  s.backend.next.reply = {R"({"name": "get_weather", )", R"("parameters": {}})"};
  raw = s.ask("/v1/chat/completions", tool_request(true, {{"tool_choice", "none"}}).dump());
  EXPECT_EQ(content_of(sse_events(raw)),
            std::vector<std::string>({"", R"({"name": "get_weather", )", R"("parameters": {}})"}))
      << raw;
}

TEST(openai_server, a_required_or_named_call_is_constrained_and_conflicts_with_response_format) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.reply = {weather_call};
  auto raw = s.ask("/v1/chat/completions",
                   tool_request(false, {{"tool_choice", "required"}}).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  const json schema = json::parse(s.backend.last_schema, nullptr, false);
  EXPECT_EQ(schema["properties"]["name"]["const"], "get_weather") << s.backend.last_schema;
  EXPECT_EQ(schema["properties"]["parameters"], weather_tool["function"]["parameters"]);
  EXPECT_EQ(body_of(raw)["choices"][0]["finish_reason"], "tool_calls") << raw;
  raw = s.ask("/v1/chat/completions",
              tool_request(false, {{"tool_choice",
                                    {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}})
                  .dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(json::parse(s.backend.last_schema), schema);
  raw = s.ask("/v1/chat/completions",
              tool_request(false, {{"tool_choice", "required"},
                                   {"response_format", {{"type", "json_object"}}}})
                  .dump());
  EXPECT_EQ(status_of(raw), 400) << raw;
  EXPECT_EQ(body_of(raw)["error"]["param"], "tool_choice") << raw;
  // a tool schema the grammar cannot take names the tools
  json bad = tool_request(false, {{"tool_choice", "required"}});
  bad["tools"][0]["function"]["parameters"] = {{"type", "object"}, {"$ref", "#/nowhere"}};
  raw = s.ask("/v1/chat/completions", bad.dump());
  EXPECT_EQ(status_of(raw), 400) << raw;
  EXPECT_EQ(body_of(raw)["error"]["param"], "tools") << raw;
}

TEST(openai_server, tool_turns_of_a_later_request_are_rendered_as_llama_31_turns) {
  REQUIRE_FIXTURE();
  fixture_server s;
  json body = tool_request(false);
  body["messages"].push_back(
      {{"role", "assistant"},
       {"content", nullptr},
       {"tool_calls",
        {{{"id", "call_1"},
          {"type", "function"},
          {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Paris"})"}}}}}}});
  body["messages"].push_back(
      {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "21 C <|eot_id|>"}});
  s.backend.next.reply = {"It is 21 C."};
  auto raw = s.ask("/v1/chat/completions", body.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(body_of(raw)["choices"][0]["message"]["content"], "It is 21 C.");
  const auto parsed = api::parse_request(body, true);
  const auto& messages = std::get<api::completion_request>(parsed).messages;
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[1].content, weather_call);
  EXPECT_EQ(messages[2].role, "ipython");
  EXPECT_EQ(s.backend.last_prompt, *encode_chat(*s.tok, messages, true, false))
      << "the tool's result is text: its <|eot_id|> cannot end the turn";
  // /tokenize of the same body counts the same prompt, tools included
  raw = s.ask("/tokenize", body.dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(body_of(raw)["tokens"].get<std::vector<int32_t>>(), s.backend.last_prompt);
  // tool_choice none: the tools are not shown, the earlier turns are
  body["tool_choice"] = "none";
  ASSERT_EQ(status_of(s.ask("/v1/chat/completions", body.dump())), 200);
  std::vector<chat_message> plain = messages;
  plain[0].content = "Weather in Paris?";
  EXPECT_EQ(s.backend.last_prompt, *encode_chat(*s.tok, plain, true, false));
}

// -- n choices ---------------------------------------------------------------------------------

json chat_body(json extra = json::object()) {
  json body = {{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
               {"max_tokens", 16}};
  body.update(extra);
  return body;
}

/// Per choice index, what a raw SSE answer streamed: its chunks in order.
std::map<int, std::vector<json>> chunks_by_choice(const std::vector<json>& events) {
  std::map<int, std::vector<json>> out;
  for (const json& e : events) {
    for (const json& c : e.value("choices", json::array())) {
      out[c["index"].get<int>()].push_back(c);
    }
  }
  return out;
}

/// A streamed choice's text: its content deltas (chat) or texts (completions) joined.
std::string streamed_text(const std::vector<json>& chunks) {
  std::string text;
  for (const json& c : chunks) {
    if (c.contains("delta")) {
      text += c["delta"].value("content", "");
    } else {
      text += c.value("text", "");
    }
  }
  return text;
}

size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = 0; (at = s.find(part, at)) != std::string::npos; at += part.size()) {
    ++n;
  }
  return n;
}

// seed 1: choice 0 draws with seed 1, choice 1 with 2, choice 2 with 3 (by_seed[0])
const std::vector<std::vector<std::string>> three_replies = {
    {"a", "b"}, {"ccc"}, {"d", "e", "f"}};
const std::vector<std::string> three_texts = {"ccc", "def", "ab"};

TEST(openai_server, n_choices_answer_whole_sorted_by_index_with_usage_summed) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.by_seed = three_replies;
  for (bool chat : {true, false}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    const json body = chat ? chat_body({{"n", 3}, {"seed", 1}, {"logprobs", true}})
                           : json{{"prompt", "hello"}, {"n", 3}, {"seed", 1}, {"logprobs", 1}};
    const auto raw = s.ask(chat ? "/v1/chat/completions" : "/v1/completions", body.dump());
    ASSERT_EQ(status_of(raw), 200) << raw;
    EXPECT_EQ(s.backend.last.n, 3);
    EXPECT_EQ(s.backend.last.sampling.seed, 1u) << "the request's seed; the router adds i";
    const json reply = body_of(raw);
    EXPECT_EQ(reply["id"], (chat ? "chatcmpl-" : "cmpl-") + std::to_string(s.backend.last.id));
    ASSERT_EQ(reply["choices"].size(), 3u) << raw;
    int32_t completion_tokens = 0;
    for (size_t i = 0; i < 3; ++i) {
      const json& c = reply["choices"][i];
      EXPECT_EQ(c["index"], i) << raw;
      EXPECT_EQ(chat ? c["message"]["content"] : c["text"], three_texts[i]) << raw;
      EXPECT_EQ(c["finish_reason"], "stop");
      // each choice's own logprobs: one per token, the value its events carried
      const json lp = chat ? c["logprobs"]["content"] : c["logprobs"]["token_logprobs"];
      ASSERT_EQ(lp.size(), three_texts[i] == "ccc" ? 1u : three_texts[i].size()) << raw;
      const float mine = -0.25f * static_cast<float>(i + 1);
      EXPECT_FLOAT_EQ((chat ? lp[0]["logprob"] : lp[0]).get<float>(), mine) << raw;
      completion_tokens += static_cast<int32_t>(lp.size());
    }
    const json usage = reply["usage"];
    EXPECT_EQ(usage["prompt_tokens"], s.backend.last_prompt.size()) << "counted once";
    EXPECT_EQ(usage["completion_tokens"], completion_tokens);
    EXPECT_EQ(usage["completion_tokens"], 6);
    EXPECT_EQ(usage["total_tokens"], s.backend.last_prompt.size() + 6);
  }
  // the ids of a request's choices are its own: the next request starts past them
  const uint64_t before = s.backend.last.id;
  ASSERT_EQ(status_of(s.ask("/v1/completions", completion)), 200);
  EXPECT_EQ(s.backend.last.id, before + 3);
  EXPECT_EQ(s.backend.last.n, 1);
}

TEST(openai_server, n_choices_stream_each_under_its_index_then_one_usage_and_one_done) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.by_seed = three_replies;
  for (bool chat : {true, false}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    const json options = {{"include_usage", true}};
    const json body =
        chat ? chat_body({{"n", 3}, {"seed", 1}, {"stream", true}, {"stream_options", options}})
             : json{{"prompt", "hello"}, {"n", 3}, {"seed", 1}, {"stream", true},
                    {"stream_options", options}};
    const auto raw = s.ask(chat ? "/v1/chat/completions" : "/v1/completions", body.dump());
    ASSERT_EQ(status_of(raw), 200) << raw;
    const auto events = sse_events(raw);
    const auto by_choice = chunks_by_choice(events);
    ASSERT_EQ(by_choice.size(), 3u) << raw;
    size_t last_finish = 0;  // where in `events` the last finish chunk came
    for (int i = 0; i < 3; ++i) {
      const auto& chunks = by_choice.at(i);
      ASSERT_FALSE(chunks.empty());
      if (chat) {
        EXPECT_EQ(chunks.front()["delta"]["role"], "assistant") << "choice " << i << ": " << raw;
        for (size_t k = 1; k < chunks.size(); ++k) {
          EXPECT_FALSE(chunks[k]["delta"].contains("role")) << raw;
        }
      }
      EXPECT_EQ(streamed_text(chunks), three_texts[static_cast<size_t>(i)]) << raw;
      size_t n_finish = 0;
      for (const json& c : chunks) {
        n_finish += c["finish_reason"].is_null() ? 0 : 1;
      }
      EXPECT_EQ(n_finish, 1u) << "choice " << i << ": " << raw;
      EXPECT_EQ(chunks.back()["finish_reason"], "stop") << "its finish comes last";
    }
    for (size_t k = 0; k < events.size(); ++k) {
      for (const json& c : events[k]["choices"]) {
        if (!c["finish_reason"].is_null()) {
          last_finish = k;
        }
      }
    }
    // choices end out of order (the shortest first): the stream follows the events
    EXPECT_EQ(events.back()["choices"], json::array()) << raw;
    EXPECT_EQ(events.back()["usage"]["completion_tokens"], 6) << raw;
    EXPECT_EQ(last_finish + 2, events.size()) << "usage right after the last choice's finish";
    size_t n_usage = 0;
    for (const json& e : events) {
      n_usage += e.contains("usage") ? 1 : 0;
    }
    EXPECT_EQ(n_usage, 1u) << raw;
    EXPECT_EQ(count_of(raw, "data: [DONE]"), 1u) << raw;
    EXPECT_EQ(raw.rfind("data: [DONE]"), raw.rfind("data: ")) << "[DONE] is the last event";
  }
}

TEST(openai_server, n_choices_each_read_as_a_tool_call_or_as_text_whole_and_streamed) {
  REQUIRE_FIXTURE();
  fixture_server s;
  // choice 0 (seed 0) calls, choice 1 answers in text, choice 2 calls after white space
  s.backend.next.by_seed = {{R"({"name": "get_weather", )", R"("parameters": {"city": "Paris"}})"},
                            {"It is", " sunny."},
                            {"\n", weather_call}};
  auto raw = s.ask("/v1/chat/completions", tool_request(false, {{"n", 3}, {"seed", 0}}).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  const json choices = body_of(raw)["choices"];
  ASSERT_EQ(choices.size(), 3u) << raw;
  for (size_t i : {0u, 2u}) {
    EXPECT_EQ(choices[i]["finish_reason"], "tool_calls") << raw;
    EXPECT_TRUE(choices[i]["message"]["content"].is_null()) << raw;
    EXPECT_EQ(choices[i]["message"]["tool_calls"][0]["function"]["arguments"],
              R"({"city":"Paris"})");
  }
  EXPECT_NE(choices[0]["message"]["tool_calls"][0]["id"],
            choices[2]["message"]["tool_calls"][0]["id"]) << "each call its own id";
  EXPECT_EQ(choices[1]["finish_reason"], "stop");
  EXPECT_EQ(choices[1]["message"]["content"], "It is sunny.");
  EXPECT_FALSE(choices[1]["message"].contains("tool_calls"));
  // streamed: the text choice streams as it comes while the others are held back
  raw = s.ask("/v1/chat/completions",
              tool_request(true, {{"n", 3}, {"seed", 0}}).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  const auto events = sse_events(raw);
  const auto by_choice = chunks_by_choice(events);
  ASSERT_EQ(by_choice.size(), 3u) << raw;
  for (int i : {0, 2}) {
    std::string name;
    std::string arguments;
    for (const json& c : by_choice.at(i)) {
      EXPECT_TRUE(!c["delta"].contains("content") || c["delta"]["content"] == "") << raw;
      if (c["delta"].contains("tool_calls")) {
        EXPECT_EQ(c["delta"]["tool_calls"][0]["index"], 0);
        name += c["delta"]["tool_calls"][0]["function"].value("name", "");
        arguments += c["delta"]["tool_calls"][0]["function"].value("arguments", "");
      }
    }
    EXPECT_EQ(name, "get_weather") << "choice " << i << ": " << raw;
    EXPECT_EQ(arguments, R"({"city":"Paris"})") << raw;
    EXPECT_EQ(by_choice.at(i).back()["finish_reason"], "tool_calls") << raw;
  }
  EXPECT_EQ(streamed_text(by_choice.at(1)), "It is sunny.") << raw;
  EXPECT_EQ(by_choice.at(1).back()["finish_reason"], "stop") << raw;
  // choice 1's first words go out before any choice has ended
  size_t first_text = events.size();
  size_t first_finish = events.size();
  for (size_t k = 0; k < events.size(); ++k) {
    const json& c = events[k]["choices"][0];
    if (c["index"] == 1 && c["delta"].value("content", "") == "It is") {
      first_text = std::min(first_text, k);
    }
    if (!c["finish_reason"].is_null()) {
      first_finish = std::min(first_finish, k);
    }
  }
  EXPECT_LT(first_text, first_finish) << raw;
}

TEST(openai_server, n_choices_under_a_response_format_each_hold_their_own_document) {
  REQUIRE_FIXTURE();
  fixture_server s;
  s.backend.next.by_seed = {{R"({"a": )", "1}"}, {R"({"a": 22})"}};
  const json format = {
      {"type", "json_schema"},
      {"json_schema",
       {{"name", "a"},
        {"schema",
         {{"type", "object"},
          {"properties", {{"a", {{"type", "integer"}}}}},
          {"required", {"a"}},
          {"not", {{"required", {"b"}}}}}}}}};  // not enforced: named in a Warning
  const auto raw = s.ask("/v1/chat/completions",
                         chat_body({{"n", 2}, {"seed", 0}, {"response_format", format}}).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(s.backend.last.n, 2);
  EXPECT_EQ(json::parse(s.backend.last_schema), format["json_schema"]["schema"])
      << "one constraint, which the router gives each choice";
  EXPECT_NE(header_of(raw, "Warning").find("not"), std::string::npos) << raw;
  const json choices = body_of(raw)["choices"];
  ASSERT_EQ(choices.size(), 2u) << raw;
  for (size_t i = 0; i < 2; ++i) {
    const json doc = json::parse(choices[i]["message"]["content"].get<std::string>(), nullptr,
                                 false);
    EXPECT_EQ(doc, json({{"a", i == 0 ? 1 : 22}})) << raw;
  }
}

TEST(openai_server, n_out_of_range_best_of_and_the_admission_refusal_are_400s) {
  REQUIRE_FIXTURE();
  fixture_server s;
  for (const auto& [extra, param] :
       {std::pair{json{{"n", 129}}, "n"}, std::pair{json{{"n", 0}}, "n"},
        std::pair{json{{"n", 2.5}}, "n"}, std::pair{json{{"n", "3"}}, "n"},
        std::pair{json{{"n", 3}, {"best_of", 2}}, "best_of"},
        std::pair{json{{"n", 3}, {"best_of", 4}}, "best_of"}}) {
    for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
      json body = std::string(path) == "/v1/completions" ? json{{"prompt", "x"}} : chat_body();
      body.update(extra);
      const auto raw = s.ask(path, body.dump());
      EXPECT_EQ(status_of(raw), 400) << body.dump() << ": " << raw;
      EXPECT_EQ(body_of(raw)["error"]["param"], param) << raw;
    }
  }
  // n past the sequences the server runs at once: the admission's invalid refusal
  s.backend.next.why = refusal::invalid;
  const auto raw = s.ask("/v1/chat/completions", chat_body({{"n", 100}}).dump());
  EXPECT_EQ(status_of(raw), 400) << raw;
  EXPECT_EQ(body_of(raw)["error"]["type"], "invalid_request_error") << raw;
  EXPECT_EQ(s.backend.last.n, 100);
}

TEST(openai_server, a_choice_that_ends_in_an_error_ends_the_request_with_it) {
  REQUIRE_FIXTURE();
  fixture_server s;
  // choice 1 fails while choice 0 still runs: the error, and choice 0 cancelled
  s.backend.next.by_seed = {{"a", "b", "c"}, {"x"}};
  s.backend.next.final_error = true;
  s.backend.next.final_kind = refusal::internal;
  s.backend.next.error_choice = 1;
  auto raw = s.ask("/v1/completions", json{{"prompt", "x"}, {"n", 2}, {"seed", 0}}.dump());
  EXPECT_EQ(status_of(raw), 500) << raw;
  EXPECT_TRUE(body_of(raw).contains("error")) << raw;
  EXPECT_EQ(s.backend.take_cancelled(), std::vector<uint64_t>{s.backend.last.id});
  raw = s.ask("/v1/chat/completions", chat_body({{"n", 2}, {"seed", 0}, {"stream", true}}).dump());
  ASSERT_EQ(status_of(raw), 200) << raw;
  auto events = sse_events(raw);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().contains("error")) << raw;
  EXPECT_EQ(events.back()["error"]["type"], "server_error") << raw;
  for (const json& e : events) {
    for (const json& c : e.value("choices", json::array())) {
      EXPECT_TRUE(c["finish_reason"].is_null()) << "no choice finished: " << raw;
    }
  }
  EXPECT_EQ(count_of(raw, "data: [DONE]"), 1u) << raw;
  EXPECT_EQ(s.backend.take_cancelled(), std::vector<uint64_t>{s.backend.last.id});
  // choice 1 fails after choice 0 ended: the same error, nothing left to cancel
  s.backend.next.by_seed = {{"a"}, {"x", "y", "z"}};
  raw = s.ask("/v1/chat/completions", chat_body({{"n", 2}, {"seed", 0}, {"stream", true}}).dump());
  events = sse_events(raw);
  ASSERT_FALSE(events.empty()) << raw;
  EXPECT_TRUE(events.back().contains("error")) << raw;
  EXPECT_EQ(chunks_by_choice(events)[0].back()["finish_reason"], "stop") << raw;
  EXPECT_TRUE(s.backend.take_cancelled().empty());
  raw = s.ask("/v1/chat/completions", chat_body({{"n", 2}, {"seed", 0}}).dump());
  EXPECT_EQ(status_of(raw), 500) << raw;
}

// -- CORS -------------------------------------------------------------------------------------

http::cors_policy cors(const std::string& origins, bool credentials = false,
                       const std::string& methods = "*", const std::string& headers = "*") {
  auto p = http::cors_policy::parse(origins, methods, headers, credentials);
  EXPECT_TRUE(static_cast<bool>(p)) << p.err().message;
  return p ? *p : http::cors_policy{};
}

TEST(openai_server, cors_flags_take_json_or_comma_lists_and_name_a_bad_value) {
  for (const char* ok :
       {R"(["http://a.com", "https://b.org:8443"])", "http://a.com,https://b.org:8443",
        " http://a.com , https://b.org:8443 ", R"(["*"])", "*", "", "[]"}) {
    EXPECT_TRUE(static_cast<bool>(http::cors_policy::parse(ok, "*", "*", false))) << ok;
  }
  EXPECT_FALSE(cors("").enabled());
  EXPECT_FALSE(cors("[]").enabled());
  EXPECT_TRUE(cors(R"(["http://a.com"])").enabled());
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"http://a.com/", "*", "*"}, "--allowed-origins: 'http://a.com/'"},
      {{"a.com", "*", "*"}, "--allowed-origins: 'a.com'"},
      {{"http://*.a.com", "*", "*"}, "--allowed-origins"},
      {{R"(["http://a.com")", "*", "*"}, "--allowed-origins"},
      {{R"([5])", "*", "*"}, "--allowed-origins"},
      {{"*", "GET POST", "*"}, "--allowed-methods: 'GET POST'"},
      {{"*", "*", R"(["x-a b"])"}, "--allowed-headers: 'x-a b'"},
  };
  for (const auto& [v, says] : bad) {
    const auto p = http::cors_policy::parse(v[0], v[1], v[2], false);
    ASSERT_FALSE(static_cast<bool>(p)) << v[0] << " " << v[1] << " " << v[2];
    EXPECT_NE(p.err().message.find(says), std::string::npos) << p.err().message;
  }
}

TEST(openai_server, cors_answers_allowed_origins_and_preflights_before_the_key_check) {
  REQUIRE_FIXTURE();
  fixture_server s({"sekret"}, cors(R"(["http://a.com", "http://b.com"])"));
  const std::string key = "Authorization: Bearer sekret\r\n";
  // a preflight on any path, with no key: 204 and what the browser asked for
  for (const char* path : {"/v1/chat/completions", "/tokenize", "/anything"}) {
    const auto raw = s.ask("OPTIONS", path, "",
                           "Origin: http://b.com\r\nAccess-Control-Request-Method: POST\r\n"
                           "Access-Control-Request-Headers: Content-Type, Authorization\r\n");
    EXPECT_EQ(status_of(raw), 204) << raw;
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "http://b.com") << raw;
    EXPECT_NE(header_of(raw, "Access-Control-Allow-Methods").find("POST"), std::string::npos);
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Headers"), "content-type, authorization");
    EXPECT_EQ(header_of(raw, "Access-Control-Max-Age"), "600");
    EXPECT_EQ(header_of(raw, "Vary"), "Origin");
    EXPECT_EQ(header_of(raw, "Content-Length"), "") << "a 204 has no body";
  }
  // answers to an allowed origin carry the header: JSON, refusals, SSE
  auto raw = s.ask("POST", "/v1/completions", completion, key + "Origin: http://a.com\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "http://a.com");
  EXPECT_EQ(header_of(raw, "Vary"), "Origin");
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Credentials"), "");
  raw = s.ask("POST", "/v1/completions", completion, "Origin: http://a.com\r\n");
  EXPECT_EQ(status_of(raw), 401) << raw;
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "http://a.com");
  raw = s.ask("POST", "/v1/chat/completions",
              R"({"messages":[{"role":"user","content":"hi"}],"stream":true})",
              key + "Origin: http://a.com\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_NE(header_of(raw, "Content-Type").find("text/event-stream"), std::string::npos) << raw;
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "http://a.com") << raw;
  EXPECT_NE(raw.find("data: [DONE]"), std::string::npos) << raw;
  // another origin gets no CORS header (the browser keeps the answer from the page), and
  // its preflight is refused; no Origin at all changes nothing
  raw = s.ask("POST", "/v1/completions", completion, key + "Origin: http://evil.com\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "");
  EXPECT_EQ(header_of(raw, "Vary"), "");
  raw = s.ask("OPTIONS", "/v1/completions", "",
              "Origin: http://evil.com\r\nAccess-Control-Request-Method: POST\r\n");
  EXPECT_EQ(status_of(raw), 400) << raw;
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "");
  raw = s.ask("POST", "/v1/completions", completion, key);
  EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "");
  // an OPTIONS that is no preflight goes to the routes, as without CORS
  EXPECT_EQ(status_of(s.ask("OPTIONS", "/v1/completions", "", key + "Origin: http://a.com\r\n")),
            405);
}

TEST(openai_server, cors_wildcards_methods_headers_and_credentials) {
  REQUIRE_FIXTURE();
  const std::string preflight = "Access-Control-Request-Method: POST\r\n";
  {
    fixture_server s({}, cors("*"));
    const auto raw = s.ask("POST", "/v1/completions", completion, "Origin: http://x.org\r\n");
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "*") << raw;
  }
  {
    // credentials: the origin echoed, never `*`; "null" (sandboxed pages) never allowed
    fixture_server s({}, cors("*", true));
    auto raw = s.ask("POST", "/v1/completions", completion, "Origin: http://x.org\r\n");
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "http://x.org") << raw;
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Credentials"), "true");
    raw = s.ask("POST", "/v1/completions", completion, "Origin: null\r\n");
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "") << raw;
  }
  {
    fixture_server s({}, cors("http://x.org", false, "GET,POST", R"(["Authorization"])"));
    auto raw = s.ask("OPTIONS", "/v1/completions", "",
                     "Origin: http://x.org\r\n" + preflight +
                         "Access-Control-Request-Headers: authorization, content-type\r\n");
    EXPECT_EQ(status_of(raw), 204) << raw;
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Methods"), "GET, POST");
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Headers"), "authorization");
    raw = s.ask("OPTIONS", "/v1/completions", "",
                "Origin: http://x.org\r\nAccess-Control-Request-Method: DELETE\r\n");
    EXPECT_EQ(status_of(raw), 400) << raw;
    raw = s.ask("OPTIONS", "/v1/completions", "",
                "Origin: http://x.org\r\n" + preflight +
                    "Access-Control-Request-Headers: x-secret\r\n");
    EXPECT_EQ(status_of(raw), 400) << raw;
    EXPECT_NE(body_of(raw)["error"]["message"].get<std::string>().find("x-secret"),
              std::string::npos) << raw;
  }
  {
    // no --allowed-origins: no CORS at all, as before
    fixture_server s;
    auto raw = s.ask("OPTIONS", "/v1/completions", "",
                     "Origin: http://x.org\r\n" + preflight);
    EXPECT_EQ(status_of(raw), 405) << raw;
    EXPECT_EQ(header_of(raw, "Access-Control-Allow-Origin"), "");
  }
}

}  // namespace
}  // namespace baton
