// Cluster descriptions (TOML): the hosts a topology would run on when they are not this
// machine — how many ranks and GPUs each host has, each device's memory and speeds (a
// spec sheet's estimate or a calibrated profile), and the links within and between hosts.
// `baton plan --cluster C.toml` places and simulates a topology on it instead of probing
// this host. Ranks are numbered host after host, as mpirun's --map-by slot places them.
//
//   [[host]]
//   name = "dgx"          # label; `count` hosts get dgx-0, dgx-1, ...
//   count = 2             # identical hosts (default 1)
//   ranks = 8             # MPI ranks on each (default: gpus, else 1)
//   gpus = 8              # cuda:0 .. cuda:7 (default 0)
//   gpu = "h100-sxm"      # a spec sheet (runtime/sim/device_specs) or a profile file
//   gpu_memory = "80GB"   # default: the spec sheet's
//   cpu = "cpu.json"      # the cpu stages' profile (baton bench calibrate)
//   cpu_memory = "64GiB"  # default 64 GiB
//   cpu_threads = 2       # default 2
//
//   [links]               # each {latency = "10us", bandwidth = "100Gbit/s"}
//   within_host = ...     # stage to stage, two ranks of one host (NVLink, shared memory)
//   between_hosts = ...   # stage to stage across hosts
//   control_within_host = ...    # the router (rank 0) to a stage's rank on its host
//   control_between_hosts = ...  # ... on another host
#pragma once

#include <string>
#include <vector>

#include "runtime/sim/pipeline_sim.hpp"
#include "runtime/system/error.hpp"
#include "topology/planner.hpp"

namespace baton {

struct cluster_host {
  std::string name;
  int32_t first_rank = 0;
  int32_t ranks = 1;
  int32_t gpus = 0;
  device_profile gpu;
  uint64_t gpu_memory = 0;
  std::string gpu_basis;       ///< where the GPU's numbers come from
  device_profile cpu;
  bool has_cpu_profile = false;
  uint64_t cpu_memory = uint64_t{64} << 30;
  int32_t cpu_threads = 2;
};

struct cluster {
  std::string path;
  std::vector<cluster_host> hosts;  ///< one per host (a `count` expanded)
  sim_link within_host{5e-6, 100e9};
  sim_link between_hosts{15e-6, 12.5e9};
  sim_link control_within_host{30e-6, 10e9};
  sim_link control_between_hosts{60e-6, 10e9};

  int32_t world_size() const;
  /// The host of `rank` (< world_size()).
  const cluster_host& host_of(int32_t rank) const;
  /// A stage's device profile: the host's GPU kind or its cpu profile (`fallback` when the
  /// host names none).
  device_profile profile_of(int32_t rank, const std::string& device,
                            const device_profile& fallback) const;
  /// Activations from a stage on rank `a` to one on rank `b` (free within a rank).
  sim_link link(int32_t a, int32_t b) const;
  /// The router's descriptor from rank 0 to `rank` (free on rank 0).
  sim_link control(int32_t rank) const;
};

result<cluster> parse_cluster_file(const std::string& path);
result<cluster> parse_cluster_text(std::string_view text, const std::string& name,
                                   const std::string& folder = "");

/// The placement world of a cluster: its ranks, their hosts and devices.
placement_env cluster_placement_env(const cluster& c);

}  // namespace baton
