// A discrete-event simulation of a serving pipeline (baton plan --simulate): the real
// scheduler class, with the live router's settings, decides every step; the stages and
// links are modelled. A step dispatched at time t reaches every stage with its control
// message (the router's step descriptor), stage k starts it once the descriptor, the
// previous stage's activations and the stage itself are there (stages and links serve
// in order, as the live shards and transports do), and its sampled tokens reach the
// router a result message later; then the scheduler takes them and the router dispatches
// what it can. Streams are closed loops: each submits its next request when the last one
// ends. The cost of a step on a stage is stage_cost's linear model of what the step does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/serving/scheduler.hpp"

namespace baton {

/// A device's speeds, as `baton bench calibrate` fits them (seconds = fixed + layers x
/// layer_s + max(weight_bytes / weight_bytes_per_s, (rows + half_rate_tokens) x flops per
/// row / flops_per_s) + kv_bytes / kv_bytes_per_s): a step streams its layers' weights once (decode is bound by it) or
/// is bound by its 2 x params flops per token (prefill), a roofline; attention reads every
/// attended position's K and V on top.
struct device_profile {
  std::string name = "cpu";
  double fixed_s = 0;
  double layer_s = 0;  ///< per layer of the stage, per step (kernel launches on a GPU)
  double weight_bytes_per_s = 1e10;
  double flops_per_s = 1e11;
  /// Rows per matmul at which it runs at half of flops_per_s (0: always at it): a CPU's
  /// 16-row decode step reaches a third of what a 512-token prefill does.
  double half_rate_tokens = 0;
  double kv_bytes_per_s = 1e10;
  bool estimate = false;  ///< from a spec sheet, not calibrated on the device
};

/// What one stage holds: its layers' work per step.
struct sim_stage {
  device_profile device;
  uint64_t weight_bytes = 0;      ///< streamed once per step (its layers, head, embedding)
  int64_t n_layers = 0;
  double flops_per_token = 0;     ///< 2 x its matmul parameters
  double kv_bytes_per_position = 0;  ///< K and V of one position over its layers
  double head_flops_per_row = 0;  ///< the last stage: 2 x n_vocab x n_embd per sampled row
};

/// A hop: latency plus bytes over bandwidth, one message after another; or, where
/// `baton bench link` measured it, its one-way times at several sizes interpolated (a
/// transport's time is not linear: MPI's eager and rendezvous protocols differ).
struct sim_link {
  double latency_s = 0;
  double bytes_per_s = 1e12;
  std::vector<std::pair<double, double>> points;  ///< (bytes, one-way seconds), ascending

  /// A message of `bytes` from send to arrival.
  double one_way(double bytes) const;
};

struct sim_workload {
  int32_t streams = 1;             ///< closed-loop clients
  int32_t requests_per_stream = 2;
  int32_t prompt_tokens = 128;
  int32_t gen_tokens = 64;
  double admit_s = 0;              ///< a request's way through the front end to the router
};

struct sim_setup {
  scheduler_config sched;          ///< resolved (micro_batches, n_blocks)
  std::vector<sim_stage> stages;
  std::vector<sim_link> hops;      ///< [stage k -> k + 1]; missing: free
  sim_link control;                ///< router -> a stage's descriptor; result back
  std::vector<sim_link> control_to;  ///< [stage]: its own control link; missing: `control`
  int64_t n_embd = 0;              ///< activations: n_tokens x n_embd floats per hop
  /// The router's turn for each result: from the stage's end of a step to the next step's
  /// start when one micro-batch is in flight (messages both ways in one process, the
  /// scheduler, an event per sampled row to its client): router_s + rows x router_row_s.
  double router_s = 0;
  double router_row_s = 0;
  sim_workload work;
};

/// One percentile summary.
struct sim_dist {
  double mean = 0;
  double p50 = 0;
  double p99 = 0;
};

/// Mean, median and 99th percentile (nearest rank) of `v`; zeros when empty. What the
/// simulator reports and `baton bench batch` measures, computed alike.
sim_dist distribution_of(std::vector<double> v);

struct sim_report {
  double seconds = 0;              ///< the first request's arrival to the last token
  uint64_t requests = 0;
  uint64_t prompt_tokens = 0;
  uint64_t output_tokens = 0;
  double output_tokens_per_s = 0;  ///< generated tokens / seconds
  double total_tokens_per_s = 0;   ///< (prompt + generated) / seconds
  double decode_tokens_per_s = 0;  ///< generated tokens over the time decode steps ran
  sim_dist ttft_s;
  sim_dist tpot_s;
  std::vector<double> stage_busy;  ///< [stage] share of the run it computed
  std::vector<double> hop_busy;    ///< [hop] share of the run it carried activations
  double kv_usage_mean = 0;        ///< time-weighted share of KV blocks in use
  uint64_t preemptions = 0;
  uint64_t steps = 0;
};

/// The seconds a step of `n_tokens` tokens attending `positions` positions in all, with
/// `rows` sampled rows, takes on `st`.
double stage_step_seconds(const sim_stage& st, int64_t n_tokens, int64_t positions,
                          int64_t rows);

/// Runs `setup` to the end of its workload. `trace` (when given) hears the scheduler as
/// the live router's trace does.
sim_report simulate(const sim_setup& setup,
                    const std::function<void(const trace_event&)>& trace = {});

}  // namespace baton
