// One run of C concurrent requests through a local_server, as `baton bench batch` and its
// overhead run make them: synthetic prompts, a reader thread per stream stamping each
// event, and what the clients and the stages saw (TTFT, TPOT, decode and output tokens/s,
// each stage's busy share, the KV pool's use, preemptions), in the simulator's terms.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "actors/local_server.hpp"
#include "runtime/sim/pipeline_sim.hpp"
#include "runtime/system/error.hpp"

namespace baton::cli {

using clock_type = std::chrono::steady_clock;

/// The median of `v` (0 when empty).
double median(std::vector<double> v);
double seconds(clock_type::time_point a, clock_type::time_point b);
int64_t to_us(clock_type::time_point t);

/// A synthetic prompt, distinct for every (round, request): ids as llama-bench uses
/// them, arbitrary but fixed for repeatability.
std::vector<int32_t> make_prompt(int32_t n_prompt, uint64_t salt, int64_t n_vocab);

/// One run of C concurrent requests.
struct batch_run {
  double ttft_mean_s = 0;
  double t_first_s = 0;   ///< every request has its first token
  double t_end_s = 0;     ///< the last final event
  double decode_tokens_per_s = 0;
  double output_tokens_per_s = 0;
  uint64_t token_digest = 0;  ///< FNV-1a over every stream's tokens, in request order
  clock_type::time_point t0;
  sim_dist ttft_s;              ///< over the requests (the simulator's summary)
  sim_dist tpot_s;              ///< (last - first token) / (tokens - 1), per request
  std::vector<double> stage_busy;  ///< [stage] share of the run it computed
  double kv_usage_mean = 0;     ///< time-weighted share of KV blocks in use
  uint64_t preemptions = 0;
};

/// `n_streams` greedy requests of `n_prompt` tokens generating `n_gen` each (EOS ignored);
/// an error when one ends otherwise. `json_schema` (JSON text; empty: none) constrains
/// every request's output, so the grammar's masks are part of what is timed.
result<batch_run> run_batch(local_server& srv, int32_t n_streams, int32_t n_prompt,
                            int32_t n_gen, uint64_t round, int64_t n_vocab,
                            const std::string& json_schema = "");

}  // namespace baton::cli
