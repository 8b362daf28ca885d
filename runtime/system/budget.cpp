// Resource budget detection: the cgroup limits of cgroup.hpp against physical RAM and
// the core count, and vLLM's split of the device memory into weights, buffers and KV.
#include "runtime/system/budget.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

#include "runtime/system/cgroup.hpp"
#include "runtime/system/proc_files.hpp"
#include "runtime/system/units.hpp"

namespace baton {

using system_detail::parse_int;
using system_detail::read_text;
using system_detail::split;
using system_detail::strip_trailing_slash;
using system_detail::words;

namespace {

/// Cores this process may run on, and how that was found.
std::pair<int, std::string> online_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) {
      return {n, "sched_getaffinity"};
    }
  }
  unsigned hc = std::thread::hardware_concurrency();
  if (hc > 0) {
    return {static_cast<int>(hc), "hardware_concurrency"};
  }
  return {1, "no core count available"};
}

struct meminfo {
  std::optional<uint64_t> total;
  std::optional<uint64_t> available;
};

std::optional<uint64_t> meminfo_field(const std::string& text, const std::string& key) {
  for (const auto& line : split(text, '\n')) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) {
      continue;
    }
    auto w = words(std::string_view(line).substr(key.size() + 1));
    if (w.size() == 2 && w[1] == "kB") {
      if (auto kb = parse_int<uint64_t>(w[0]); kb && *kb <= UINT64_MAX / 1024) {
        return *kb * 1024;
      }
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::string join_notes(const std::vector<std::string>& notes) {
  std::string out;
  for (const auto& n : notes) {
    out += "; " + n;
  }
  return out;
}

std::string format_cpus(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", cpus);
  return buf;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

}  // namespace

resource_budget detect_budget(const budget_probe& where) {
  resource_budget b;
  std::string root = where.root == "/" ? std::string() : strip_trailing_slash(where.root);
  std::vector<std::string> mem_notes;
  std::vector<std::string> cpu_notes;

  // Physical RAM: MemTotal, else sysconf (the same number on Linux, via sysinfo).
  std::string meminfo_file = root + "/proc/meminfo";
  meminfo mi;
  if (auto text = read_text(meminfo_file)) {
    mi.total = meminfo_field(*text, "MemTotal");
    mi.available = meminfo_field(*text, "MemAvailable");
    if (!mi.total) {
      mem_notes.push_back("ignored " + meminfo_file + ": no MemTotal line in kB");
    }
  }
  std::string ram_source = "physical RAM";
  if (mi.total && *mi.total > 0) {
    b.physical_bytes = *mi.total;
  } else {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0) {
      b.physical_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
      ram_source = "physical RAM (sysconf)";
    } else {
      b.physical_bytes = uint64_t{1} << 30;
      ram_source = "a guessed 1 GiB (neither /proc/meminfo nor sysconf gave physical RAM)";
    }
  }

  auto cg = find_cgroups(root + "/proc/self", root);
  std::optional<cgroup_dir> mem_cg;
  std::optional<cgroup_dir> cpu_cg;
  if (!cg) {
    mem_notes.push_back("no cgroup information (" + cg.err().message + ")");
    cpu_notes.push_back("no cgroup information (" + cg.err().message + ")");
  } else {
    mem_cg = cg->memory;
    cpu_cg = cg->cpu;
    mem_notes.insert(mem_notes.end(), cg->notes.begin(), cg->notes.end());
    cpu_notes.insert(cpu_notes.end(), cg->notes.begin(), cg->notes.end());
  }

  // Memory: the smallest cgroup limit, unless physical RAM is smaller still.
  std::optional<found_limit<uint64_t>> mem_limit;
  if (mem_cg) {
    mem_limit = read_memory_limit(*mem_cg, mem_notes);
  }
  if (mem_limit && mem_limit->value < b.physical_bytes) {
    b.memory_bytes = mem_limit->value;
    b.memory_source = mem_limit->source;
    b.memory_used_bytes = read_memory_usage(mem_cg->version, mem_limit->dir);
  } else {
    b.memory_bytes = b.physical_bytes;
    b.memory_source = ram_source;
    if (mem_limit) {
      b.memory_source += "; " + mem_limit->source + " (" + format_bytes(mem_limit->value) +
                         ") is larger";
    }
    if (mi.total && mi.available && *mi.available <= *mi.total) {
      b.memory_used_bytes = *mi.total - *mi.available;
    }
  }
  b.memory_source += join_notes(mem_notes);

  // Threads: ceil(quota) within [1, cores], else the cores.
  auto [n_cores, cores_how] = online_cores();
  if (where.n_cores && *where.n_cores > 0) {
    n_cores = *where.n_cores;
    cores_how = "budget_probe.n_cores";
  }
  b.n_cores = n_cores;
  std::string cores_source = std::to_string(n_cores) + " cores from " + cores_how;
  std::optional<found_limit<double>> quota;
  if (cpu_cg) {
    quota = read_cpu_quota(*cpu_cg, cpu_notes);
  }
  if (quota) {
    b.cpu_quota = quota->value;
    double up = std::ceil(quota->value - 1e-9);
    if (up < static_cast<double>(n_cores)) {
      b.threads = std::max(1, static_cast<int>(up));
      b.threads_source = quota->source;
    } else {
      b.threads = n_cores;
      b.threads_source = cores_source + "; " + quota->source + " (" +
                         format_cpus(quota->value) + " CPUs) is larger";
    }
  } else {
    b.threads = n_cores;
    b.threads_source = cores_source;
  }
  b.threads_source += join_notes(cpu_notes);
  return b;
}

std::string describe(const resource_budget& b) {
  return "budget: memory " + format_bytes(b.memory_bytes) + " (" + b.memory_source +
         "), threads " + std::to_string(b.threads) + " (" + b.threads_source + ")";
}

result<uint64_t> kv_budget_bytes(uint64_t device_memory, double memory_utilization,
                                 uint64_t weight_bytes, uint64_t buffer_bytes,
                                 std::optional<uint64_t> kv_cache_memory, uint64_t min_kv_bytes) {
  if (!(memory_utilization > 0.0 && memory_utilization <= 1.0)) {
    return make_error("memory_utilization (%g) must be in (0, 1]", memory_utilization);
  }
  if (kv_cache_memory) {
    if (*kv_cache_memory > device_memory) {
      return make_error("kv_cache_memory (%s, %llu bytes) is more than the device's memory "
                        "(%s, %llu bytes)",
                        format_bytes(*kv_cache_memory).c_str(),
                        static_cast<unsigned long long>(*kv_cache_memory),
                        format_bytes(device_memory).c_str(),
                        static_cast<unsigned long long>(device_memory));
    }
    if (*kv_cache_memory < min_kv_bytes) {
      return make_error("kv_cache_memory (%s) cannot hold one sequence of KV (%s)",
                        format_bytes(*kv_cache_memory).c_str(), format_bytes(min_kv_bytes).c_str());
    }
    return *kv_cache_memory;
  }
  long double share = static_cast<long double>(device_memory) * memory_utilization;
  uint64_t budget = share >= static_cast<long double>(UINT64_MAX)
                        ? UINT64_MAX
                        : static_cast<uint64_t>(std::floor(share));
  uint64_t fixed = saturating_add(weight_bytes, buffer_bytes);
  uint64_t need = saturating_add(fixed, min_kv_bytes);
  if (budget < need) {
    return make_error(
        "memory_utilization %.2f of %s = %s cannot hold the weights (%s) + buffers (%s) + one "
        "sequence of KV (%s)",
        memory_utilization, format_bytes(device_memory).c_str(), format_bytes(budget).c_str(),
        format_bytes(weight_bytes).c_str(), format_bytes(buffer_bytes).c_str(),
        format_bytes(min_kv_bytes).c_str());
  }
  return budget - fixed;
}

}  // namespace baton
