// How much memory and how many threads this process may use, and how the memory is
// split between weights, buffers and the KV cache. On CPU "the device's memory" (what
// vLLM's --gpu-memory-utilization is a share of) is the cgroup memory limit when one
// is set, else physical RAM; threads follow the cgroup CPU quota, else the cores this
// process may run on. Cgroups are found from /proc/self/cgroup and
// /proc/self/mountinfo, v1, v2 and hybrid hosts alike, and every ancestor up to the
// mount point is read (the smallest limit wins). Every reader takes a root prefix so
// tests can point it at a fake tree; a malformed file is skipped for the next source
// and the source string says so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

/// One cgroup of the process: its folder and the mount point the ancestor walk stops at.
struct cgroup_dir {
  int version = 0;        ///< 1 or 2
  std::string dir;        ///< the process's own cgroup folder (root prefix included)
  std::string mount;      ///< the hierarchy's mount point (root prefix included)
};

/// The cgroups that govern memory and CPU; absent when no hierarchy controls them.
struct cgroup_paths {
  std::optional<cgroup_dir> memory;
  std::optional<cgroup_dir> cpu;
  std::vector<std::string> notes;  ///< oddities met on the way (path outside the mount root, ...)
};

/// Where detect_budget looks.
struct budget_probe {
  std::string root;             ///< prefix for every path read; "" = the real filesystem
  std::optional<int> n_cores;   ///< overrides the online core count (for tests)
};

/// What this process may use.
struct resource_budget {
  uint64_t memory_bytes = 0;  ///< the device memory on CPU
  /// "cgroup v1 memory.limit_in_bytes in /sys/fs/cgroup/memory/x" or "physical RAM",
  /// followed by "; ..." notes on files skipped as malformed.
  std::string memory_source;
  /// In use now, in the cgroup whose limit binds (host-wide when physical RAM does).
  std::optional<uint64_t> memory_used_bytes;
  uint64_t physical_bytes = 0;  ///< physical RAM, whatever the cgroup says
  int threads = 1;              ///< worker threads to default to
  /// "cgroup v2 cpu.max 50000 100000 in /sys/fs/cgroup/x" or "8 cores from sched_getaffinity".
  std::string threads_source;
  std::optional<double> cpu_quota;            ///< in CPUs; absent when no quota is set
  int n_cores = 1;                            ///< cores this process may run on
};

/// The process's memory and CPU cgroups, from `proc_self_dir`/cgroup and /mountinfo;
/// mount points are prefixed with `fs_root`. Errors only when those files are unreadable.
result<cgroup_paths> find_cgroups(const std::string& proc_self_dir, const std::string& fs_root);

/// Memory and threads for this process; never fails, falls back to physical RAM and cores.
resource_budget detect_budget(const budget_probe& where = {});

/// One log line: "budget: memory 8.00 GiB (...), threads 1 (...)".
std::string describe(const resource_budget& b);

/// "2GiB", "512M", "1.5G", "1000000": bytes, units in powers of 1024 (K, M, G, T, with
/// or without B / iB); the error says what was expected, the caller names the field.
result<uint64_t> parse_bytes(std::string_view text);

/// "1.50 GiB", "12.0 MiB", "512 B": the unit that keeps the number readable.
std::string format_bytes(uint64_t n);

/// Bytes for the KV cache, as vLLM means it: `memory_utilization` of `device_memory`
/// holds weights + buffers + KV, and KV gets what remains; an explicit
/// `kv_cache_memory` is taken as is (it may rely on mmapped weights being reclaimable).
/// Errors, with every number, when utilization is outside (0, 1] or when the weights,
/// buffers and `min_kv_bytes` (one sequence of KV) do not fit.
result<uint64_t> kv_budget_bytes(uint64_t device_memory, double memory_utilization,
                                 uint64_t weight_bytes, uint64_t buffer_bytes,
                                 std::optional<uint64_t> kv_cache_memory, uint64_t min_kv_bytes);

}  // namespace baton
