// memory_plan.hpp: the step buffer bytes, the KV block counts, a process's memory plan (KV gets
// what the budget leaves, never more than its sequences need) and the pipeline's block count.
#include "topology/memory_plan.hpp"

#include <algorithm>
#include <limits>

#include "runtime/system/budget.hpp"

namespace baton {

uint64_t step_buffer_bytes(const model& m, int64_t batch_tokens, int64_t logit_rows,
                           bool with_metadata) {
  const model_config& c = m.config();
  // activations of a full batch, a row of logits per sequence, the parsed metadata
  return static_cast<uint64_t>(batch_tokens) * c.step_bytes_per_token() +
         static_cast<uint64_t>(logit_rows) * static_cast<uint64_t>(c.n_vocab) * 4 +
         (with_metadata ? 4 * m.file().data_offset() : 0);
}

int64_t kv_blocks_for(int64_t n_tokens, int32_t block_size) {
  BATON_ASSERT(block_size > 0);
  return (n_tokens + block_size - 1) / block_size;
}

int64_t kv_blocks_needed(int64_t n_seqs, int64_t n_ctx, int32_t block_size) {
  return kv_blocks_for(n_ctx, block_size) * n_seqs;
}

uint64_t layer_weight_bytes(const model& m, int64_t il) {
  const auto& lw = m.weights().layers.at(static_cast<size_t>(il));
  uint64_t n = 0;
  for (const tensor_info* t : {lw.attn_norm, lw.wq, lw.wk, lw.wv, lw.wo, lw.ffn_norm,
                               lw.ffn_gate, lw.ffn_up, lw.ffn_down}) {
    n += t ? t->n_bytes : 0;
  }
  return n;
}

uint64_t cpu_stage_kv_bytes(const model& m,
                            const std::vector<std::pair<int64_t, int64_t>>& cpu_layers,
                            int32_t n_blocks, int32_t block_size, ggml_type kv_type) {
  uint64_t per_token = 0;
  for (const auto& [first, last] : cpu_layers) {
    per_token += m.config().kv_bytes_per_token(kv_type, first, last);
  }
  return per_token * static_cast<uint64_t>(block_size) * static_cast<uint64_t>(n_blocks);
}

int32_t kv_blocks_in(uint64_t kv_bytes, uint64_t kv_bytes_per_token, int32_t block_size) {
  BATON_ASSERT(kv_bytes_per_token > 0 && block_size > 0);
  const uint64_t per_block = kv_bytes_per_token * static_cast<uint64_t>(block_size);
  return static_cast<int32_t>(
      std::min<uint64_t>(kv_bytes / per_block, std::numeric_limits<int32_t>::max()));
}

int32_t kv_blocks_for_requests(int32_t n_seqs, int32_t n_tokens, int32_t block_size) {
  const auto per_seq = static_cast<int32_t>(kv_blocks_for(n_tokens, block_size));
  return n_seqs * per_seq + n_seqs + 8;
}

result<process_memory> plan_process_memory(const model& m, const process_memory_request& r,
                                           uint64_t memory_bytes) {
  process_memory out;
  out.kv_bytes_per_token = m.config().kv_bytes_per_token(r.kv_type);
  out.kv_bytes_per_block = out.kv_bytes_per_token * static_cast<uint64_t>(r.block_size);
  out.buffer_bytes = step_buffer_bytes(m, r.batch_tokens, r.n_seqs, true);
  const int64_t needed = kv_blocks_needed(r.n_seqs, r.n_ctx, r.block_size);
  if (r.planned) {
    out.n_blocks = static_cast<int32_t>(needed);
    return out;
  }
  auto kv = kv_budget_bytes(memory_bytes, r.memory_utilization, m.weight_bytes(), out.buffer_bytes,
                            r.kv_cache_bytes,
                            out.kv_bytes_per_token * static_cast<uint64_t>(r.n_ctx));
  if (!kv) {
    return kv.err();
  }
  out.n_blocks = static_cast<int32_t>(
      std::min<int64_t>(kv_blocks_in(*kv, out.kv_bytes_per_token, r.block_size), needed));
  return out;
}

int32_t pipeline_kv_blocks(const pipeline_plan& plan, int32_t cap) {
  const pipeline_spec& p = plan.resolved.pipeline;
  int64_t n_blocks = std::min<int64_t>(
      plan.n_blocks, kv_blocks_needed(p.max_num_seqs, p.max_model_len, p.block_size));
  if (cap > 0) {
    n_blocks = std::min<int64_t>(n_blocks, cap);
  }
  return static_cast<int32_t>(n_blocks);
}

}  // namespace baton
