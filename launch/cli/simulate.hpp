// What `baton plan --simulate` runs: a planned pipeline turned into the simulator's setup
// (each stage's work from the model, its device's profile, the links between stages and
// from the router), the table or JSON of predictions per stream count, and --search over
// the splits and micro-batch counts that fit.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "runtime/sim/pipeline_sim.hpp"
#include "runtime/sim/profile_file.hpp"
#include "topology/cluster_file.hpp"
#include "topology/memory_plan.hpp"

namespace baton::cli {

/// The simulator's stage for layers [first, last) of `m` (with the head when `last` is the
/// model's last layer) on `device`.
sim_stage sim_stage_of(const model& m, int64_t first, int64_t last, ggml_type kv_type,
                       const device_profile& device);

/// Where a plan's stages run, as the simulator sees it.
struct sim_placement {
  std::vector<device_profile> devices;  ///< [stage]
  std::vector<sim_link> hops;           ///< [stage k -> k + 1]
  std::vector<sim_link> control;        ///< [stage]: the router's descriptor to it
  std::string links;                    ///< how the links were chosen, for people
  double router_s = 0;                  ///< the router's turn (profile_file::router_s)
  double router_row_s = 0;
};

/// Every stage on the profile's device; its link between stages on different ranks and
/// its control link to ranks other than 0 (free within a rank, as in one process).
sim_placement placement_from_profile(const pipeline_plan& plan, const profile_file& p);

/// Each stage on its host's device; links by host (cluster_file.hpp). Stages on a host
/// without a cpu profile use `fallback`'s device; the router's turn is `fallback`'s.
sim_placement placement_on_cluster(const pipeline_plan& plan, const cluster& c,
                                   const profile_file& fallback);

/// The workload and output of a simulation run.
struct sim_request {
  std::vector<int32_t> streams;  ///< closed-loop clients, one run each
  int32_t prompt = 128;
  int32_t gen = 64;
  bool json = false;
  int32_t n_blocks = 0;  ///< the KV pool in blocks (0: as the plan sizes it)
};

/// Simulates `plan` for each stream count; the table (or JSON) on stdout.
int print_simulation(const pipeline_plan& plan, const model& m, const sim_placement& where,
                     const sim_request& req);

/// A topology planned and placed, or why it does not fit.
using replan_fn =
    std::function<result<std::pair<pipeline_plan, sim_placement>>(const topology& t)>;

/// --search: the planner's split, an even split and splits a hill climb finds from the
/// better of them (one layer over a boundary at a time), each with micro-batch counts from
/// 1 to 2 per stage, every candidate re-planned (memory checked) and simulated at the
/// largest stream count; the best few printed with their predictions at every count.
int print_search(const topology& given, const model& m, const replan_fn& replan,
                 const sim_request& req, int top);

}  // namespace baton::cli
