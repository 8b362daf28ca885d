// The planner: a parsed topology checked against a model and an MPI world (ranks, devices,
// NCCL's one-rank-per-GPU rule, layer coverage), "auto" stages placed, and every stage's
// memory planned (the numbers come from topology/memory_plan.hpp). Its own header so
// that reading or writing a topology file (topology_file.hpp) does not bring placement.
#pragma once

#include "runtime/system/error.hpp"
#include "topology/memory_plan.hpp"
#include "topology/topology_file.hpp"

namespace baton {

/// Validates the topology against the model and the world, resolves "auto" (balancing
/// per-stage time, embedding and output head counted, within each budget) and plans
/// memory. Errors name file:line, the field and what was expected.
result<pipeline_plan> plan_pipeline(const topology& t, const model& m, const placement_env& env);

}  // namespace baton
