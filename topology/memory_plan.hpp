// The memory plan: the one place that decides how many bytes one forward step's scratch
// takes and how many KV blocks a process or a planned pipeline gets, as vLLM sizes them
// (weights + buffers + KV within memory_utilization of the device; KV gets the rest, and
// never more than the sequences it serves can use). The engine's budget (launch/cli's
// `load`), the planner's per-stage plan, pipeline_job's router block count, the
// local_server's default and `baton bench batch` all call these functions, so a number
// is computed once; the planner's search over layer splits stays in planner.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/ggml_type.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/system/error.hpp"
#include "topology/layer_range.hpp"
#include "topology/topology_file.hpp"

namespace baton {

/// Bytes of one forward step's scratch: the activations of `batch_tokens` tokens, one row
/// of f32 logits for each of `logit_rows` sequences (the stage that holds the head; 0
/// elsewhere) and, with `with_metadata`, the parsed GGUF metadata and tokenizer (strings,
/// maps: about 4x their bytes on disk; once per process).
uint64_t step_buffer_bytes(const model& m, int64_t batch_tokens, int64_t logit_rows,
                           bool with_metadata);

/// Blocks that hold `n_tokens` tokens: ceil(n_tokens / block_size).
int64_t kv_blocks_for(int64_t n_tokens, int32_t block_size);

/// Blocks `n_seqs` sequences of `n_ctx` tokens can use at most: KV beyond that only holds
/// memory (on CPU, RAM no one else gets).
int64_t kv_blocks_needed(int64_t n_seqs, int64_t n_ctx, int32_t block_size);

/// Whole blocks in `kv_bytes` at `kv_bytes_per_token` (> 0); at most INT32_MAX.
int32_t kv_blocks_in(uint64_t kv_bytes, uint64_t kv_bytes_per_token, int32_t block_size);

/// Blocks for `n_seqs` requests of exactly `n_tokens` tokens each (prompt + generated, known
/// in advance, as in `baton bench batch`): their blocks, one spare each and 8 more, so no
/// run waits on a block.
int32_t kv_blocks_for_requests(int32_t n_seqs, int32_t n_tokens, int32_t block_size);

/// Weight bytes of layer `il` (its norms and matrices, as stored).
uint64_t layer_weight_bytes(const model& m, int64_t il);

/// KV bytes the CPU stages of `stages` hold in `n_blocks` blocks: what a reshard's new
/// stages allocate on the host while the old ones still hold theirs.
uint64_t cpu_stage_kv_bytes(const model& m, const std::vector<std::pair<int64_t, int64_t>>& cpu_layers,
                            int32_t n_blocks, int32_t block_size, ggml_type kv_type);

/// What one process that runs every layer on its CPU asks of the memory budget.
struct process_memory_request {
  ggml_type kv_type = ggml_type::f16;
  int32_t block_size = 16;
  int64_t n_ctx = 4096;                 ///< tokens of one sequence
  int64_t batch_tokens = 512;           ///< tokens of one forward step
  int32_t n_seqs = 1;                   ///< sequences at once (rows of logits, KV needed)
  double memory_utilization = 0.9;      ///< of the budget's memory
  std::optional<uint64_t> kv_cache_bytes;  ///< explicit KV size; overrides the utilization
  /// The stages are planned on their own devices (a topology, a GPU): the host budget
  /// bounds nothing here, and n_blocks is what the sequences need (the plan may give fewer).
  bool planned = false;
};

/// One process's memory plan.
struct process_memory {
  uint64_t buffer_bytes = 0;            ///< step_buffer_bytes, metadata included
  uint64_t kv_bytes_per_token = 0;      ///< every layer
  uint64_t kv_bytes_per_block = 0;
  int32_t n_blocks = 0;                 ///< what the budget holds, at most what n_seqs need
};

/// Plans one process's KV within `memory_bytes` (cgroup limit, else RAM). The error is
/// kv_budget_bytes' (the caller adds the budget's source and which flag to change).
result<process_memory> plan_process_memory(const model& m, const process_memory_request& r,
                                           uint64_t memory_bytes);

/// The memory plan of one stage.
struct stage_plan {
  layer_range layers;                          ///< resolved (never automatic)
  uint64_t weight_bytes = 0;                   ///< its layers, plus token_embd on the first
                                               ///< stage and output_norm + head on the last
  uint64_t buffer_bytes = 0;                   ///< one step's scratch
  uint64_t kv_bytes_per_token = 0;             ///< its layers only
  uint64_t budget_bytes = 0;                   ///< memory_utilization x device memory
  uint64_t kv_bytes = 0;                       ///< what the budget leaves for KV
  int64_t kv_capacity_tokens = 0;              ///< kv_bytes / kv_bytes_per_token, in whole blocks
  int32_t n_blocks = 0;
  int32_t threads = 0;                         ///< resolved
  std::string budget_source;                   ///< "memory_utilization 0.45 of 24.0 GiB (RAM)"
};

/// A planned pipeline (plan_pipeline in topology/planner.hpp makes it).
struct pipeline_plan {
  topology resolved;                           ///< layers resolved, defaults filled in
  std::vector<stage_plan> stages;
  int64_t capacity_tokens = 0;                 ///< min over stages
  int32_t n_blocks = 0;                        ///< min over stages
};

/// The router's block count for a planned pipeline: the plan's, but no more than
/// max_num_seqs sequences of max_model_len can use (on CPU the rest would only hold RAM),
/// and no more than `cap` when it is > 0 (the command needs no more).
int32_t pipeline_kv_blocks(const pipeline_plan& plan, int32_t cap);

}  // namespace baton
