// Live reshards of a job of several ranks (mpirun -np 3 and 4, one rank on standby) over
// HTTP: 32 seeded requests generate while the pipeline changes shape under them, and each
// one's tokens and log-probabilities equal those of the same requests without a reshard.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <thread>

#include "tests/stream_util.hpp"

namespace baton {
namespace {

using json = nlohmann::json;

/// Request i: seeded sampling, its log-probabilities, no early stop. What it answered.
std::string ask(const server_process& s, int i) {
  // over 16 tokens: every sequence holds two KV blocks or more
  const std::string body = R"({"prompt":"the river )" + std::to_string(i) +
                           R"( runs under a quiet city where nobody sleeps and every door )"
                           R"(opens onto the sea","max_tokens":48,"temperature":0.9,"seed":)" +
                           std::to_string(100 + i) + R"(,"logprobs":1,"ignore_eos":true})";
  auto r = curl(s, "/v1/completions", body);
  if (r.status != 200) {
    return "HTTP " + std::to_string(r.status) + ": " + r.body;
  }
  const auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("choices")) {
    return "unreadable: " + r.body;
  }
  const auto& c = j["choices"][0];
  return c.value("text", std::string()) + " | " + c.value("logprobs", json()).dump();
}

/// All `n` requests at once; their answers.
std::vector<std::string> ask_all(const server_process& s, int n) {
  std::vector<std::string> out(static_cast<size_t>(n));
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back([&, i] { out[static_cast<size_t>(i)] = ask(s, i); });
  }
  for (auto& c : clients) {
    c.join();
  }
  return out;
}

std::string reshard_cmd(const server_process& s, const std::string& file,
                        const std::string& extra = "") {
  return std::string(BATON_BINARY) + " reshard --url " + s.url() + " --topology " + file + " " +
         extra;
}

/// Applies `files` one after the other while `n` requests run; the requests' answers.
std::vector<std::string> ask_while_resharding(const server_process& s, int n,
                                              const std::vector<std::string>& files,
                                              const std::string& extra = "") {
  std::vector<std::string> out;
  std::thread clients([&] { out = ask_all(s, n); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (const auto& f : files) {
    const double running = metric(s, "baton:num_requests_running");
    auto r = test::run_shell(reshard_cmd(s, f, extra));
    EXPECT_EQ(r.status, 0) << f << ": " << r.err << "\n" << s.log();
    std::printf("%s with %.0f requests running: %s", fs::path(f).filename().c_str(), running,
                r.out.c_str());
    if (&f == &files.front()) {
      EXPECT_GT(running, 0) << "the reshard came after the requests";
    }
  }
  clients.join();
  return out;
}

/// SIGTERM ends the job within 20 s, no stage went down on the way, every rank left in
/// order (mpirun itself exits 1 after forwarding a signal, with or without a reshard).
void expect_a_clean_stop(server_process& s) {
  EXPECT_NE(s.stop(), -1) << s.log();
  const std::string log = s.log();
  for (const char* bad : {"is down", "died", "did not finish within", "did not confirm"}) {
    EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in:\n" << log;
  }
}

TEST(reshard, three_ranks_move_merge_split_and_shrink_stages_onto_a_standby_rank_mid_generation) {
  REQUIRE_MPI_FIXTURE();
  const auto start = topology_file("start.toml", {"0:0-1", "1:2-3"});
  // 512-token context: an eighth of the KV pool (32 blocks) still holds one whole sequence
  server_process s("--topology " + start + " --ctx-size 512", "env " + mpirun(3));
  ASSERT_GT(s.port(), 0) << s.log();
  const auto reference = ask_all(s, 32);
  for (const auto& r : reference) {
    ASSERT_EQ(r.rfind("HTTP", 0), std::string::npos) << r << "\n" << s.log();
  }
  const std::vector<std::string> steps = {
      topology_file("boundary.toml", {"0:0", "1:1-3"}),                 // a boundary moves
      topology_file("standby.toml", {"0:0", "2:1-3"}),                  // a stage to rank 2
      topology_file("merged.toml", {"2:0-3"}),                          // all on one rank
      topology_file("split.toml", {"1:0-1", "2:2-3"}),                  // split again
      topology_file("shrunk.toml", {"1:0-1", "2:2-3"}, "", 256),        // an eighth of the KV
      topology_file("micro.toml", {"0:0-1", "1:2", "2:3"}, "[pipeline]\nmicro_batches = 3\n"),
  };
  const auto during = ask_while_resharding(s, 32, steps);
  for (size_t i = 0; i < during.size(); ++i) {
    EXPECT_EQ(during[i], reference[i]) << "request " << i;
  }
  EXPECT_EQ(metric(s, "baton:pipeline_epoch"), 6);
  EXPECT_EQ(metric(s, "baton:reshards_total{result=\"ok\"}"), 6);
  EXPECT_GT(metric(s, "baton:num_preemptions_total"), 0) << s.log();  // the small pool's doing
  EXPECT_EQ(curl(s, "/health").status, 200);
  expect_a_clean_stop(s);
}

TEST(reshard, four_ranks_name_a_rank_that_fails_to_prepare_and_recompute_when_asked) {
  REQUIRE_MPI_FIXTURE();
  const auto start = topology_file("start4.toml", {"0:0-1", "1:2-3"});
  // rank 3 (a standby rank) fails whatever it is asked to prepare
  server_process s("--topology " + start, "env " + mpirun(4) + "-x BATON_TEST_RESHARD_FAIL_RANK=3 ");
  ASSERT_GT(s.port(), 0) << s.log();
  const auto reference = ask_all(s, 8);
  const auto to_3 = topology_file("to3.toml", {"0:0-1", "3:2-3"});
  auto refused = test::run_shell(reshard_cmd(s, to_3));
  EXPECT_EQ(refused.status, 2) << refused.err;
  EXPECT_NE(refused.err.find("rank 3"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("BATON_TEST_RESHARD_FAIL_RANK"), std::string::npos) << refused.err;
  // a file that does not plan is refused with its line
  const auto gap = (dir() / "gap4.toml").string();
  std::ofstream(gap) << "[[stage]]\nrank = 2\nlayers = \"0\"\n[[stage]]\nrank = 1\n"
                        "layers = \"2-3\"\n";
  auto bad = test::run_shell(reshard_cmd(s, gap));
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find(":6: layer 1 is on no stage"), std::string::npos) << bad.err;
  // serving went on unchanged, and a reshard to the other standby rank still works
  const auto to_2 = topology_file("to2.toml", {"2:0-1", "1:2-3"});
  const auto during = ask_while_resharding(s, 8, {to_2});
  EXPECT_EQ(during, reference);
  EXPECT_EQ(metric(s, "baton:pipeline_epoch"), 1);
  EXPECT_EQ(metric(s, "baton:reshards_total{result=\"refused\"}"), 2);
  EXPECT_EQ(metric(s, "baton:recomputed_tokens_total"), 0);  // the KV moved
  // back, recomputing instead of moving the KV: the same tokens, computed twice
  const auto recomputed = ask_while_resharding(s, 8, {start}, "--reshard-kv recompute");
  EXPECT_EQ(recomputed, reference);
  EXPECT_GT(metric(s, "baton:recomputed_tokens_total"), 0);
  EXPECT_EQ(metric(s, "baton:pipeline_epoch"), 2);
  // a reshard_kv that is not one of the two is named
  auto odd = curl(s, "/admin/topology", R"({"topology":"","reshard_kv":5})");
  EXPECT_EQ(odd.status, 400) << odd.body;
  EXPECT_NE(odd.body.find("reshard_kv"), std::string::npos) << odd.body;
  expect_a_clean_stop(s);
}

}  // namespace
}  // namespace baton
