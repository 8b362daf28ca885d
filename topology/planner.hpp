// The planner: a parsed topology checked against a model and an MPI world (ranks, devices,
// NCCL's one-rank-per-GPU rule, layer coverage), "auto" stages placed, and every stage's
// memory planned (the numbers come from topology/memory_plan.hpp). Its own header so
// that reading or writing a topology file (topology_file.hpp) does not bring placement.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/system/device.hpp"
#include "runtime/system/error.hpp"
#include "topology/memory_plan.hpp"
#include "topology/topology_file.hpp"

namespace baton {

/// The world a topology is placed in: its ranks, their hosts and their devices.
struct placement_env {
  int32_t world_size = 1;                      ///< MPI ranks
  /// The host of each rank (after bootstrap); empty: all ranks on one host.
  std::vector<std::string> rank_hosts;
  /// Describes `device` ("cpu", "cuda:1") on `rank`.
  /// Unset: query_local_device (every rank is taken to look like this host).
  std::function<device_info(int32_t rank, const std::string& device)> query_device;
};

/// A world of `world_size` ranks on this host, each device described by query_local_device.
placement_env local_placement_env(int32_t world_size);

/// Validates the topology against the model and the world, resolves "auto" (balancing
/// per-stage time, embedding and output head counted, within each budget) and plans
/// memory. Errors name file:line, the field and what was expected.
result<pipeline_plan> plan_pipeline(const topology& t, const model& m, const placement_env& env);

}  // namespace baton
