// The pipeline across MPI ranks, end to end: `mpirun --oversubscribe -np N baton run`
// on a demo model made for the test. 16 requests at once give tokens and exact logits
// bit-identical to the single-process run for np 2, 3 and 4 (one layer per stage), for
// uneven and "auto" topologies; stages overlap in time across ranks; CAF carries under
// 4 KiB per step while the activations moved exceed 1 MiB; a bad topology fails on
// every rank with its message; a killed rank ends the requests with an error naming
// its stage within 10 s, and the job still exits; a SIGTERM to the job (mpirun sends it
// to every rank at once) is a clean stop that no "is down" line reports. Skips where
// mpirun is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/mpi_util.hpp"

namespace baton {
namespace {

using namespace mpi_test;
namespace fs = std::filesystem;

TEST(mpi, ranks_give_the_single_process_tokens_and_logits) {
  REQUIRE_MPI();
  const auto& ref = single_process();
  ASSERT_EQ(ref.size(), 16u);
  for (int np : {2, 3, 4}) {  // np 4: one layer per stage
    auto r = shell(mpirun(np) + run_args());
    ASSERT_EQ(r.status, 0) << "np " << np << ": " << r.err;
    const auto got = request_lines(r.out);
    ASSERT_EQ(got.size(), ref.size()) << "np " << np;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i], ref[i]) << "np " << np << ", request " << i;
    }
  }
}

TEST(mpi, seeded_sampling_matches_across_ranks) {
  REQUIRE_MPI();
  const std::string args = run_args("", 24, "--temp 0.9 --top-k 40 --seed 1234");
  auto one = shell(args);
  ASSERT_EQ(one.status, 0) << one.err;
  auto two = shell(mpirun(2) + args);
  ASSERT_EQ(two.status, 0) << two.err;
  EXPECT_EQ(request_lines(two.out), request_lines(one.out));
}

TEST(mpi, uneven_and_auto_topologies_give_the_same_outputs) {
  REQUIRE_MPI();
  const auto& ref = single_process();
  const std::string uneven = write_topology("uneven.toml",
                                            "[pipeline]\nmicro_batches = 2\n"
                                            "[[stage]]\nrank = 0\nlayers = \"0\"\n"
                                            "[[stage]]\nrank = 1\nlayers = \"1-3\"\n");
  const std::string automatic = write_topology("auto.toml",
                                               "[[stage]]\nrank = 0\nlayers = \"auto\"\n"
                                               "[[stage]]\nrank = 1\nlayers = \"auto\"\n"
                                               "[[stage]]\nrank = 1\nlayers = \"auto\"\n");
  for (const auto& t : {uneven, automatic}) {
    auto r = shell(mpirun(2) + run_args("--topology " + t));
    ASSERT_EQ(r.status, 0) << t << ": " << r.err;
    EXPECT_EQ(request_lines(r.out), ref) << t;
  }
  // and the same file in one process (both ranks' stages on rank 0)
  const std::string local = write_topology("local.toml",
                                           "[[stage]]\nrank = 0\nlayers = \"0-2\"\n"
                                           "[[stage]]\nrank = 0\nlayers = \"3\"\n");
  auto r = shell(run_args("--topology " + local));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(request_lines(r.out), ref);
}

TEST(mpi, a_standby_rank_with_no_stage_ends_with_the_job) {
  REQUIRE_MPI();
  const auto& ref = single_process();
  // three ranks, two stages: rank 2 holds none (a standby rank); the head tells it when
  // the job ends, as it tells the shards (it used to wait until MPI_Finalize's 20 s
  // watchdog gave up on it and the job exited 1)
  const std::string topo = write_topology("standby.toml",
                                          "[[stage]]\nrank = 0\nlayers = \"0-1\"\n"
                                          "[[stage]]\nrank = 1\nlayers = \"2-3\"\n");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = shell(mpirun(3) + run_args("--topology " + topo));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(request_lines(r.out), ref);
  EXPECT_EQ(r.err.find("MPI_Finalize did not return"), std::string::npos) << r.err;
  EXPECT_LT(took, 20.0) << "the job waited for a watchdog";
}

TEST(mpi, stages_overlap_and_the_control_plane_stays_small) {
  REQUIRE_MPI();
  const std::string topo = write_topology("two.toml",
                                          "[pipeline]\nmicro_batches = 2\n"
                                          "[[stage]]\nrank = 0\nlayers = \"0-1\"\n"
                                          "[[stage]]\nrank = 1\nlayers = \"2-3\"\n");
  auto r = shell(mpirun(2) + run_args("--timings --topology " + topo, 48));
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json s;
  request_lines(r.out, &s);
  ASSERT_TRUE(s.is_object()) << r.out;
  const double steps = s["remote_steps"];
  const double control = s["control_bytes"];
  const double moved = s["activation_bytes_sent"];
  std::printf("remote steps %.0f, CAF bytes %.0f (%.0f per step), activations sent %.0f bytes\n",
              steps, control, control / steps, moved);
  ASSERT_GT(steps, 0);
  EXPECT_LT(control / steps, 4096.0);
  // every request's 47 decode steps send one hidden row (256 floats of the demo shape) from
  // rank 0 to rank 1; prompt rows add to that, fewer when a prompt finds its prefix cached by
  // an earlier request (prompts 0, 3, 6... share words), and that depends on timing
  EXPECT_GE(moved, 16.0 * 47 * 256 * sizeof(float));
  // a step of stage 1 (rank 1) runs while stage 0 (rank 0) runs another one
  std::vector<std::array<int64_t, 4>> spans;
  for (const auto& x : s["spans"]) {
    spans.push_back({x[0].get<int64_t>(), x[1].get<int64_t>(), x[2].get<int64_t>(),
                     x[3].get<int64_t>()});
  }
  int overlaps = 0;
  for (const auto& a : spans) {
    for (const auto& b : spans) {
      if (a[0] == 0 && b[0] == 1 && a[1] != b[1] && a[2] < b[3] && b[2] < a[3]) {
        ++overlaps;
      }
    }
  }
  std::printf("%d overlapping step pairs across the two ranks\n", overlaps);
  EXPECT_GT(overlaps, 0);
}

TEST(mpi, a_bad_topology_fails_on_every_rank_with_its_message) {
  REQUIRE_MPI();
  struct bad_case {
    std::string body;
    std::string expected;
  };
  const std::vector<bad_case> cases = {
      {"[[stage]]\nrank = 0\nlayers = \"0-1\"\n[[stage]]\nrank = 2\nlayers = \"2-3\"\n",
       "the MPI world has 2 ranks"},
      {"[[stage]]\nrank = 0\nlayers = \"0-1\"\n[[stage]]\nrank = 1\nlayers = \"1-3\"\n",
       "layers"},
      {"[[stage]]\nrank = 0\nlayer = \"0-3\"\n", "unknown key 'layer'"},
      {"[[stage]]\nrank = 0\nlayers = \"0-1\"\n[[stage]]\nrank = 1\nlayers = \"2-3\"\n"
       "device = \"cuda:7\"\n",
       "cuda:7"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string t = write_topology("bad" + std::to_string(i) + ".toml", cases[i].body);
    auto r = shell(mpirun(2) + run_args("--topology " + t));
    EXPECT_NE(r.status, 0) << cases[i].body;
    EXPECT_NE(r.err.find(cases[i].expected), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("bad" + std::to_string(i) + ".toml"), std::string::npos) << r.err;
  }
}

/// A 3-rank `baton run` streaming a long generation in the background (stdout to `out`,
/// stderr to `err`); returns once its first text is out, or after 30 s.
std::string streaming_job(const fs::path& out, const fs::path& err, const std::string& mpirun_flags,
                          int n_tokens) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 exec timeout 60 mpirun " +
         mpirun_flags + " --oversubscribe -np 3 " + std::string(BATON_BINARY) + " run -q -m " +
         fx().model + " -p 'Once upon a time' -n " + std::to_string(n_tokens) +
         " -c 2048 --temp 0.8 --seed 3 >" + out.string() + " 2>" + err.string();
}

pid_t start_streaming_job(const fs::path& out, const fs::path& err, const std::string& mpirun_flags,
                          int n_tokens = 2000) {
  const std::string cmd = streaming_job(out, err, mpirun_flags, n_tokens);
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto t_start = std::chrono::steady_clock::now();
  while ((!fs::exists(out) || fs::file_size(out) == 0) &&
         std::chrono::steady_clock::now() - t_start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pid;
}

TEST(mpi, a_killed_rank_is_replaced_and_baton_run_prints_the_undisturbed_text) {
  REQUIRE_MPI();
  const auto ref_out = dir() / "kill-ref.out";
  const auto ref_err = dir() / "kill-ref.err";
  // (run_shell's own redirections come last and win: the text is in ref.out)
  auto ref = shell(streaming_job(ref_out, ref_err, "--enable-recovery", 600));
  ASSERT_EQ(ref.status, 0) << ref.err;
  ASSERT_FALSE(ref.out.empty()) << ref.err;
  const auto out = dir() / "kill.out";
  const auto err = dir() / "kill.err";
  // once rank 0 streams text, kill -9 rank 2
  using clock = std::chrono::steady_clock;
  const pid_t pid = start_streaming_job(out, err, "--enable-recovery", 600);
  ASSERT_GE(pid, 0);
  // this job's ranks only (the model path is this test process's own): ctest runs other
  // mpi tests beside this one
  auto r = shell("for p in $(pgrep -f '^" + std::string(BATON_BINARY) + " run.*" + fx().model +
                 "'); do tr '\\0' '\\n' </proc/$p/environ | grep -qx "
                 "OMPI_COMM_WORLD_RANK=2 && kill -9 $p && echo $p; done");
  ASSERT_FALSE(r.out.empty()) << "no rank 2 found to kill";
  const auto t_kill = clock::now();
  // rank 2's layers move to rank 1, the sequence is recomputed, and the job finishes
  int status = 0;
  waitpid(pid, &status, 0);
  const double t_exit = std::chrono::duration<double>(clock::now() - t_kill).count();
  std::printf("job done %.2f s after the kill\n", t_exit);
  EXPECT_NE(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 124) << "timed out";
  const std::string e = slurp(err);
  EXPECT_NE(e.find("recovery: detected: rank 2"), std::string::npos) << e;
  EXPECT_NE(e.find("recovery: replayed"), std::string::npos) << e;
  EXPECT_EQ(slurp(out), ref.out) << e;
}

TEST(mpi, a_sigterm_to_the_job_is_a_clean_stop_not_a_dead_stage) {
  REQUIRE_MPI();
  const auto out = dir() / "term.out";
  const auto err = dir() / "term.err";
  // timeout passes the SIGTERM on to mpirun, which sends it to every rank
  using clock = std::chrono::steady_clock;
  const pid_t pid = start_streaming_job(out, err, "");
  ASSERT_GE(pid, 0);
  ASSERT_GT(fs::exists(out) ? fs::file_size(out) : 0, 0u) << slurp(err);
  const auto t_term = clock::now();
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  const double t_exit = std::chrono::duration<double>(clock::now() - t_term).count();
  std::printf("job gone %.2f s after the SIGTERM\n", t_exit);
  EXPECT_LT(t_exit, 20.0);
  EXPECT_NE(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 124) << "timed out";
  const std::string e = slurp(err);
  EXPECT_EQ(e.find("is down"), std::string::npos) << e;
  EXPECT_EQ(e.find("died"), std::string::npos) << e;
  EXPECT_EQ(e.find("did not finish within"), std::string::npos) << e;
}

}  // namespace
}  // namespace baton
