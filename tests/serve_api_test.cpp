// `baton serve`'s vLLM-style extras end to end (part of test_serve): the per-key quota
// (--max-concurrent-per-key) holds a second request of a key beyond it to a 429 in
// OpenAI's shape while other keys go on, and frees with the first request; the CORS flags
// in both of vLLM's spellings, and a bad value refused at start naming the flag;
// /tokenize and /detokenize on the live server; a required or named tool call, whole and
// streamed, made by the demo model under the call's grammar; n choices (seeded ones
// repeat, choice i is the request seeded seed + i, greedy ones agree, n past
// --max-num-seqs refused). Their details are unit-tested over a scripted backend in
// openai_server_test.cpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/serve_util.hpp"

namespace baton {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

#define REQUIRE_FIXTURE() ASSERT_TRUE(fx().error.empty()) << fx().error

/// A streaming completion held open on its own connection: constructed once its first
/// SSE event has arrived (it is admitted and running); closing the socket cancels it.
class open_stream {
 public:
  open_stream(int port, const std::string& key, const std::string& body) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return;
    }
    const std::string rq = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                           key + "\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body;
    if (::send(fd_, rq.data(), rq.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(rq.size())) {
      return;
    }
    char buf[4096];
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until && head_.find("data: ") == std::string::npos) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      head_.append(buf, static_cast<size_t>(n));
    }
  }
  ~open_stream() { ::close(fd_); }
  bool streaming() const { return head_.find("data: ") != std::string::npos; }
  const std::string& head() const { return head_; }

 private:
  // -- member variables -------------------------------------------------------
  int fd_ = -1;
  std::string head_;  ///< what came before the first event was seen
};

TEST(serve_api, a_key_past_its_concurrency_quota_gets_429_while_other_keys_go_on) {
  REQUIRE_FIXTURE();
  server_process s("--api-key alice --api-key bob --max-concurrent-per-key 1");
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string shortreq = R"({"prompt":"b","max_tokens":2})";
  const auto as = [](const std::string& key) { return "-H 'Authorization: Bearer " + key + "'"; };
  {
    const open_stream first(s.port(), "alice",
                            R"({"prompt":"a","max_tokens":1500,"ignore_eos":true,"stream":true})");
    ASSERT_TRUE(first.streaming()) << first.head() << "\n" << s.log();
    const auto second = curl(s, "/v1/completions", shortreq, as("alice"));
    EXPECT_EQ(second.status, 429) << second.body;
    const json e = json::parse(second.body, nullptr, false);
    ASSERT_TRUE(e.contains("error")) << second.body;
    EXPECT_EQ(e["error"]["type"], "rate_limit_exceeded");
    EXPECT_EQ(e["error"]["code"], "rate_limit_exceeded");
    EXPECT_TRUE(e["error"]["param"].is_null());
    EXPECT_TRUE(e["error"]["message"].is_string());
    EXPECT_NE(second.headers.find("Retry-After:"), std::string::npos) << second.headers;
    const auto other = curl(s, "/v1/completions", shortreq, as("bob"));
    EXPECT_EQ(other.status, 200) << other.body;
    EXPECT_GE(metric(s, "baton:request_rejected_total{reason=\"key_quota\"}"), 1);
  }  // the first request's client goes away: its request is cancelled, the quota freed
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = curl(s, "/v1/completions", shortreq, as("alice")).status;
    if (status != 200) {
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(s.stop(), 0) << s.log();
}

TEST(serve_api, cors_flags_in_both_spellings_and_a_bad_one_refused_at_start) {
  REQUIRE_FIXTURE();
  for (const std::string flag : {R"(--allowed-origins '["http://a.com", "http://b.com"]')",
                                 "--allowed-origins http://a.com,http://b.com"}) {
    server_process s(flag + " --allow-credentials");
    ASSERT_GT(s.port(), 0) << s.log();
    auto r = curl(s, "/v1/models", "", "-H 'Origin: http://b.com'");
    EXPECT_EQ(r.status, 200) << flag;
    EXPECT_NE(r.headers.find("Access-Control-Allow-Origin: http://b.com"), std::string::npos)
        << flag << "\n" << r.headers;
    EXPECT_NE(r.headers.find("Access-Control-Allow-Credentials: true"), std::string::npos);
    r = curl(s, "/v1/completions", "",
             "-X OPTIONS -H 'Origin: http://a.com' -H 'Access-Control-Request-Method: POST'");
    EXPECT_EQ(r.status, 204) << flag << "\n" << r.headers;
    r = curl(s, "/v1/models", "", "-H 'Origin: http://c.com'");
    EXPECT_EQ(r.headers.find("Access-Control-Allow-Origin"), std::string::npos) << r.headers;
    EXPECT_EQ(s.stop(), 0) << s.log();
  }
  const std::string serve = std::string(BATON_BINARY) + " serve --port 0 -m " + fx().model;
  for (const auto& [args, says] :
       {std::pair{"--allowed-origins http://a.com/", "--allowed-origins: 'http://a.com/'"},
        std::pair{"--allowed-origins '[\"http://a.com\"'", "--allowed-origins"},
        std::pair{"--allowed-origins '*' --allowed-methods 'GET POST'", "--allowed-methods"},
        std::pair{"--max-concurrent-per-key -1", "--max-concurrent-per-key -1"}}) {
    const auto r = shell("timeout 60 " + serve + " " + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }
}

TEST(serve_api, tokenize_and_detokenize_on_the_live_server) {
  REQUIRE_FIXTURE();
  server_process s("--served-model-name tiny");
  ASSERT_GT(s.port(), 0) << s.log();
  auto r = curl(s, "/tokenize", R"({"model":"tiny","prompt":"the river of light"})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json t = json::parse(r.body);
  EXPECT_EQ(t["max_model_len"], 2048);
  EXPECT_EQ(t["count"], t["tokens"].size());
  r = curl(s, "/detokenize", json{{"tokens", t["tokens"]}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string text = json::parse(r.body)["prompt"];
  EXPECT_TRUE(text.size() >= 18 && text.substr(text.size() - 18) == "the river of light") << text;
  r = curl(s, "/tokenize", R"({"messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json chat = json::parse(r.body);
  // the chat form counts what a chat completion's usage reports as its prompt
  r = curl(s, "/v1/chat/completions",
           R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":1})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["prompt_tokens"], chat["count"]);
  r = curl(s, "/detokenize", R"({"tokens":[99999999]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "tokens[0]");
  EXPECT_EQ(s.stop(), 0) << s.log();
}

// The demo model's weights are random: only the grammar makes its reply a call.
TEST(serve_api, a_required_or_named_tool_call_on_the_live_server) {
  REQUIRE_FIXTURE();
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  const json city = {{"type", "string"}, {"maxLength", 12}};
  const json tools = json::array(
      {{{"type", "function"},
        {"function",
         {{"name", "get_weather"},
          {"parameters",
           {{"type", "object"},
            {"properties", {{"city", city}}},
            {"required", {"city"}},
            {"additionalProperties", false}}}}}},
       {{"type", "function"}, {"function", {{"name", "get_time"}}}}});
  json body = {{"messages", json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}})},
               {"tools", tools},
               {"tool_choice", "required"},
               {"max_tokens", 96},
               {"seed", 7}};
  auto r = curl(s, "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json choice = json::parse(r.body)["choices"][0];
  ASSERT_EQ(choice["finish_reason"], "tool_calls") << r.body;
  json call = choice["message"]["tool_calls"][0]["function"];
  EXPECT_TRUE(call["name"] == "get_weather" || call["name"] == "get_time") << r.body;
  const json args = json::parse(call["arguments"].get<std::string>(), nullptr, false);
  ASSERT_TRUE(args.is_object()) << r.body;
  if (call["name"] == "get_weather") {
    ASSERT_TRUE(args.contains("city") && args["city"].is_string()) << r.body;
    EXPECT_LE(args.size(), 1u) << r.body;
  } else {
    EXPECT_TRUE(args.empty()) << r.body;
  }
  // the chat form of /tokenize counts the prompt with the tools shown
  const auto t = curl(s, "/tokenize", body.dump());
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(json::parse(t.body)["count"], json::parse(r.body)["usage"]["prompt_tokens"]);
  // named, streamed: the call comes whole, in OpenAI's two deltas
  body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  body["stream"] = true;
  r = curl(s, "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string name;
  std::string arguments;
  std::string finish;
  for (size_t at = 0; (at = r.body.find("data: {", at)) != std::string::npos; ++at) {
    const json e = json::parse(r.body.substr(at + 6, r.body.find('\n', at) - at - 6));
    if (e["choices"].empty()) {
      continue;
    }
    const json& c = e["choices"][0];
    if (c["delta"].contains("tool_calls")) {
      const json& f = c["delta"]["tool_calls"][0]["function"];
      name += f.value("name", "");
      arguments += f.value("arguments", "");
    }
    EXPECT_FALSE(c["delta"].contains("content") && c["delta"]["content"] != "") << r.body;
    if (c["finish_reason"].is_string()) {
      finish = c["finish_reason"];
    }
  }
  EXPECT_EQ(name, "get_weather") << r.body;
  EXPECT_EQ(finish, "tool_calls") << r.body;
  const json streamed = json::parse(arguments, nullptr, false);
  ASSERT_TRUE(streamed.is_object() && streamed.contains("city")) << r.body;
  EXPECT_EQ(s.stop(), 0) << s.log();
}

// n choices on the demo model: seeded sampling repeats every choice, choice i is what a
// request of one choice seeded seed + i gives, and greedy choices are all the same.
TEST(serve_api, n_choices_on_the_live_server) {
  REQUIRE_FIXTURE();
  server_process s("--max-num-seqs 8");
  ASSERT_GT(s.port(), 0) << s.log();
  const json body = {{"prompt", "Once upon a time"}, {"n", 3},         {"max_tokens", 12},
                     {"temperature", 1},            {"seed", 7},      {"ignore_eos", true}};
  const auto texts_of = [](const json& reply) {
    std::vector<std::string> out;
    for (size_t i = 0; i < reply["choices"].size(); ++i) {
      EXPECT_EQ(reply["choices"][i]["index"], i) << reply.dump();
      EXPECT_EQ(reply["choices"][i]["finish_reason"], "length") << reply.dump();
      out.push_back(reply["choices"][i]["text"]);
    }
    return out;
  };
  auto r = curl(s, "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body << "\n" << s.log();
  const json first = json::parse(r.body);
  const auto texts = texts_of(first);
  ASSERT_EQ(texts.size(), 3u) << r.body;
  EXPECT_TRUE(texts[0] != texts[1] || texts[1] != texts[2]) << "seeds 7, 8, 9 all alike: " << r.body;
  EXPECT_EQ(first["usage"]["completion_tokens"], 36) << r.body;
  // the same request again: the same three texts
  r = curl(s, "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(texts_of(json::parse(r.body)), texts);
  // choice i is what one choice seeded 7 + i gives; the prompt is counted once
  for (int i = 0; i < 3; ++i) {
    json one = body;
    one["n"] = 1;
    one["seed"] = 7 + i;
    r = curl(s, "/v1/completions", one.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json single = json::parse(r.body);
    EXPECT_EQ(single["choices"][0]["text"], texts[static_cast<size_t>(i)]) << "choice " << i;
    EXPECT_EQ(single["usage"]["prompt_tokens"], first["usage"]["prompt_tokens"]);
  }
  // streamed: the same texts, each under its index, and one [DONE]
  json streamed = body;
  streamed["stream"] = true;
  r = curl(s, "/v1/completions", streamed.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<std::string> pieces(3);
  for (size_t at = 0; (at = r.body.find("data: {", at)) != std::string::npos; ++at) {
    const json e = json::parse(r.body.substr(at + 6, r.body.find('\n', at) - at - 6));
    for (const json& c : e["choices"]) {
      pieces.at(c["index"].get<size_t>()) += c["text"].get<std::string>();
    }
  }
  EXPECT_EQ(pieces, texts) << r.body;
  EXPECT_EQ(r.body.find("data: [DONE]"), r.body.rfind("data: [DONE]")) << r.body;
  // greedy: every choice the same (a chat, each choice a message)
  const json greedy = {{"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})},
                       {"n", 3}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}};
  r = curl(s, "/v1/chat/completions", greedy.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json chat = json::parse(r.body);
  ASSERT_EQ(chat["choices"].size(), 3u) << r.body;
  for (const json& c : chat["choices"]) {
    EXPECT_EQ(c["message"]["role"], "assistant");
    EXPECT_EQ(c["message"]["content"], chat["choices"][0]["message"]["content"]) << r.body;
  }
  EXPECT_EQ(chat["usage"]["completion_tokens"], 36) << r.body;
  // more choices than the server runs at once: a 400 naming both numbers
  json wide = body;
  wide["n"] = 9;
  r = curl(s, "/v1/completions", wide.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  const std::string says = json::parse(r.body)["error"]["message"];
  EXPECT_NE(says.find("9"), std::string::npos) << says;
  EXPECT_NE(says.find("8"), std::string::npos) << says;
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "n") << r.body;
  EXPECT_EQ(s.stop(), 0) << s.log();
}

}  // namespace
}  // namespace baton
