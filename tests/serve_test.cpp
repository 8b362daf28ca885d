// `baton serve` end to end over HTTP: curl for every error code (400 naming the
// parameter, 400 context overflow with the numbers, 401 doing no work, 404 unknown model,
// 413 body limit, 429 with Retry-After), SSE in OpenAI's exact shape, a disconnect that
// returns its KV blocks, the prefix cache on a second chat turn, tokens equal to
// `baton run`'s for the same seed, the official OpenAI JavaScript client (npm `openai`)
// single-process and under mpirun -np 2, and 128 concurrent streaming clients (each one
// completes or gets 429; no 5xx; RSS within 5 % afterwards). On a demo model made here.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/serve_util.hpp"

namespace baton {
namespace {

using namespace mpi_test;
using nlohmann::json;
namespace fs = std::filesystem;

#define REQUIRE_FIXTURE() ASSERT_TRUE(fx().error.empty()) << fx().error

/// Text as it reads in a JSON response: invalid UTF-8 (random weights produce it)
/// replaced with U+FFFD, as the server writes it.
std::string as_json_text(const std::string& raw) {
  return json::parse(json(raw).dump(-1, ' ', false, json::error_handler_t::replace))
      .get<std::string>();
}

TEST(serve, endpoints_and_every_error_code) {
  REQUIRE_FIXTURE();
  server_process s("--served-model-name tiny --max-body-bytes 100000");
  ASSERT_GT(s.port(), 0) << s.log();
  auto h = curl(s, "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(json::parse(h.body), json({{"status", "ok"}}));
  auto m = curl(s, "/v1/models");
  EXPECT_EQ(json::parse(m.body)["data"][0]["id"], "tiny");

  auto bad_type = curl(s, "/v1/completions", R"({"prompt":"x","temperature":"hot"})");
  EXPECT_EQ(bad_type.status, 400);
  EXPECT_EQ(json::parse(bad_type.body)["error"]["param"], "temperature");
  auto bad_range = curl(s, "/v1/completions", R"({"prompt":"x","top_p":7})");
  EXPECT_EQ(bad_range.status, 400);
  EXPECT_EQ(json::parse(bad_range.body)["error"]["param"], "top_p");
  auto bad_json = curl(s, "/v1/chat/completions", R"({"messages": [)");
  EXPECT_EQ(bad_json.status, 400);
  auto unknown_ok = curl(s, "/v1/completions",
                         R"({"prompt":"x","max_tokens":2,"some_future_field":{"a":1}})");
  EXPECT_EQ(unknown_ok.status, 200) << unknown_ok.body;
  auto overflow = curl(s, "/v1/completions", R"({"prompt":"hello there","max_tokens":100000})");
  EXPECT_EQ(overflow.status, 400);
  const std::string msg = json::parse(overflow.body)["error"]["message"];
  EXPECT_NE(msg.find("100000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2048"), std::string::npos) << msg;
  auto model = curl(s, "/v1/chat/completions",
                    R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(model.status, 404);
  EXPECT_EQ(json::parse(model.body)["error"]["code"], "model_not_found");
  auto big = curl(s, "/v1/completions",
                  R"({"prompt":")" + std::string(200000, 'a') + R"("})");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(json::parse(big.body)["error"]["code"], "request_too_large");
  EXPECT_EQ(s.stop(), 0) << s.log();
}

TEST(serve, logprobs_and_top_logprobs) {
  REQUIRE_FIXTURE();
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  auto r = curl(s, "/v1/chat/completions",
                R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,)"
                R"("logprobs":true,"top_logprobs":3})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json content = json::parse(r.body)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  for (const auto& c : content) {
    ASSERT_EQ(c["top_logprobs"].size(), 3u);
    const double a = c["top_logprobs"][0]["logprob"];
    const double b = c["top_logprobs"][1]["logprob"];
    const double d = c["top_logprobs"][2]["logprob"];
    EXPECT_GE(a, b);
    EXPECT_GE(b, d);
    EXPECT_LE(a, 0.0);
    // greedy: the chosen token is the most likely one
    EXPECT_EQ(c["token"], c["top_logprobs"][0]["token"]);
    EXPECT_EQ(c["logprob"], c["top_logprobs"][0]["logprob"]);
  }
  auto cmp = curl(s, "/v1/completions", R"({"prompt":"Hi","max_tokens":2,"logprobs":2})");
  ASSERT_EQ(cmp.status, 200) << cmp.body;
  const json lp = json::parse(cmp.body)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  auto bad = curl(s, "/v1/chat/completions",
                  R"({"messages":[{"role":"user","content":"Hi"}],"top_logprobs":3})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body)["error"]["param"], "top_logprobs");
}

TEST(serve, an_api_key_is_checked_before_any_work) {
  REQUIRE_FIXTURE();
  server_process s("--api-key sk-one --api-key sk-two");
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string body = R"({"prompt":"hello","max_tokens":4})";
  auto none = curl(s, "/v1/completions", body);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body)["error"]["code"], "invalid_api_key");
  auto wrong = curl(s, "/v1/completions", body, "-H 'Authorization: Bearer sk-three'");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(metric(s, "baton:requests_total"), 0);
  EXPECT_EQ(metric(s, "baton:prompt_tokens_total"), 0);  // no work was done
  auto right = curl(s, "/v1/completions", body, "-H 'Authorization: Bearer sk-two'");
  EXPECT_EQ(right.status, 200) << right.body;
  EXPECT_EQ(metric(s, "baton:requests_total"), 1);
}

TEST(serve, a_topology_applied_live_changes_no_token_and_refusals_are_named) {
  REQUIRE_FIXTURE();
  server_process s("--stages 2 --kv-cache-memory 32MiB --admin-key sk-admin");
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string three = (dir() / "three.toml").string();
  std::ofstream(three) << "[[stage]]\nlayers = \"0\"\n[[stage]]\nlayers = \"1-2\"\n"
                          "[[stage]]\nlayers = \"3\"\n";
  const std::string gap = (dir() / "gap.toml").string();
  std::ofstream(gap) << "[[stage]]\nlayers = \"0\"\n[[stage]]\nlayers = \"2-3\"\n";
  const std::string reshard = std::string(BATON_BINARY) + " reshard --url " + s.url();
  // seeded requests, before and while the pipeline changes shape: the same text
  auto ask = [&](int i) {
    const std::string body = R"({"prompt":"the river )" + std::to_string(i) +
                             R"(","max_tokens":24,"temperature":0.9,"seed":)" +
                             std::to_string(i) + "}";
    auto r = curl(s, "/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false).value("choices", json::array())[0].value(
        "text", std::string());
  };
  std::vector<std::string> before;
  for (int i = 0; i < 4; ++i) {
    before.push_back(ask(i));
  }
  std::vector<std::string> during(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] { during[static_cast<size_t>(i)] = ask(i); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto no_key = test::run_shell(reshard + " --topology " + three);
  EXPECT_EQ(no_key.status, 2) << no_key.out << no_key.err;
  EXPECT_NE(no_key.err.find("HTTP 401"), std::string::npos) << no_key.err;
  auto ok = test::run_shell(reshard + " --admin-key sk-admin --topology " + three);
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("epoch 1"), std::string::npos) << ok.out;
  for (auto& c : clients) {
    c.join();
  }
  EXPECT_EQ(during, before);
  auto bad = test::run_shell(reshard + " --admin-key sk-admin --topology " + gap);
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find(":4: layer 1 is on no stage"), std::string::npos) << bad.err;
  EXPECT_EQ(ask(0), before[0]);  // still serving, on the three stages
  EXPECT_NE(s.log().find("baton: reshard: epoch 1, 3 stages"), std::string::npos) << s.log();
  for (const char* phase : {"prepare", "drain", "KV", "switch"}) {  // a line each
    EXPECT_NE(s.log().find(std::string("baton: reshard to epoch 1: ") + phase + " "),
              std::string::npos)
        << phase << " in " << s.log();
  }
  EXPECT_EQ(metric(s, "baton:pipeline_epoch"), 1);
  EXPECT_EQ(metric(s, "baton:reshards_total{result=\"ok\"}"), 1);
  EXPECT_EQ(metric(s, "baton:reshards_total{result=\"refused\"}"), 1);  // the gap (a 401 is no reshard)
  // what going back to two stages would move, at the server's occupancy (nothing runs)
  const std::string two = (dir() / "two.toml").string();
  std::ofstream(two) << "[[stage]]\nlayers = \"0-1\"\n[[stage]]\nlayers = \"2-3\"\n";
  const std::string plan = std::string(BATON_BINARY) + " plan -m " + fx().model + " -T " + two +
                           " --against " + three;
  auto at_server = test::run_shell(plan + " --url " + s.url());
  EXPECT_EQ(at_server.status, 0) << at_server.err;
  EXPECT_NE(at_server.out.find("(KV at the server's occupancy: 0 tokens)"), std::string::npos)
      << at_server.out;
  auto no_server = test::run_shell(plan + " --url http://127.0.0.1:1");
  EXPECT_EQ(no_server.status, 2) << no_server.err;
  EXPECT_NE(no_server.err.find("--url http://127.0.0.1:1"), std::string::npos) << no_server.err;
}

TEST(serve, sighup_rereads_the_topology_file_and_a_bad_edit_changes_nothing) {
  REQUIRE_FIXTURE();
  const std::string file = (dir() / "live.toml").string();
  std::ofstream(file) << "[[stage]]\nlayers = \"0-1\"\n[[stage]]\nlayers = \"2-3\"\n";
  server_process s("--topology " + file + " --kv-cache-memory 32MiB");
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string body = R"({"prompt":"the river","max_tokens":12,"temperature":0.9,"seed":3})";
  const auto before = curl(s, "/v1/completions", body);
  ASSERT_EQ(before.status, 200) << before.body;
  auto log_has = [&](const std::string& line) {  // within 60 s: CI runs tests side by side
    for (int i = 0; i < 600; ++i) {
      if (s.log().find(line) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  std::ofstream(file) << "[[stage]]\nlayers = \"0\"\n[[stage]]\nlayers = \"1-2\"\n"
                         "[[stage]]\nlayers = \"3\"\n";
  kill(s.pid(), SIGHUP);
  EXPECT_TRUE(log_has("baton: reshard: epoch 1, 3 stages")) << s.log();
  std::ofstream(file) << "[[stage]]\nlayers = \"0\"\n";  // a bad edit
  kill(s.pid(), SIGHUP);
  EXPECT_TRUE(log_has("reshard refused: " + file + ":2: layers 1-3 are on no stage")) << s.log();
  const auto after = curl(s, "/v1/completions", body);
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json::parse(after.body)["choices"][0]["text"],
            json::parse(before.body)["choices"][0]["text"]);
}

TEST(serve, queue_full_is_429_with_retry_after) {
  REQUIRE_FIXTURE();
  server_process s("--max-num-seqs 1 --max-queue 0");
  ASSERT_GT(s.port(), 0) << s.log();
  // one long request holds the only slot
  std::thread first([&] {
    curl(s, "/v1/completions", R"({"prompt":"a","max_tokens":400,"ignore_eos":true})");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto second = curl(s, "/v1/completions", R"({"prompt":"b","max_tokens":4})");
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_NE(second.headers.find("Retry-After:"), std::string::npos) << second.headers;
  first.join();
}

TEST(serve, streams_as_openai_does_and_a_disconnect_frees_the_blocks) {
  REQUIRE_FIXTURE();
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  auto r = curl(s, "/v1/chat/completions",
                R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"stream":true,)"
                R"("stream_options":{"include_usage":true},"seed":1})");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("text/event-stream"), std::string::npos);
  std::vector<json> chunks;
  std::istringstream in(r.body);
  bool done = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0) {
      continue;
    }
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    chunks.push_back(json::parse(line.substr(6)));
  }
  EXPECT_TRUE(done);
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks.front()["object"], "chat.completion.chunk");
  const json& fin = chunks[chunks.size() - 2];
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 5);

  const double free_before = metric(s, "baton:kv_cache_blocks_free");
  shell("timeout 1 curl -s -N " + s.url() +
        "/v1/completions -d '{\"prompt\":\"a\",\"max_tokens\":1800,\"stream\":true,"
        "\"ignore_eos\":true}'");
  double free_after = -1;
  for (int i = 0; i < 50 && free_after != free_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    free_after = metric(s, "baton:kv_cache_blocks_free");
  }
  EXPECT_EQ(free_after, free_before);
  EXPECT_EQ(metric(s, "baton:num_requests_running"), 0);
}

TEST(serve, tokens_equal_baton_run_and_the_second_chat_turn_is_cached) {
  REQUIRE_FIXTURE();
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = curl(s, "/v1/completions",
                R"({"prompt":"The quiet river","max_tokens":24,"temperature":0.8,"top_k":40,)"
                R"("top_p":0.95,"min_p":0.05,"seed":77})");
  ASSERT_EQ(c.status, 200) << c.body;
  auto run = shell(std::string(BATON_BINARY) + " run -q --no-stats -m " + fx().model +
                   " -p 'The quiet river' -n 24 --temp 0.8 --top-k 40 --top-p 0.95 "
                   "--min-p 0.05 --seed 77");
  ASSERT_EQ(run.status, 0) << run.err;
  std::string text = run.out;
  if (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  EXPECT_EQ(json::parse(c.body)["choices"][0]["text"], as_json_text(text));

  // a first message of more than two blocks: its full blocks come back from the cache
  const std::string question =
      "Tell me about rivers, the long ones and the short ones, where they begin in the "
      "hills, how they cut their valleys, and where they finally meet the sea";
  const std::string turn1 = json({{"messages", {{{"role", "user"}, {"content", question}}}},
                                  {"max_tokens", 20},
                                  {"temperature", 0}})
                                .dump();
  auto a = json::parse(curl(s, "/v1/chat/completions", turn1).body);
  const std::string reply = a["choices"][0]["message"]["content"];
  json turn2 = {{"messages",
                 {{{"role", "user"}, {"content", question}},
                  {{"role", "assistant"}, {"content", reply}},
                  {{"role", "user"}, {"content", "And lakes?"}}}},
                {"max_tokens", 4}};
  auto b = json::parse(curl(s, "/v1/chat/completions", turn2.dump()).body);
  const int cached = b["usage"]["prompt_tokens_details"]["cached_tokens"];
  const int prompt1 = a["usage"]["prompt_tokens"];
  std::printf("turn 1: %d prompt tokens; turn 2: %d prompt tokens, %d cached\n", prompt1,
              b["usage"]["prompt_tokens"].get<int>(), cached);
  EXPECT_GE(cached, prompt1 / 16 * 16);  // at least the first turn's full prompt blocks
  EXPECT_GT(cached, 0);
  EXPECT_GT(metric(s, "baton:prefix_cache_hit_tokens_total"), 0);
}

/// Runs the OpenAI JS client against `s`: a chat completion and a streamed one.
void check_openai_client(const server_process& s, const std::string& expected_text) {
  auto modules = openai_js();
  ASSERT_TRUE(modules.has_value());
  const auto script = dir() / "client.mjs";
  std::ofstream(script) << "import OpenAI from '" << (*modules / "openai/index.mjs").string()
                        << "';\n"
                           "const c = new OpenAI({baseURL: process.argv[2] + '/v1', apiKey: 'x'});\n"
                           "const msgs = [{role: 'user', content: 'Name a colour.'}];\n"
                           "const r = await c.chat.completions.create({model: 'demo', messages: "
                           "msgs, max_tokens: 12, temperature: 0.7, seed: 5});\n"
                           "const s = await c.chat.completions.create({model: 'demo', messages: "
                           "msgs, max_tokens: 12, temperature: 0.7, seed: 5, stream: true});\n"
                           "let text = '';\n"
                           "for await (const ch of s) text += ch.choices[0]?.delta?.content ?? '';\n"
                           "console.log(JSON.stringify({plain: r.choices[0].message.content, "
                           "streamed: text, usage: r.usage}));\n";
  auto r = shell("node " + script.string() + " " + s.url());
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = json::parse(r.out);
  EXPECT_EQ(j["plain"], j["streamed"]);
  EXPECT_EQ(j["plain"], expected_text);
  EXPECT_EQ(j["usage"]["completion_tokens"].get<int>() > 0, true);
}

std::string run_chat_reference() {
  auto run = shell(std::string(BATON_BINARY) + " run -q --no-stats --chat -m " + fx().model +
                   " -p 'Name a colour.' -n 12 --temp 0.7 --top-k 0 --top-p 1 --min-p 0 "
                   "--seed 5");
  EXPECT_EQ(run.status, 0) << run.err;
  std::string text = run.out;
  if (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return as_json_text(text);
}

TEST(serve, the_openai_js_client_works_unchanged) {
  REQUIRE_FIXTURE();
  if (!openai_js()) {
    if (test::in_ci()) {
      FAIL() << "the npm package openai is missing (scripts/setup.sh installs it)";
    }
    GTEST_SKIP() << "the npm package openai or node is missing (scripts/setup.sh installs them)";
  }
  const std::string expected = run_chat_reference();
  server_process s("--served-model-name demo");
  ASSERT_GT(s.port(), 0) << s.log();
  check_openai_client(s, expected);
}

TEST(serve, the_openai_js_client_works_under_mpirun) {
  REQUIRE_FIXTURE();
  if (!openai_js() || !have_mpirun()) {
    GTEST_SKIP() << "needs node with the npm package openai, and mpirun";
  }
  const std::string expected = run_chat_reference();
  server_process s("--served-model-name demo",
                   "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ");
  ASSERT_GT(s.port(), 0) << s.log();
  EXPECT_NE(s.log().find("2 rank(s)"), std::string::npos) << s.log();
  check_openai_client(s, expected);
}

TEST(serve, many_streaming_clients_complete_or_get_429) {
  REQUIRE_FIXTURE();
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is missing (scripts/setup.sh installs it)";
  }
  server_process s("--max-num-seqs 32 --max-queue 48");
  ASSERT_GT(s.port(), 0) << s.log();
  const auto script = dir() / "load.mjs";
  std::ofstream(script)
      << "const url = process.argv[2];\n"
         "async function one(i) {\n"
         "  const r = await fetch(url + '/v1/completions', {method: 'POST', headers: "
         "{'Content-Type': 'application/json'}, body: JSON.stringify({prompt: 'story ' + i, "
         "max_tokens: 16, stream: true, ignore_eos: true})});\n"
         "  if (r.status !== 200) { await r.text(); return r.status; }\n"
         "  const t = await r.text();\n"
         "  return t.includes('data: [DONE]') && t.includes('\"finish_reason\":\"length\"') ? 200 "
         ": 'incomplete';\n"
         "}\n"
         "async function round() { return Promise.all([...Array(128).keys()].map(one)); }\n"
         "await round();\n"  // warm-up: buffers reach their working size
         "const rss0 = Number(process.argv[3]);\n"
         "console.log(JSON.stringify(await round()));\n";
  auto rss = [&] {
    std::ifstream st("/proc/" + std::to_string(s.pid()) + "/status");
    for (std::string line; std::getline(st, line);) {
      if (line.rfind("VmRSS:", 0) == 0) {
        return std::stod(line.substr(6));
      }
    }
    return 0.0;
  };
  // warm-up round, then RSS, then the measured round
  auto w = shell("node " + script.string() + " " + s.url() + " 0");
  ASSERT_EQ(w.status, 0) << w.err;
  const double before = rss();
  auto r = shell("node " + script.string() + " " + s.url() + " 0");
  ASSERT_EQ(r.status, 0) << r.err;
  const double after = rss();
  int ok = 0;
  int busy = 0;
  for (const auto& v : json::parse(r.out.substr(r.out.find_last_of('[')))) {
    if (v == 200) {
      ++ok;
    } else if (v == 429) {
      ++busy;
    } else {
      ADD_FAILURE() << "a request ended with " << v.dump();
    }
  }
  std::printf("128 clients: %d completed, %d got 429; RSS %.0f kB -> %.0f kB\n", ok, busy, before,
              after);
  EXPECT_EQ(ok + busy, 128);
  EXPECT_GT(ok, 0);
  EXPECT_LE(after, before * 1.05);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(serve, a_dead_stage_of_two_ranks_moves_onto_the_head_and_serving_goes_on) {
  REQUIRE_FIXTURE();
  if (!have_mpirun()) {
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
  }
  // (tests/recovery_test.cpp: streams through a loss, and layers that fit nowhere -> 503)
  server_process s("--stages 2", "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                                 "mpirun --enable-recovery -np 2 ");
  ASSERT_GT(s.port(), 0) << s.log();
  EXPECT_EQ(curl(s, "/health").status, 200);
  auto k = shell("for p in $(pgrep -f '^" + std::string(BATON_BINARY) + " serve.*" +
                 fx().model + "'); do tr '\\0' '\\n' </proc/$p/environ | grep -qx "
                 "OMPI_COMM_WORLD_RANK=1 && kill -9 $p && echo $p; done");
  ASSERT_FALSE(k.out.empty()) << "no rank 1 found";
  for (int i = 0; i < 100 && metric(s, "baton:recoveries_total{result=\"ok\"}") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // noticed within a second
  }
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"ok\"}"), 1) << s.log();
  EXPECT_NE(s.log().find("stage 1 (rank 1) is down"), std::string::npos) << s.log();
  EXPECT_NE(s.log().find("layers [2, 4) to rank 0"), std::string::npos) << s.log();
  auto r = curl(s, "/v1/completions", R"({"prompt":"hello","max_tokens":4})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(curl(s, "/health").status, 200);
  EXPECT_EQ(curl(s, "/v1/models").status, 200);
  EXPECT_EQ(metric(s, "baton:stage_down"), 0);
  EXPECT_EQ(metric(s, "baton:stage_failures_total"), 1);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(serve, sigterm_ends_running_requests_with_a_final_event_and_exits_0) {
  REQUIRE_FIXTURE();
  server_process s("");
  ASSERT_GT(s.port(), 0) << s.log();
  http_result r;
  std::thread client([&] {
    r = curl(s, "/v1/completions",
             R"({"prompt":"a","max_tokens":1900,"stream":true,"ignore_eos":true})");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  EXPECT_EQ(s.stop(), 0) << s.log();
  client.join();
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("the server is shutting down"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("data: [DONE]"), std::string::npos);
}

}  // namespace
}  // namespace baton
