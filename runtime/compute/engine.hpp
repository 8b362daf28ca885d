// A single-process engine: one model, every layer in one stage, a paged KV cache and a
// thread pool; sequences are fed tokens in batches that may mix many sequences, chunked
// prefill and decode. `baton logits`, `baton bench model`, `baton bench batch`'s measure
// of the actors' overhead and the tests use it. `baton run` does not: it goes through the
// actor pipeline (launch/job/start_job), whose shards run a stage_compute (cpu_stage or
// cuda_stage) instead.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "runtime/compute/batch.hpp"
#include "runtime/compute/cpu_stage.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/serving/block_allocator.hpp"

namespace baton {

struct engine_options {
  int n_threads = 2;
  ggml_type kv_type = ggml_type::f16;
  cpu::isa kernels = cpu::best_isa();
  bool repack = true;            ///< stage_compute_options::repack (--no-repack: false)
  int64_t n_ctx = 4096;          ///< max tokens per sequence
  int32_t n_seq_max = 1;         ///< sequences the cache is sized for
  int32_t block_size = 16;
  int64_t max_batch_tokens = 512;  ///< prefill chunk size
};

/// One sequence's state: its tokens so far and its block table.
struct sequence {
  std::vector<int32_t> tokens;       ///< every token fed so far (positions 0..n-1)
  std::vector<int32_t> block_table;  ///< KV blocks holding those positions
};

/// A request to append tokens to a sequence within one batch.
struct feed_item {
  sequence* seq;
  std::span<const int32_t> tokens;
  bool want_logits = true;  ///< logits after the last of these tokens
};

class engine {
 public:
  /// Validates options against the model (n_ctx within the training context, ...).
  static result<std::unique_ptr<engine>> create(std::shared_ptr<const model> m,
                                                engine_options opts);

  const model& get_model() const { return *model_; }
  const model_config& config() const { return model_->config(); }
  const engine_options& options() const { return opts_; }

  /// Appends each item's tokens to its sequence in one batch (all items together must
  /// fit max_batch_tokens) and returns the logits [n_vocab] of every item that wants
  /// them, in item order. Errors: a sequence past n_ctx, the KV cache full.
  result<std::vector<std::vector<float>>> feed(std::span<const feed_item> items);

  /// Feeds a long prompt to one sequence in chunks of max_batch_tokens (or `chunk`)
  /// and returns the logits after its last token.
  result<std::vector<float>> prefill(sequence& s, std::span<const int32_t> tokens,
                                     int64_t chunk = 0);

  /// Frees a sequence's blocks; it may be reused empty.
  void release(sequence& s);

  int32_t n_free_blocks() const { return blocks_.n_free(); }

 private:
  engine(std::shared_ptr<const model> m, engine_options opts);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  engine_options opts_;
  block_allocator blocks_;
  cpu_stage stage_;  // every layer
  batch batch_;
  std::vector<float> hidden_;
  std::vector<float> logits_;
};

}  // namespace baton
