// baton under a real cgroup: where this host's v1 memory and cpu hierarchies are writable,
// baton runs in a child cgroup with a memory limit and a 50% CPU quota; its log must show
// the cgroup's budget and 1 thread, and a limit too small for the weights must give exit
// status 2 (a named error), never 137 (the OOM killer).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "runtime/system/budget.hpp"
#include "runtime/system/cgroup.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

struct child_cgroups {
  std::string memory;
  std::string cpu;
  ~child_cgroups() {
    if (!memory.empty()) {
      ::rmdir(memory.c_str());
    }
    if (!cpu.empty()) {
      ::rmdir(cpu.c_str());
    }
  }
};

std::pair<int, std::string> run_in(const child_cgroups& cg, const std::string& args) {
  const auto dir = test::temp_dir("cgroup");
  const auto err = (dir / "stderr").string();
  const std::string cmd = "sh -c 'echo $$ > " + cg.memory + "/cgroup.procs && echo $$ > " +
                          cg.cpu + "/cgroup.procs && exec " + BATON_BINARY + " " + args +
                          "' >/dev/null 2>" + err;
  const int rc = std::system(cmd.c_str());
  std::ifstream in(err);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc), ss.str()};
}

TEST(cgroup, baton_reads_its_own_v1_limits) {
  BATON_REQUIRE_SHARED(shared);
  auto paths = find_cgroups("/proc/self", "");
  if (!paths || !paths->memory || !paths->cpu || paths->memory->version != 1 ||
      paths->cpu->version != 1) {
    GTEST_SKIP() << "needs v1 memory and cpu hierarchies (this host: "
                 << (paths ? "other layout" : paths.err().message) << ")";
  }
  child_cgroups cg;
  const std::string name = "/baton-test-" + std::to_string(::getpid());
  cg.memory = paths->memory->dir + name;
  cg.cpu = paths->cpu->dir + name;
  if (::mkdir(cg.memory.c_str(), 0755) != 0 || ::mkdir(cg.cpu.c_str(), 0755) != 0) {
    cg.memory.clear();
    cg.cpu.clear();
    GTEST_SKIP() << "cannot create child cgroups under " << paths->memory->dir << " and "
                 << paths->cpu->dir << " (not writable here)";
  }
  ASSERT_TRUE(write_file(cg.memory + "/memory.limit_in_bytes", std::to_string(512u << 20)));
  ASSERT_TRUE(write_file(cg.cpu + "/cpu.cfs_period_us", "100000"));
  ASSERT_TRUE(write_file(cg.cpu + "/cpu.cfs_quota_us", "50000"));

  const std::string model = (shared / "models/tiny-q8_0.gguf").string();
  auto [rc, err] = run_in(cg, "run -m " + model + " -p hello -n 4 --temp 0");
  EXPECT_EQ(rc, 0) << err;
  EXPECT_NE(err.find("memory 512.00 MiB (cgroup v1 memory.limit_in_bytes"), std::string::npos)
      << err;
  EXPECT_NE(err.find("threads 1 (cgroup v1 cpu.cfs_quota_us 50000 / cpu.cfs_period_us 100000"),
            std::string::npos)
      << err;

  // 24 MiB cannot hold 36 MiB of weights: a named error, exit 2, not the OOM killer
  ASSERT_TRUE(write_file(cg.memory + "/memory.limit_in_bytes", std::to_string(24u << 20)));
  auto [rc2, err2] = run_in(cg, "run -m " + model + " -p hello -n 4");
  EXPECT_EQ(rc2, 2) << err2;
  EXPECT_NE(err2.find("cannot hold the weights"), std::string::npos) << err2;
  // 80 MiB holds the file but not weights + metadata + buffers + KV at this share
  ASSERT_TRUE(write_file(cg.memory + "/memory.limit_in_bytes", std::to_string(80u << 20)));
  auto [rc3, err3] = run_in(cg, "run -m " + model + " -p hello -n 4 --memory-utilization 0.7");
  EXPECT_EQ(rc3, 2) << err3;
  EXPECT_NE(err3.find("cannot hold the weights"), std::string::npos) << err3;
}

}  // namespace
}  // namespace baton
