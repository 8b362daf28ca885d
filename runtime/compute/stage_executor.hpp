// Runs layers [first, last) of a Llama model on one batch: the unit a shard actor runs.
// A batch holds tokens of many sequences at arbitrary positions. The first stage embeds
// token ids; the last applies the final norm and the output head (tied or untied) to
// the rows that need logits. Attention always reads the current chunk's own K/V back
// from the cache after rounding to the cache type, so one-batch prefill, chunked
// prefill and token-by-token decode compute bit-identical values.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/compute/kv_cache.hpp"
#include "runtime/model/model_config.hpp"

namespace baton {

/// One forward step's input, shared by every stage (the router builds it).
struct batch {
  std::vector<int32_t> token;   ///< [n_tokens] ids (read by the first stage)
  std::vector<int32_t> pos;     ///< [n_tokens] position of each token in its sequence
  std::vector<int32_t> seq;     ///< [n_tokens] index into block_tables
  std::vector<uint8_t> logits;  ///< [n_tokens] 1 where the last stage computes logits
  std::vector<const std::vector<int32_t>*> block_tables;  ///< per sequence of the batch

  int64_t n_tokens() const { return static_cast<int64_t>(pos.size()); }
  int64_t n_logits() const;
  /// Appends one token of sequence `seq_index`.
  void add(int32_t seq_index, int32_t token_id, int32_t position, bool want_logits);
  void clear();
};

class stage_executor {
 public:
  stage_executor(std::shared_ptr<const model> m, int64_t first_layer, int64_t last_layer,
                 kv_storage& kv, cpu::thread_pool& pool, cpu::isa kernels);

  bool first_stage() const { return first_ == 0; }
  bool last_stage() const { return last_ == model_->config().n_layer; }
  int64_t first_layer() const { return first_; }
  int64_t last_layer() const { return last_; }

  /// hidden [n_tokens, n_embd]: the input activations (ignored by the first stage,
  /// which embeds b.token) and, on return, the output activations. The last stage
  /// writes logits [n_logits, n_vocab] for the rows marked in b.logits, in batch order.
  void forward(const batch& b, std::vector<float>& hidden, std::vector<float>& logits);

 private:
  /// y[n_tokens, n_out] = x[n_tokens, n_in] · Wᵀ, split by output rows over the pool.
  void matmul(const tensor_info& w, const float* x, int64_t n_tokens, float* y);
  void attention(const batch& b, int64_t il, const float* q, float* out);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  int64_t first_;
  int64_t last_;
  kv_storage& kv_;
  cpu::thread_pool& pool_;
  cpu::isa isa_;
  std::vector<float> rope_freqs_;  // [n_rot / 2] or empty
  // scratch, grown to the largest batch seen
  std::vector<float> cur_, q_, k_, v_, attn_, gate_, up_, rope_cs_;
  std::vector<uint8_t> xq_;
};

}  // namespace baton
