// Surviving a lost rank (mpirun --enable-recovery, -np 3 and 4, over HTTP): 16 seeded
// streaming requests generate while a rank is killed (kill -9) or stopped (SIGSTOP past
// --stage-timeout); each completes with the tokens of the same request in an undisturbed
// run, no error event, nothing repeated or missing. A standby rank takes the lost stage
// first; without one, the survivors take its layers; a rank lost while a recovery is
// under way is planned around; a stopped rank that wakes up leaves; a lost standby is
// dropped; and when the survivors cannot hold the layers, every request ends with an
// error naming the stage and the budgets, and the server answers 503 without hanging.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <thread>

#include "tests/stream_util.hpp"

namespace baton {
namespace {

using json = nlohmann::json;

/// mpirun --enable-recovery with `np` ranks (and 300 s, not 120: a loaded CI runner).
std::string launcher(int np, const std::string& env = "") {
  std::string m = mpirun(np);
  if (const auto t = m.find("timeout 120"); t != std::string::npos) {
    m.replace(t, 11, "timeout 300");
  }
  return "env " + m + "--enable-recovery " + env;
}

/// The pid of `rank` of the job serving `s` (0 when none).
int rank_pid(int rank) {
  auto r = shell("for p in $(pgrep -f '^" + std::string(BATON_BINARY) + " serve.*" + fx().model +
                 "'); do tr '\\0' '\\n' </proc/$p/environ | grep -qx OMPI_COMM_WORLD_RANK=" +
                 std::to_string(rank) + " && echo $p; done");
  return r.out.empty() ? 0 : std::stoi(r.out);
}

/// Sends `sig` to `rank`'s process; its pid (0: none found, nothing sent).
int signal_rank(int rank, int sig) {
  const int pid = rank_pid(rank);
  EXPECT_GT(pid, 0) << "no process for rank " << rank;
  if (pid > 0) {
    kill(pid, sig);
  }
  return pid;
}

/// Waits up to 30 s for `text` in the server's log.
bool log_says(const server_process& s, const std::string& text) {
  for (int i = 0; i < 300; ++i) {
    if (s.log().find(text) != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

/// A seeded completion streamed through the official OpenAI JS client: its text, or
/// "ERROR ..." when the client threw.
std::string js_stream(const server_process& s, const fs::path& modules) {
  const auto script = dir() / "recovery-client.mjs";
  std::ofstream(script) << "import OpenAI from '" << (modules / "openai/index.mjs").string()
                        << "';\n"
                           "const c = new OpenAI({baseURL: process.argv[2] + '/v1', apiKey: 'x'});\n"
                           "const s = await c.completions.create({model: 'demo', prompt: 'the sea "
                           "keeps its own counsel', max_tokens: 160, temperature: 0.9, seed: 7, "
                           "stream: true, ignore_eos: true});\n"
                           "let text = '';\n"
                           "for await (const ch of s) text += ch.choices[0]?.text ?? '';\n"
                           "console.log(JSON.stringify({text}));\n";
  auto r = shell("node " + script.string() + " " + s.url());
  if (r.status != 0) {
    return "ERROR " + r.err;
  }
  const auto j = json::parse(r.out, nullptr, false);
  return j.is_discarded() ? "ERROR unreadable: " + r.out : j.value("text", std::string());
}

void expect_same(const std::vector<std::string>& got, const std::vector<std::string>& want,
                 const server_process& s) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << "request " << i << "\n" << s.log();
  }
}

TEST(recovery, killed_ranks_move_to_the_standby_or_the_survivors_and_no_stream_changes) {
  REQUIRE_MPI_FIXTURE();
  const auto t = topology_file("three.toml", {"0:0-1", "1:2", "2:3"});
  // rank 3 is the standby; its preparing takes 4 s, long enough to kill it meanwhile
  server_process s("--topology " + t + " --ctx-size 512",
                   launcher(4, "-x BATON_TEST_SLOW_PREPARE_RANK=3 "));
  ASSERT_GT(s.port(), 0) << s.log();
  const auto reference = stream_all(s, 16);
  for (const auto& r : reference) {
    ASSERT_EQ(r.rfind("ERROR", 0), std::string::npos) << r << "\n" << s.log();
    ASSERT_NE(r.find("finish=length"), std::string::npos) << r;
  }
  // rank 2 dies; the standby (rank 3) starts taking its stage and dies too: its layer
  // goes to a survivor instead
  const auto first = stream_all(s, 16, [&] {
    signal_rank(2, SIGKILL);
    EXPECT_TRUE(log_says(s, "standby rank 3 takes rank 2's stage")) << s.log();
    signal_rank(3, SIGKILL);
  });
  expect_same(first, reference, s);
  EXPECT_NE(s.log().find("recovery: detected: rank 2"), std::string::npos) << s.log();
  // (while rank 3 prepares, or while the survivors end their old stages under load)
  EXPECT_NE(s.log().find("another rank was lost meanwhile"), std::string::npos) << s.log();
  EXPECT_NE(s.log().find("layers [3, 4) to rank 1"), std::string::npos) << s.log();
  EXPECT_EQ(metric(s, "baton:stage_failures_total"), 1);  // rank 3 held no stage yet
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"ok\"}"), 1);
  // those that were running (the rest waited in the queue, untouched)
  EXPECT_GT(metric(s, "baton:requests_replayed_total"), 0);
  EXPECT_LE(metric(s, "baton:requests_replayed_total"), 16);
  EXPECT_GT(metric(s, "baton:recovery_seconds"), 0);
  // rank 1 dies: no standby left, its layers go to rank 0
  const auto second = stream_all(s, 16, [&] { signal_rank(1, SIGKILL); });
  expect_same(second, reference, s);
  EXPECT_NE(s.log().find("layers [2, 4) to rank 0"), std::string::npos) << s.log();
  EXPECT_EQ(metric(s, "baton:stage_failures_total"), 2);
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"ok\"}"), 2);
  EXPECT_EQ(metric(s, "baton:pipeline_epoch"), 2);
  for (const char* phase : {"recovery: planned in", "recovery: loaded in",
                            "recovery: switched to epoch", "recovery: replayed"}) {
    EXPECT_NE(s.log().find(phase), std::string::npos) << phase << "\n" << s.log();
  }
  EXPECT_EQ(curl(s, "/health").status, 200);
  EXPECT_EQ(curl(s, "/v1/models").status, 200);
}

TEST(recovery, a_stopped_rank_is_fenced_after_the_stage_timeout_replaced_and_leaves_on_waking) {
  REQUIRE_MPI_FIXTURE();
  const auto t = topology_file("three.toml", {"0:0-1", "1:2", "2:3"});
  server_process s("--topology " + t + " --ctx-size 512 --stage-timeout 3s "
                   "--served-model-name demo",
                   launcher(4));
  ASSERT_GT(s.port(), 0) << s.log();
  const auto modules = openai_js();
  if (!modules && test::in_ci()) {
    FAIL() << "the npm package openai is missing (scripts/setup.sh installs it)";
  }
  const std::string js_reference = modules ? js_stream(s, *modules) : "";
  const auto reference = stream_all(s, 8);
  int pid2 = 0;
  int keepalives = 0;
  // the official OpenAI JS client streams through the recovery too
  std::string js_during;
  std::thread js([&] {
    if (modules) {
      js_during = js_stream(s, *modules);
    }
  });
  const auto during = stream_all(
      s, 8,
      [&] {
        pid2 = signal_rank(2, SIGSTOP);
      },
      &keepalives);
  js.join();
  expect_same(during, reference, s);
  EXPECT_EQ(js_during, js_reference) << "the JS client's completion through the recovery";
  EXPECT_EQ(js_reference.rfind("ERROR", 0), std::string::npos) << js_reference;
  EXPECT_NE(s.log().find("rank 2 answered no heartbeat for"), std::string::npos) << s.log();
  EXPECT_NE(s.log().find("standby rank 3 takes rank 2's stage"), std::string::npos) << s.log();
  EXPECT_GT(keepalives, 0) << "a 3 s pause sends SSE comments";
  // woken up, it learns that the job went on without it, and leaves
  ASSERT_GT(pid2, 0);
  kill(pid2, SIGCONT);
  EXPECT_TRUE(log_says(s, "rank 2: fenced")) << s.log();
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = kill(pid2, 0) != 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "rank 2 still runs after waking up";
  EXPECT_EQ(stream(s, 0), reference[0]) << s.log();
  EXPECT_EQ(metric(s, "baton:stage_failures_total"), 1);
  EXPECT_EQ(curl(s, "/health").status, 200);
}

TEST(recovery, a_lost_standby_is_dropped_and_layers_that_fit_nowhere_end_requests_with_503) {
  REQUIRE_MPI_FIXTURE();
  // 256 KiB of KV per layer: each stage holds 32 blocks of 16 tokens, one 512-token
  // sequence; a stage that took the other's layers would hold 16, less than one
  const auto t = topology_file("tight.toml", {"0:0-1", "1:2-3"}, "", 256);
  server_process s("--topology " + t + " --ctx-size 512", launcher(3));
  ASSERT_GT(s.port(), 0) << s.log();
  // the standby dies: nothing to replay, it is dropped
  signal_rank(2, SIGKILL);
  EXPECT_TRUE(log_says(s, "standby rank 2 lost")) << s.log();
  auto ok = curl(s, "/v1/completions", R"({"prompt":"hello","max_tokens":4})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(metric(s, "baton:stage_failures_total"), 0);
  // rank 1 dies mid-generation: rank 0 cannot hold layers 2-3 too
  std::vector<std::string> during = stream_all(s, 4, [&] { signal_rank(1, SIGKILL); });
  for (const auto& r : during) {
    EXPECT_NE(r.find("ERROR"), std::string::npos) << r;
    EXPECT_NE(r.find("rank 1 is lost"), std::string::npos) << r;
    EXPECT_NE(r.find("cannot hold one sequence of KV"), std::string::npos) << r;
  }
  auto h = curl(s, "/health");
  EXPECT_EQ(h.status, 503) << h.body;
  EXPECT_NE(h.body.find("the survivors cannot take its layers"), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("KiB"), std::string::npos) << h.body;  // the budget, in numbers
  auto r = curl(s, "/v1/completions", R"({"prompt":"hello","max_tokens":4})");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(curl(s, "/v1/models").status, 503);
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"failed\"}"), 1);
  EXPECT_EQ(metric(s, "baton:stage_down"), 1);
}

TEST(recovery, a_rank_lost_during_a_reshard_fails_the_reshard_and_is_replaced) {
  REQUIRE_MPI_FIXTURE();
  const auto t = topology_file("three.toml", {"0:0-1", "1:2", "2:3"});
  const auto moved = topology_file("moved.toml", {"0:0-1", "1:2", "3:3"});
  // rank 3 prepares slowly: the reshard is under way when rank 1 dies
  server_process s("--topology " + t + " --ctx-size 512",
                   launcher(4, "-x BATON_TEST_SLOW_PREPARE_RANK=3 "));
  ASSERT_GT(s.port(), 0) << s.log();
  const auto reference = stream_all(s, 16);
  run_result reshard;
  std::thread resharder;
  const auto during = stream_all(s, 16, [&] {
    resharder = std::thread([&] {
      reshard = shell(std::string(BATON_BINARY) + " reshard --url " + s.url() + " --topology " +
                      moved);
    });
    std::this_thread::sleep_for(std::chrono::seconds(1));  // rank 3 prepares
    signal_rank(1, SIGKILL);
  });
  resharder.join();
  expect_same(during, reference, s);
  EXPECT_NE(reshard.status, 0) << reshard.out;
  EXPECT_NE(reshard.err.find("stage 1 (rank 1)"), std::string::npos) << reshard.err;
  EXPECT_NE(s.log().find("recovery: detected: rank 1"), std::string::npos) << s.log();
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"ok\"}"), 1);
  EXPECT_EQ(metric(s, "baton:reshards_total{result=\"ok\"}"), 0);
  EXPECT_EQ(curl(s, "/health").status, 200);
}

TEST(recovery, a_dead_head_ends_the_job_and_every_other_rank_leaves) {
  REQUIRE_MPI_FIXTURE();
  // rank 0 (the front end and router) is the one single point of failure: the others
  // notice that its watcher is gone and leave, and mpirun ends, instead of waiting forever
  server_process s("--stages 2", launcher(3));
  ASSERT_GT(s.port(), 0) << s.log();
  signal_rank(0, SIGKILL);
  // mpirun (the server_process's child) has exited once it is a zombie
  auto exited = [&] {
    const std::string stat = slurp("/proc/" + std::to_string(s.pid()) + "/stat");
    const auto close = stat.rfind(')');
    return stat.empty() || (close != std::string::npos && stat.substr(close + 2, 1) == "Z");
  };
  bool ended = false;
  for (int i = 0; i < 300 && !ended; ++i) {
    ended = exited();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(ended) << "mpirun still runs 30 s after the head died\n" << s.log();
  EXPECT_NE(s.log().find("rank 1: the head (rank 0) is gone; leaving the job"),
            std::string::npos)
      << s.log();
  EXPECT_EQ(rank_pid(1), 0);
  EXPECT_EQ(rank_pid(2), 0);
}

}  // namespace
}  // namespace baton
