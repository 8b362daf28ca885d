// What `baton plan --simulate` and `baton bench calibrate` share: a model's stages as the
// simulator sees them (weights streamed, flops and KV read per token), and the device
// profile file calibrate writes and the simulation reads.
#pragma once

#include <string>
#include <vector>

#include "runtime/sim/pipeline_sim.hpp"
#include "topology/memory_plan.hpp"

namespace baton::cli {

/// The simulator's stage for layers [first, last) of `m` (with the head when `last` is the
/// model's last layer) on `device`.
sim_stage sim_stage_of(const model& m, int64_t first, int64_t last, ggml_type kv_type,
                       const device_profile& device);

/// A profile file: {"device": ..., "threads": ..., "fixed_s": ..., ...} as calibrate writes,
/// with optional "link" and "control" objects ({"latency_s", "bytes_per_s"}).
struct profile_file {
  device_profile device;
  sim_link link;      ///< between stages (default: free)
  sim_link control;   ///< router <-> a stage (default: free)
  bool has_link = false;
  bool has_control = false;
};
result<profile_file> read_profile(const std::string& path);

/// What `baton plan --simulate` runs: `plan` of `m` with `profile`, for each stream
/// count of `streams` with `prompt` and `gen` tokens; the table (or JSON) on stdout.
int print_simulation(const pipeline_plan& plan, const model& m, const profile_file& profile,
                     const std::vector<int32_t>& streams, int32_t prompt, int32_t gen,
                     bool json);

}  // namespace baton::cli
