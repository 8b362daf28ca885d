// How much memory and how many threads this process may use, and how the memory is
// split between weights, buffers and the KV cache. On CPU "the device's memory" (what
// vLLM's --gpu-memory-utilization is a share of) is the cgroup memory limit when one
// is set, else physical RAM; threads follow the cgroup CPU quota, else the cores this
// process may run on (the cgroup limits are read by cgroup.hpp). Every reader takes a
// root prefix so tests can point it at a fake tree; a malformed file is skipped for the
// next source and the source string says so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

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

/// Memory and threads for this process; never fails, falls back to physical RAM and cores.
resource_budget detect_budget(const budget_probe& where = {});

/// One log line: "budget: memory 8.00 GiB (...), threads 1 (...)".
std::string describe(const resource_budget& b);

/// Bytes for the KV cache, as vLLM means it: `memory_utilization` of `device_memory`
/// holds weights + buffers + KV, and KV gets what remains; an explicit
/// `kv_cache_memory` is taken as is (it may rely on mmapped weights being reclaimable —
/// not the weights a CPU stage copies into anonymous memory, unless --no-repack).
/// Errors, with every number, when utilization is outside (0, 1] or when the weights,
/// buffers and `min_kv_bytes` (one sequence of KV) do not fit.
result<uint64_t> kv_budget_bytes(uint64_t device_memory, double memory_utilization,
                                 uint64_t weight_bytes, uint64_t buffer_bytes,
                                 std::optional<uint64_t> kv_cache_memory, uint64_t min_kv_bytes);

}  // namespace baton
