// runtime/system/budget and cgroup: cgroup discovery and limits on fake /proc +
// /sys/fs/cgroup trees (v1, v2, hybrid, unlimited, malformed), the KV share of device
// memory, and one look at this machine's real budget.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "runtime/system/budget.hpp"
#include "runtime/system/cgroup.hpp"
#include "runtime/system/units.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t gib = uint64_t{1} << 30;
constexpr const char* v1_unlimited = "9223372036854771712\n";

/// A fake root holding proc/self/{cgroup,mountinfo}, proc/meminfo and cgroup files.
class fake_host {
 public:
  explicit fake_host(const std::string& name) : root_(test::temp_dir("budget-" + name)) {
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  ~fake_host() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  /// Writes `text` at `rel` (an absolute path inside the fake root).
  void write(const std::string& rel, const std::string& text) const {
    fs::path p = root_.string() + rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }

  void meminfo_gib(uint64_t n) const {
    write("/proc/meminfo", "MemTotal:       " + std::to_string(n * gib / 1024) +
                               " kB\nMemFree:         1000 kB\nMemAvailable:   " +
                               std::to_string(n * gib / 2048) + " kB\n");
  }

  std::string root() const { return root_.string(); }
  std::string at(const std::string& rel) const { return root_.string() + rel; }

  budget_probe probe(int n_cores = 8) const { return budget_probe{root(), n_cores}; }

 private:
  // -- member variables -------------------------------------------------------
  fs::path root_;
};

/// mountinfo lines in the kernel's format for a v1 controller mount and a v2 mount.
std::string v1_mount(int id, const std::string& point, const std::string& opts,
                     const std::string& root = "/") {
  return std::to_string(id) + " 31 0:" + std::to_string(id) + " " + root + " " + point +
         " rw,nosuid,nodev,noexec,relatime shared:" + std::to_string(id) +
         " - cgroup cgroup rw," + opts + "\n";
}
std::string v2_mount(int id, const std::string& point, const std::string& root = "/") {
  return std::to_string(id) + " 31 0:" + std::to_string(id) + " " + root + " " + point +
         " rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
}
const std::string tmpfs_mount =
    "31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755\n"
    "23 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";

TEST(budget, pure_v1_nested_memory_cgroup_takes_the_smaller_parent_limit) {
  fake_host h("v1");
  h.write("/proc/self/cgroup",
          "5:memory:/outer/inner\n3:cpu,cpuacct:/outer/inner\n1:name=systemd:/outer\n");
  h.write("/proc/self/mountinfo", tmpfs_mount + v1_mount(40, "/sys/fs/cgroup/memory", "memory") +
                                      v1_mount(41, "/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct") +
                                      v1_mount(42, "/sys/fs/cgroup/systemd", "name=systemd"));
  h.meminfo_gib(16);
  h.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/memory/outer/memory.limit_in_bytes", std::to_string(2 * gib) + "\n");
  h.write("/sys/fs/cgroup/memory/outer/memory.usage_in_bytes", "12345\n");
  h.write("/sys/fs/cgroup/memory/outer/inner/memory.limit_in_bytes", std::to_string(4 * gib));
  h.write("/sys/fs/cgroup/memory/outer/inner/memory.usage_in_bytes", "999\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/outer/cpu.cfs_quota_us", "150000\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/outer/cpu.cfs_period_us", "100000\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/outer/inner/cpu.cfs_quota_us", "-1\n");
  h.write("/sys/fs/cgroup/cpu,cpuacct/outer/inner/cpu.cfs_period_us", "100000\n");

  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok()) << cg.err().message;
  ASSERT_TRUE(cg->memory);
  EXPECT_EQ(cg->memory->version, 1);
  EXPECT_EQ(cg->memory->dir, h.at("/sys/fs/cgroup/memory/outer/inner"));
  EXPECT_EQ(cg->memory->mount, h.at("/sys/fs/cgroup/memory"));
  ASSERT_TRUE(cg->cpu);
  EXPECT_EQ(cg->cpu->dir, h.at("/sys/fs/cgroup/cpu,cpuacct/outer/inner"));

  auto b = detect_budget(h.probe());
  EXPECT_EQ(b.memory_bytes, 2 * gib);
  EXPECT_EQ(b.physical_bytes, 16 * gib);
  EXPECT_EQ(b.memory_source,
            "cgroup v1 memory.limit_in_bytes in " + h.at("/sys/fs/cgroup/memory/outer"));
  ASSERT_TRUE(b.memory_used_bytes);
  EXPECT_EQ(*b.memory_used_bytes, 12345u);  // the usage of the cgroup whose limit binds
  ASSERT_TRUE(b.cpu_quota);
  EXPECT_DOUBLE_EQ(*b.cpu_quota, 1.5);
  EXPECT_EQ(b.threads, 2);
  EXPECT_EQ(b.threads_source, "cgroup v1 cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000 in " +
                                  h.at("/sys/fs/cgroup/cpu,cpuacct/outer"));
  EXPECT_EQ(describe(b), "budget: memory 2.00 GiB (" + b.memory_source + "), threads 2 (" +
                             b.threads_source + ")");
}

TEST(budget, pure_v2_memory_max_and_half_a_cpu) {
  fake_host h("v2");
  h.write("/proc/self/cgroup", "0::/user.slice/app.service\n");
  h.write("/proc/self/mountinfo", tmpfs_mount + v2_mount(35, "/sys/fs/cgroup"));
  h.meminfo_gib(32);
  h.write("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
  h.write("/sys/fs/cgroup/user.slice/memory.max", "max\n");
  h.write("/sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
  h.write("/sys/fs/cgroup/user.slice/app.service/memory.max", std::to_string(3 * gib) + "\n");
  h.write("/sys/fs/cgroup/user.slice/app.service/memory.current", "4096\n");
  h.write("/sys/fs/cgroup/user.slice/app.service/cpu.max", "50000 100000\n");

  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok()) << cg.err().message;
  ASSERT_TRUE(cg->memory && cg->cpu);
  EXPECT_EQ(cg->memory->version, 2);
  EXPECT_EQ(cg->memory->dir, h.at("/sys/fs/cgroup/user.slice/app.service"));
  EXPECT_EQ(cg->cpu->dir, cg->memory->dir);

  auto b = detect_budget(h.probe());
  EXPECT_EQ(b.memory_bytes, 3 * gib);
  EXPECT_EQ(b.memory_source,
            "cgroup v2 memory.max in " + h.at("/sys/fs/cgroup/user.slice/app.service"));
  ASSERT_TRUE(b.memory_used_bytes);
  EXPECT_EQ(*b.memory_used_bytes, 4096u);
  ASSERT_TRUE(b.cpu_quota);
  EXPECT_DOUBLE_EQ(*b.cpu_quota, 0.5);
  EXPECT_EQ(b.threads, 1);
  EXPECT_EQ(b.threads_source,
            "cgroup v2 cpu.max 50000 100000 in " + h.at("/sys/fs/cgroup/user.slice/app.service"));
}

TEST(budget, v2_parent_limit_binds_a_child_without_one) {
  fake_host h("v2-parent");
  h.write("/proc/self/cgroup", "0::/a/b/c\n");
  h.write("/proc/self/mountinfo", v2_mount(35, "/sys/fs/cgroup"));
  h.meminfo_gib(32);
  h.write("/sys/fs/cgroup/a/memory.max", std::to_string(gib) + "\n");
  h.write("/sys/fs/cgroup/a/b/memory.max", "max\n");
  h.write("/sys/fs/cgroup/a/b/cpu.max", "250000 100000\n");
  h.write("/sys/fs/cgroup/a/cpu.max", "max 100000\n");
  auto b = detect_budget(h.probe(16));
  EXPECT_EQ(b.memory_bytes, gib);
  EXPECT_EQ(b.memory_source, "cgroup v2 memory.max in " + h.at("/sys/fs/cgroup/a"));
  EXPECT_EQ(b.threads, 3);  // ceil(2.5)
}

TEST(budget, hybrid_host_takes_the_v1_memory_limit_over_the_unified_tree) {
  // As on this machine: v1 controllers, a v2 tree at /sys/fs/cgroup/unified with no
  // memory controller, and the process in a nested v1 memory cgroup.
  fake_host h("hybrid");
  h.write("/proc/self/cgroup",
          "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/168da3d3\n3:cpuset:/\n"
          "2:cpuacct:/\n1:cpu:/\n0::/\n");
  h.write("/proc/self/mountinfo",
          tmpfs_mount + v1_mount(32, "/sys/fs/cgroup/cpu", "cpu") +
              v1_mount(33, "/sys/fs/cgroup/cpuacct", "cpuacct") +
              v1_mount(34, "/sys/fs/cgroup/cpuset", "cpuset") +
              v1_mount(35, "/sys/fs/cgroup/memory", "memory") +
              v1_mount(39, "/sys/fs/cgroup/pids", "pids") +
              v1_mount(40, "/sys/fs/cgroup/systemd", "name=systemd") +
              v2_mount(41, "/sys/fs/cgroup/unified"));
  h.meminfo_gib(24);
  h.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/memory/process_api/168da3d3/memory.limit_in_bytes",
          std::to_string(8 * gib) + "\n");
  h.write("/sys/fs/cgroup/memory/process_api/168da3d3/memory.usage_in_bytes", "2846720\n");
  h.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
  h.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
  // A decoy: the unified tree does not control memory, so this file must be ignored.
  h.write("/sys/fs/cgroup/unified/memory.max", "1024\n");
  h.write("/sys/fs/cgroup/unified/cgroup.controllers", "");

  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok()) << cg.err().message;
  ASSERT_TRUE(cg->memory && cg->cpu);
  EXPECT_EQ(cg->memory->version, 1);
  EXPECT_EQ(cg->memory->dir, h.at("/sys/fs/cgroup/memory/process_api/168da3d3"));
  EXPECT_EQ(cg->cpu->version, 1);
  EXPECT_EQ(cg->cpu->dir, h.at("/sys/fs/cgroup/cpu"));

  auto b = detect_budget(h.probe(2));
  EXPECT_EQ(b.memory_bytes, 8 * gib);
  EXPECT_EQ(b.memory_source, "cgroup v1 memory.limit_in_bytes in " +
                                 h.at("/sys/fs/cgroup/memory/process_api/168da3d3"));
  EXPECT_EQ(*b.memory_used_bytes, 2846720u);
  EXPECT_FALSE(b.cpu_quota);
  EXPECT_EQ(b.threads, 2);
  EXPECT_EQ(b.threads_source, "2 cores from budget_probe.n_cores");
}

TEST(budget, unlimited_everywhere_falls_back_to_physical_ram_and_cores) {
  fake_host h("unlimited");
  h.write("/proc/self/cgroup", "4:memory:/x\n1:cpu:/x\n0::/\n");
  h.write("/proc/self/mountinfo", v1_mount(35, "/sys/fs/cgroup/memory", "memory") +
                                      v1_mount(32, "/sys/fs/cgroup/cpu", "cpu") +
                                      v2_mount(41, "/sys/fs/cgroup/unified"));
  h.meminfo_gib(12);
  h.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/memory/x/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/cpu/x/cpu.cfs_quota_us", "-1\n");
  h.write("/sys/fs/cgroup/cpu/x/cpu.cfs_period_us", "100000\n");
  auto b = detect_budget(h.probe(6));
  EXPECT_EQ(b.memory_bytes, 12 * gib);
  EXPECT_EQ(b.memory_source, "physical RAM");
  ASSERT_TRUE(b.memory_used_bytes);
  EXPECT_EQ(*b.memory_used_bytes, 6 * gib);  // MemTotal - MemAvailable
  EXPECT_EQ(b.threads, 6);
  EXPECT_EQ(b.n_cores, 6);
  EXPECT_FALSE(b.cpu_quota);
  EXPECT_EQ(describe(b), "budget: memory 12.00 GiB (physical RAM), threads 6 (6 cores "
                         "from budget_probe.n_cores)");
}

TEST(budget, limits_above_the_machine_yield_to_physical_ram_and_cores) {
  fake_host h("above");
  h.write("/proc/self/cgroup", "0::/big\n");
  h.write("/proc/self/mountinfo", v2_mount(35, "/sys/fs/cgroup"));
  h.meminfo_gib(4);
  h.write("/sys/fs/cgroup/big/memory.max", std::to_string(64 * gib) + "\n");
  h.write("/sys/fs/cgroup/big/cpu.max", "800000 100000\n");
  auto b = detect_budget(h.probe(4));
  EXPECT_EQ(b.memory_bytes, 4 * gib);
  EXPECT_EQ(b.memory_source, "physical RAM; cgroup v2 memory.max in " + h.at("/sys/fs/cgroup/big") +
                                 " (64.00 GiB) is larger");
  EXPECT_EQ(b.threads, 4);
  ASSERT_TRUE(b.cpu_quota);
  EXPECT_DOUBLE_EQ(*b.cpu_quota, 8.0);
  EXPECT_EQ(b.threads_source,
            "4 cores from budget_probe.n_cores; cgroup v2 cpu.max 800000 100000 in " +
                h.at("/sys/fs/cgroup/big") + " (8.00 CPUs) is larger");
}

TEST(budget, a_tiny_quota_still_gives_one_thread) {
  fake_host h("tiny");
  h.write("/proc/self/cgroup", "0::/\n");
  h.write("/proc/self/mountinfo", v2_mount(35, "/sys/fs/cgroup"));
  h.meminfo_gib(4);
  h.write("/sys/fs/cgroup/cpu.max", "1000 100000\n");
  auto b = detect_budget(h.probe(4));
  EXPECT_EQ(b.threads, 1);
  EXPECT_DOUBLE_EQ(*b.cpu_quota, 0.01);
}

TEST(budget, malformed_limits_fall_back_and_say_so) {
  fake_host h("malformed");
  h.write("/proc/self/cgroup", "4:memory:/m\n1:cpu:/m\n0::/\n");
  h.write("/proc/self/mountinfo", v1_mount(35, "/sys/fs/cgroup/memory", "memory") +
                                      v1_mount(32, "/sys/fs/cgroup/cpu", "cpu"));
  h.meminfo_gib(8);
  h.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", v1_unlimited);
  h.write("/sys/fs/cgroup/memory/m/memory.limit_in_bytes", "lots\n");
  h.write("/sys/fs/cgroup/cpu/m/cpu.cfs_quota_us", "50000\n");
  h.write("/sys/fs/cgroup/cpu/m/cpu.cfs_period_us", "0\n");
  h.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "\x01\x02garbage\xff");
  auto b = detect_budget(h.probe(3));
  EXPECT_EQ(b.memory_bytes, 8 * gib);
  EXPECT_EQ(b.memory_source, "physical RAM; ignored " +
                                 h.at("/sys/fs/cgroup/memory/m/memory.limit_in_bytes") +
                                 ": expected a byte count, got \"lots\"");
  EXPECT_EQ(b.threads, 3);
  EXPECT_FALSE(b.cpu_quota);
  EXPECT_NE(b.threads_source.find("3 cores from budget_probe.n_cores; ignored " +
                                  h.at("/sys/fs/cgroup/cpu/m/cpu.cfs_quota_us") + ": " +
                                  h.at("/sys/fs/cgroup/cpu/m/cpu.cfs_period_us") +
                                  " should be positive microseconds, got \"0\""),
            std::string::npos)
      << b.threads_source;
  EXPECT_NE(b.threads_source.find("ignored " + h.at("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") +
                                  ": expected microseconds or -1, got \"??garbage?\""),
            std::string::npos)
      << b.threads_source;
}

TEST(budget, malformed_v2_files_fall_back_to_the_parent) {
  fake_host h("malformed-v2");
  h.write("/proc/self/cgroup", "0::/p/c\n");
  h.write("/proc/self/mountinfo", v2_mount(35, "/sys/fs/cgroup"));
  h.meminfo_gib(8);
  h.write("/sys/fs/cgroup/p/c/memory.max", "-5\n");
  h.write("/sys/fs/cgroup/p/memory.max", std::to_string(gib) + "\n");
  h.write("/sys/fs/cgroup/p/c/cpu.max", "half 100000\n");
  h.write("/sys/fs/cgroup/p/cpu.max", "200000 100000\n");
  auto b = detect_budget(h.probe(8));
  EXPECT_EQ(b.memory_bytes, gib);
  EXPECT_EQ(b.memory_source, "cgroup v2 memory.max in " + h.at("/sys/fs/cgroup/p") + "; ignored " +
                                 h.at("/sys/fs/cgroup/p/c/memory.max") +
                                 ": expected a byte count or \"max\", got \"-5\"");
  EXPECT_EQ(b.threads, 2);
  EXPECT_NE(b.threads_source.find(
                "expected \"max PERIOD\" or \"QUOTA PERIOD\", got \"half 100000\""),
            std::string::npos)
      << b.threads_source;
}

TEST(budget, malformed_proc_files_never_crash) {
  fake_host h("proc");
  h.meminfo_gib(2);
  // No /proc/self at all: physical RAM and cores, with the reason.
  auto b = detect_budget(h.probe(2));
  EXPECT_EQ(b.memory_bytes, 2 * gib);
  EXPECT_EQ(b.threads, 2);
  EXPECT_NE(b.memory_source.find("no cgroup information (cannot read " + h.at("/proc/self/cgroup")),
            std::string::npos)
      << b.memory_source;
  EXPECT_FALSE(find_cgroups(h.at("/proc/self"), h.root()).ok());

  // Garbage in both files.
  h.write("/proc/self/cgroup", std::string("what\n:\n::\n4:memory\nnot:a:path\n\0\xff\n", 33));
  h.write("/proc/self/mountinfo", "1 2 3\n - cgroup\n35 31 0:1 / - cgroup cgroup memory\n");
  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok()) << cg.err().message;
  EXPECT_FALSE(cg->memory);
  EXPECT_FALSE(cg->cpu);
  EXPECT_FALSE(cg->notes.empty());
  b = detect_budget(h.probe(2));
  EXPECT_EQ(b.memory_bytes, 2 * gib);
  EXPECT_EQ(b.threads, 2);

  // A memory hierarchy listed in /proc/self/cgroup but not mounted.
  h.write("/proc/self/cgroup", "4:memory:/x\n");
  h.write("/proc/self/mountinfo", tmpfs_mount);
  cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok());
  EXPECT_FALSE(cg->memory);
  b = detect_budget(h.probe(2));
  EXPECT_NE(b.memory_source.find("cgroup v1 memory hierarchy 4 is not mounted"), std::string::npos)
      << b.memory_source;

  // meminfo without MemTotal: sysconf gives the real machine's RAM.
  h.write("/proc/meminfo", "MemFree: 12 kB\n");
  b = detect_budget(h.probe(2));
  EXPECT_GT(b.memory_bytes, 0u);
  EXPECT_NE(b.memory_source.find("physical RAM (sysconf)"), std::string::npos) << b.memory_source;
}

TEST(budget, mount_roots_from_a_container_map_onto_the_mount_point) {
  // Without a cgroup namespace, a container sees its own cgroup as the mount's root.
  fake_host h("container");
  h.write("/proc/self/cgroup", "4:memory:/docker/abc\n0::/docker/abc/sub\n");
  h.write("/proc/self/mountinfo",
          v1_mount(35, "/sys/fs/cgroup/memory", "memory", "/docker/abc") +
              v2_mount(41, "/sys/fs/cgroup/unified", "/docker/abc"));
  h.meminfo_gib(8);
  h.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", std::to_string(gib) + "\n");
  h.write("/sys/fs/cgroup/unified/sub/cpu.max", "100000 100000\n");
  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok());
  ASSERT_TRUE(cg->memory && cg->cpu);
  EXPECT_EQ(cg->memory->dir, h.at("/sys/fs/cgroup/memory"));
  EXPECT_EQ(cg->cpu->version, 2);
  EXPECT_EQ(cg->cpu->dir, h.at("/sys/fs/cgroup/unified/sub"));
  auto b = detect_budget(h.probe(4));
  EXPECT_EQ(b.memory_bytes, gib);
  EXPECT_EQ(b.threads, 1);

  // A path outside the mount's root (a cgroup namespace the process has left).
  h.write("/proc/self/cgroup", "4:memory:/elsewhere\n");
  cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok());
  ASSERT_TRUE(cg->memory);
  EXPECT_EQ(cg->memory->dir, h.at("/sys/fs/cgroup/memory"));
  ASSERT_EQ(cg->notes.size(), 1u);
  EXPECT_NE(cg->notes[0].find("lies outside its mount's root /docker/abc"), std::string::npos);
}

TEST(budget, escaped_mount_points_and_paths_with_colons) {
  fake_host h("escaped");
  h.write("/proc/self/cgroup", "0::/a:b/c\n");
  h.write("/proc/self/mountinfo", v2_mount(35, "/mnt/my\\040cgroups"));
  h.meminfo_gib(8);
  h.write("/mnt/my cgroups/a:b/c/memory.max", std::to_string(gib / 2) + "\n");
  auto cg = find_cgroups(h.at("/proc/self"), h.root());
  ASSERT_TRUE(cg.ok());
  ASSERT_TRUE(cg->memory);
  EXPECT_EQ(cg->memory->dir, h.at("/mnt/my cgroups/a:b/c"));
  auto b = detect_budget(h.probe(1));
  EXPECT_EQ(b.memory_bytes, gib / 2);
  EXPECT_EQ(describe(b).substr(0, 31), "budget: memory 512.00 MiB (cgro");
}

TEST(budget, format_bytes_picks_a_readable_unit) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(100 * 1024 * 1024), "100.00 MiB");
  EXPECT_EQ(format_bytes(8 * gib), "8.00 GiB");
}

TEST(kv_budget, kv_gets_what_remains_of_the_utilization_share) {
  // 0.5 of 8 GiB = 4 GiB; 1 GiB weights + 0.5 GiB buffers leave 2.5 GiB.
  auto kv = kv_budget_bytes(8 * gib, 0.5, gib, gib / 2, std::nullopt, gib / 4);
  ASSERT_TRUE(kv.ok()) << kv.err().message;
  EXPECT_EQ(*kv, 5 * gib / 2);

  auto all = kv_budget_bytes(8 * gib, 1.0, gib, 0, std::nullopt, 1);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, 7 * gib);

  // Exactly enough for one sequence.
  auto tight = kv_budget_bytes(4 * gib, 1.0, 3 * gib, 0, std::nullopt, gib);
  ASSERT_TRUE(tight.ok());
  EXPECT_EQ(*tight, gib);
}

TEST(kv_budget, an_explicit_kv_size_overrides_the_share) {
  auto kv = kv_budget_bytes(8 * gib, 0.1, 4 * gib, 0, 2 * gib, gib / 4);
  ASSERT_TRUE(kv.ok()) << kv.err().message;
  EXPECT_EQ(*kv, 2 * gib);

  auto small = kv_budget_bytes(8 * gib, 0.9, gib, 0, 1024, 4096);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.err().message,
            "kv_cache_memory (1.00 KiB) cannot hold one sequence of KV (4.00 KiB)");
}

TEST(kv_budget, weights_that_do_not_fit_name_every_number) {
  auto kv = kv_budget_bytes(2 * gib, 0.9, static_cast<uint64_t>(1.2 * gib),
                            static_cast<uint64_t>(0.1 * gib), std::nullopt,
                            static_cast<uint64_t>(0.6 * gib));
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.err().message,
            "memory_utilization 0.90 of 2.00 GiB = 1.80 GiB cannot hold the weights (1.20 GiB) + "
            "buffers (102.40 MiB) + one sequence of KV (614.40 MiB)");

  // Sums that would overflow 64 bits still fail cleanly.
  auto huge = kv_budget_bytes(gib, 1.0, UINT64_MAX, UINT64_MAX, std::nullopt, UINT64_MAX);
  EXPECT_FALSE(huge.ok());
}

TEST(kv_budget, an_explicit_kv_size_larger_than_the_device_is_refused) {
  auto kv = kv_budget_bytes(8 * gib, 0.9, gib, 0, 9 * gib, 1);
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.err().message,
            "kv_cache_memory (9.00 GiB, 9663676416 bytes) is more than the device's memory "
            "(8.00 GiB, 8589934592 bytes)");
  EXPECT_TRUE(kv_budget_bytes(8 * gib, 0.9, gib, 0, 8 * gib, 1).ok());  // all of it: allowed
}

TEST(parse_bytes, units_fractions_and_exact_integers) {
  const std::vector<std::pair<std::string, uint64_t>> good = {
      {"1000000", 1000000},
      {"2GiB", 2 * gib},
      {"512M", 512ull << 20},
      {"1.5G", 3 * gib / 2},
      {"1.5GiB", 3 * gib / 2},
      {" 64 kb ", 64 * 1024},
      {"0.5K", 512},
      {".25M", 256 * 1024},
      {"1.5", 1},  // whole bytes, truncated
      {"7B", 7},
      {"1T", 1ull << 40},
      // exact to the byte where a double would round
      {"9007199254740993", 9007199254740993ull},
      {"18446744073709551615", UINT64_MAX},
      {"16777215.999999TiB", (16777215ull << 40) + 1099510528264ull},
  };
  for (const auto& [text, bytes] : good) {
    auto b = parse_bytes(text);
    ASSERT_TRUE(b.ok()) << text << ": " << b.err().message;
    EXPECT_EQ(*b, bytes) << text;
  }
}

TEST(parse_bytes, anything_float_ish_signed_or_past_2_64_is_refused) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"1e3GiB", "unknown unit 'E3GIB'"},
      {"1e12", "unknown unit 'E12'"},
      {"inf", "expected a size > 0"},
      {"nan", "expected a size > 0"},
      {"-1G", "expected a size > 0"},
      {"+1G", "expected a size > 0"},
      {"0x10", "unknown unit 'X10'"},
      {"", "expected a size > 0"},
      {".", "expected a size > 0"},
      {"0", "'0' is less than one byte"},
      {"0.4", "'0.4' is less than one byte"},
      {"18446744073709551616", "'18446744073709551616' is more than 2^64 - 1 bytes"},
      {"99999999999999999999999", "is more than 2^64 - 1 bytes"},
      {"16777216TiB", "'16777216TiB' is more than 2^64 - 1 bytes"},
      {"17179869184GiB", "is more than 2^64 - 1 bytes"},
      {"2 GiB x", "unknown unit 'GIB X'"},
  };
  for (const auto& [text, expected] : bad) {
    auto b = parse_bytes(text);
    ASSERT_FALSE(b.ok()) << text << " gave " << *b;
    EXPECT_NE(b.err().message.find(expected), std::string::npos)
        << text << ": expected '" << expected << "' in: " << b.err().message;
  }
}

TEST(kv_budget, utilization_must_lie_in_zero_to_one) {
  for (double u : {0.0, -0.5, 1.0001, 2.0, std::nan("")}) {
    auto kv = kv_budget_bytes(8 * gib, u, gib, 0, std::nullopt, 1);
    ASSERT_FALSE(kv.ok()) << u;
    EXPECT_NE(kv.err().message.find("memory_utilization"), std::string::npos);
    EXPECT_NE(kv.err().message.find("must be in (0, 1]"), std::string::npos);
  }
  // Checked even when an explicit KV size makes the share moot: a bad flag is a bad flag.
  EXPECT_FALSE(kv_budget_bytes(8 * gib, 1.5, gib, 0, gib, 1).ok());
}

TEST(budget_real, this_machine_has_memory_and_threads) {
  auto b = detect_budget();
  std::printf("%s\n", describe(b).c_str());
  if (b.memory_used_bytes) {
    std::printf("memory in use: %s of %s; physical RAM %s; %d cores\n",
                format_bytes(*b.memory_used_bytes).c_str(), format_bytes(b.memory_bytes).c_str(),
                format_bytes(b.physical_bytes).c_str(), b.n_cores);
  }
  EXPECT_GT(b.memory_bytes, 0u);
  EXPECT_LE(b.memory_bytes, b.physical_bytes);
  EXPECT_GE(b.threads, 1);
  EXPECT_LE(b.threads, b.n_cores);
  EXPECT_FALSE(b.memory_source.empty());
  EXPECT_FALSE(b.threads_source.empty());
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(parse_duration, units_fractions_and_refusals) {
  EXPECT_EQ(parse_duration("30s").value(), std::chrono::milliseconds(30000));
  EXPECT_EQ(parse_duration("500ms").value(), std::chrono::milliseconds(500));
  EXPECT_EQ(parse_duration("1.5s").value(), std::chrono::milliseconds(1500));
  EXPECT_EQ(parse_duration("2m").value(), std::chrono::milliseconds(120000));
  EXPECT_EQ(parse_duration("10").value(), std::chrono::milliseconds(10000));
  for (const char* bad : {"", "s", "-3s", "0s", "0.1ms", "3h", "3 s", "nan", "inf", "2d",
                          "1e9s", " 3s", "+3s"}) {
    auto d = parse_duration(bad);
    EXPECT_FALSE(d) << bad;
    if (!d) {
      EXPECT_NE(d.err().message.find("not a duration"), std::string::npos) << bad;
    }
  }
}

}  // namespace
}  // namespace baton
