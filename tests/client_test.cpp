// `baton client` and `baton bench serve` end to end against tests/mock_openai.py, a
// stand-in OpenAI server (no model): texts streamed and not, chat and completions, the
// request bodies the commands send, the server's error messages with exit status 1,
// bad flags with 2, and the load generator's counts and percentiles.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tests/test_util.hpp"

namespace baton {
namespace {

using test::run_result;
using test::slurp;

/// Runs `[env] baton <args>` through the shell, optionally feeding `stdin_text`.
run_result baton(const std::string& args, const std::string& stdin_text = "",
                 const std::string& env = "") {
  return test::run_shell(env + " " + std::string(BATON_BINARY) + " " + args, stdin_text);
}

/// tests/mock_openai.py on a free port, for the life of the object.
class mock_server {
 public:
  explicit mock_server(std::vector<std::string> args) {
    log_ = test::temp_dir("client-mock") / ("requests-" + std::to_string(counter_++) + ".jsonl");
    std::filesystem::remove(log_);
    args.insert(args.begin(), {"python3", BATON_SOURCE_DIR "/tests/mock_openai.py", "--port",
                               "0", "--log", log_.string()});
    int fds[2];
    if (pipe(fds) != 0) {
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
    char line[64] = {};
    if (pid_ > 0 && std::fgets(line, sizeof line, out_)) {
      std::sscanf(line, "PORT %d", &port_);
    }
  }
  ~mock_server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (out_) {
      std::fclose(out_);
    }
  }

  /// 0 when it did not start (no python3).
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// The JSON bodies of the generation requests it received, in order.
  std::vector<nlohmann::json> requests() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(log_);
    for (std::string line; std::getline(in, line);) {
      out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

 private:
  // -- member variables -------------------------------------------------------
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int port_ = 0;
  std::filesystem::path log_;
};

#define REQUIRE_MOCK(m)                                                  \
  if ((m).port() == 0) {                                                 \
    GTEST_SKIP() << "tests/mock_openai.py did not start (needs python3)"; \
  }

/// A local port nothing listens on (bound, then closed).
int closed_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

TEST(client, completion_with_the_model_from_v1_models) {
  mock_server m({});
  REQUIRE_MOCK(m);
  auto r = baton("client --url " + m.url() + " -p 'Once upon' -n 3 --temperature 0.5 --seed 7");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "w0 w1 w2 \n");
  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["model"], "mock-model");
  EXPECT_EQ(reqs[0]["prompt"], "Once upon");
  EXPECT_EQ(reqs[0]["max_tokens"], 3);
  EXPECT_EQ(reqs[0]["temperature"], 0.5);
  EXPECT_EQ(reqs[0]["seed"], 7);
  EXPECT_FALSE(reqs[0].contains("stream"));
}

TEST(client, completion_streamed_under_a_v1_base_url) {
  mock_server m({});
  REQUIRE_MOCK(m);
  auto r = baton("client --url " + m.url() + "/v1/ --model mock-model -p hi -n 5 --stream");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "w0 w1 w2 w3 w4 \n");
  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["stream"], true);
  EXPECT_EQ(reqs[0]["stream_options"]["include_usage"], true);
}

TEST(client, chat_streamed_with_system_and_usage) {
  mock_server m({"--api-key", "sk-test"});
  REQUIRE_MOCK(m);
  auto r = baton("client --url " + m.url() +
                 " --api-key sk-test --chat --system 'Be brief.' -p 'Hello there' -n 4 "
                 "--stream --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto nl = r.out.find('\n');
  ASSERT_NE(nl, std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(0, nl), "w0 w1 w2 w3 ");
  const auto usage = nlohmann::json::parse(r.out.substr(nl + 1))["usage"];
  EXPECT_EQ(usage["completion_tokens"], 4);
  EXPECT_EQ(usage["prompt_tokens"], 4);  // the mock counts the words of all messages
  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& msgs = reqs[0]["messages"];
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0]["role"], "system");
  EXPECT_EQ(msgs[0]["content"], "Be brief.");
  EXPECT_EQ(msgs[1]["role"], "user");
  EXPECT_EQ(msgs[1]["content"], "Hello there");
}

TEST(client, chat_json_with_the_prompt_from_stdin_and_the_key_from_env) {
  mock_server m({"--api-key", "sk-env"});
  REQUIRE_MOCK(m);
  auto r = baton("client --url " + m.url() + " --chat -n 2 --json", "from stdin\n",
                 "BATON_API_KEY=sk-env");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "w0 w1 ");
  EXPECT_EQ(j["usage"]["completion_tokens"], 2);
  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0]["messages"][0]["content"], "from stdin\n");
}

TEST(client, errors_carry_the_servers_message_and_exit_1) {
  mock_server m({"--api-key", "sk-test"});
  REQUIRE_MOCK(m);
  auto r = baton("client --url " + m.url() + " -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("baton: Incorrect API key provided."), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(HTTP 401)"), std::string::npos) << r.err;

  r = baton("client --url " + m.url() + " --api-key sk-test --model nope -p hi --stream");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "baton: The model `nope` does not exist. (HTTP 404)\n");

  r = baton("client --url http://127.0.0.1:" + std::to_string(closed_port()) + " -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot connect to http://127.0.0.1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("refused"), std::string::npos) << r.err;
}

TEST(client, bad_flags_exit_2) {
  auto r = baton("client --url https://example.com -p hi");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("scheme 'https' is not supported"), std::string::npos) << r.err;
  r = baton("client --url http://127.0.0.1:99999 -p hi");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("port '99999'"), std::string::npos) << r.err;
  r = baton("client --system x -p hi");
  EXPECT_EQ(r.status, 2);
  r = baton("client -p hi -n 0");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--max-tokens must be >= 1"), std::string::npos) << r.err;
}

void expect_ordered(const nlohmann::json& s, const char* name) {
  SCOPED_TRACE(name);
  EXPECT_GT(s["mean"].get<double>(), 0.0);
  EXPECT_LE(s["p50"].get<double>(), s["p99"].get<double>());
}

TEST(bench_serve, completions_counts_and_percentiles) {
  mock_server m({"--token-delay-ms", "2"});
  REQUIRE_MOCK(m);
  auto r = baton("bench serve --url " + m.url() +
                 " -n 12 -c 4 --input-len 10 --output-len 6 --seed 3 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["completed"], 12);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["model"], "mock-model");
  EXPECT_EQ(j["total_output_tokens"], 12 * 6);
  EXPECT_EQ(j["total_input_tokens"], 12 * 10);  // the mock counts words
  const double d = j["duration_s"];
  EXPECT_NEAR(j["request_throughput"].get<double>(), 12 / d, 1e-6);
  EXPECT_NEAR(j["output_throughput"].get<double>(), 72 / d, 1e-6);
  EXPECT_NEAR(j["total_token_throughput"].get<double>(), 192 / d, 1e-6);
  for (const char* k : {"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"}) {
    expect_ordered(j[k], k);
  }
  // the mock sleeps 2 ms before each token
  EXPECT_GE(j["tpot_ms"]["mean"].get<double>(), 1.5);
  EXPECT_GE(j["ttft_ms"]["mean"].get<double>(), 1.5);
  EXPECT_LT(j["ttft_ms"]["p99"].get<double>(), j["e2el_ms"]["p99"].get<double>());

  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 12u);
  for (const auto& q : reqs) {
    EXPECT_EQ(q["max_tokens"], 6);
    EXPECT_EQ(q["ignore_eos"], true);
    EXPECT_EQ(q["stream"], true);
    EXPECT_EQ(q["stream_options"]["include_usage"], true);
  }
  EXPECT_NE(reqs[0]["prompt"], reqs[1]["prompt"]);
}

TEST(bench_serve, chat_at_a_request_rate_counts_429s_as_failures) {
  mock_server m({"--fail-fraction", "0.25", "--api-key", "k"});
  REQUIRE_MOCK(m);
  auto r = baton("bench serve --url " + m.url() +
                 " --api-key k --chat -n 8 -c 0 --request-rate 200 --output-len 3 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["completed"], 6);
  EXPECT_EQ(j["failed"], 2);
  EXPECT_EQ(j["failed_by_status"]["429"], 2);
  EXPECT_EQ(j["total_output_tokens"], 6 * 3);
  EXPECT_EQ(j["request_rate"], 200.0);
  expect_ordered(j["ttft_ms"], "ttft_ms");
  expect_ordered(j["tpot_ms"], "tpot_ms");
  ASSERT_EQ(j["errors"].size(), 1u);
  EXPECT_NE(j["errors"][0].get<std::string>().find("(HTTP 429)"), std::string::npos);
  for (const auto& q : m.requests()) {
    EXPECT_EQ(q["messages"][0]["role"], "user");
  }

  // the human table
  r = baton("bench serve --url " + m.url() + " --api-key k -n 4 --output-len 2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Successful requests:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("P99 TPOT (ms):"), std::string::npos) << r.out;
}

TEST(bench_serve, prompt_file_and_all_failed) {
  mock_server m({"--api-key", "k"});
  REQUIRE_MOCK(m);
  const auto file = test::temp_dir("client-prompts") / "prompts.txt";
  std::ofstream(file) << "first prompt\n\nsecond one here\n";
  auto r = baton("bench serve --url " + m.url() + " --api-key k -n 3 --output-len 2 --json "
                 "--prompt-file " + file.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto reqs = m.requests();
  ASSERT_EQ(reqs.size(), 3u);
  std::multiset<std::string> prompts;
  for (const auto& q : reqs) {
    prompts.insert(q["prompt"].get<std::string>());
  }
  EXPECT_EQ(prompts, (std::multiset<std::string>{"first prompt", "first prompt",
                                                 "second one here"}));

  r = baton("bench serve --url " + m.url() + " -n 3 --output-len 2 --json");  // no key
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("(HTTP 401)"), std::string::npos) << r.err;

  r = baton("bench serve --url " + m.url() + " --prompt-file /nonexistent/p.txt");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--prompt-file '/nonexistent/p.txt'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace baton
