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

/// A profile file: {"device": ..., "threads": ..., "fixed_s": ..., ...} as calibrate writes.
result<device_profile> read_profile(const std::string& path);

}  // namespace baton::cli
