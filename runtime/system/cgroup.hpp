// The process's cgroups and the limits they set. Cgroups are found from
// /proc/self/cgroup and /proc/self/mountinfo, v1, v2 and hybrid hosts alike, and every
// ancestor up to the mount point is read (the smallest limit wins). Every reader takes a
// root prefix so tests can point it at a fake tree; a malformed file is skipped and a
// note says so. Apart from budget.cpp, which combines these limits with physical RAM
// and the cores into a budget, because reading cgroupfs is a subject of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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

/// The process's memory and CPU cgroups, from `proc_self_dir`/cgroup and /mountinfo;
/// mount points are prefixed with `fs_root`. Errors only when those files are unreadable.
result<cgroup_paths> find_cgroups(const std::string& proc_self_dir, const std::string& fs_root);

/// One limit along the ancestor walk; `value` is bytes or CPUs.
template <class V>
struct found_limit {
  V value;
  std::string source;
  std::string dir;
};

/// The smallest memory limit along `d`'s ancestors ("max" and v1's "unlimited" are
/// none); notes name the files skipped as malformed.
std::optional<found_limit<uint64_t>> read_memory_limit(const cgroup_dir& d,
                                                       std::vector<std::string>& notes);

/// Memory in use in the cgroup folder `dir` of a v`version` hierarchy, when readable.
std::optional<uint64_t> read_memory_usage(int version, const std::string& dir);

/// The smallest CPU quota (in CPUs) along `d`'s ancestors; notes as read_memory_limit.
std::optional<found_limit<double>> read_cpu_quota(const cgroup_dir& d,
                                                  std::vector<std::string>& notes);

}  // namespace baton
