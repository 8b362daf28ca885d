// A pipeline stage on the CPU: layers [first, last) of a Llama model run on a thread
// pool over the stage's own kv_storage, one batch at a time — the unit a shard runs on
// "cpu", and what the single-process engine runs with every layer. The first stage
// embeds token ids; the last applies the final norm and the output head (tied or
// untied) to the rows that need logits. Attention always reads the current chunk's own
// K/V back from the cache after rounding to the cache type, so one-batch prefill,
// chunked prefill and token-by-token decode compute bit-identical values. It implements
// stage_compute, as cuda_stage does for CUDA devices.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/compute/batch.hpp"
#include "runtime/compute/kv_storage.hpp"
#include "runtime/compute/row_claims.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/model/model_config.hpp"

namespace baton {

class cpu_stage final : public stage_compute {
 public:
  /// Layers o.first_layer..o.last_layer of o.m with o.n_blocks KV blocks of o.kv_type,
  /// on o.n_threads threads with the o.kernels kernels. The model must hold those layers.
  explicit cpu_stage(const stage_compute_options& o);

  /// The weights a CPU stage over layers [first, last) of m copies into its own memory
  /// (stage_compute_options::repack): every matmul weight of its layers, and the head on
  /// the last stage. Their n_bytes are what such a stage holds beyond its KV.
  static std::vector<const tensor_info*> owned_tensors(const model& m, int64_t first,
                                                       int64_t last);

  bool first_stage() const { return first_ == 0; }
  bool last_stage() const { return last_ == model_->config().n_layer; }
  int64_t first_layer() const { return first_; }
  int64_t last_layer() const { return last_; }

  /// hidden [n_tokens, n_embd]: the input activations (ignored by the first stage,
  /// which embeds b.token) and, on return, the output activations. The last stage
  /// writes logits [n_logits, n_vocab] for the rows marked in b.logits, in batch order.
  void run(const batch& b, std::vector<float>& hidden, std::vector<float>& logits);

  using stage_compute::forward;
  /// run() on io.host; fails only when the activations arrived in device memory.
  result<void> forward(const batch& b, stage_activations& io,
                       std::vector<float>& logits) override;
  std::string describe() const override { return "cpu"; }
  result<byte_buffer> export_kv(int64_t layer,
                                         std::span<const int32_t> blocks) const override {
    return kv_.export_rows(layer, blocks);
  }
  result<void> import_kv(int64_t layer, std::span<const int32_t> blocks,
                         std::span<const uint8_t> rows) override {
    return kv_.import_rows(layer, blocks, rows);
  }

 private:
  /// One weight of a matmuls call and where its output goes: y [n_tokens, w's n_out].
  struct product {
    const tensor_info* w;
    float* y;
  };
  /// y = x[n_tokens, n_in] · Wᵀ for every product (weights of the same n_in that read the
  /// same x: q, k, v or gate, up): x converted and prepared once per weight type, then one
  /// pass of the pool whose threads take chunks of output rows, of every product, as
  /// they get to them — a thread whose reads run slower takes fewer. make_row(t), when
  /// given, first writes row t of x (a norm, silu × up): in the conversion's pass, by the
  /// thread that converts the row, so that no pass of one thread precedes it.
  void matmuls(std::initializer_list<product> ps, const float* x, int64_t n_tokens,
               const std::function<void(int64_t t)>& make_row = nullptr);
  /// Where one weight type's conversion of x goes: rows of xs bytes from xq_at in xq_,
  /// prepared rows of pb bytes (0: none) from prep_at in the prepared buffer.
  struct converted {
    ggml_type type;
    size_t xq_at, xs, prep_at, pb;
  };
  /// matmuls' conversions: one per weight type among ps (conv_of: each product's).
  struct conversion_plan {
    std::array<converted, 4> conv{};
    std::array<int, 4> conv_of{};
    int n_conv = 0;
    size_t xq_bytes = 0, prep_bytes = 0;
  };
  conversion_plan plan_conversions(std::initializer_list<product> ps, int64_t n_tokens) const;
  /// Writes (make_row) and converts x's rows as `plan` says: on this thread for a few
  /// rows (decode), else a row at a time to whichever of the pool's threads is free
  /// (each_token). prep: the 64-aligned prepared buffer.
  void convert_rows(const conversion_plan& plan, const float* x, int64_t n_in, int64_t n_tokens,
                    const std::function<void(int64_t t)>& make_row, uint8_t* prep);
  /// f(t) for each token t < n_tokens (each touching its own rows only): on this thread
  /// for a few (decode), else a token at a time to whichever of the pool's threads is free.
  void each_token(int64_t n_tokens, const std::function<void(int64_t t)>& f);
  /// Starts claims_' round over the products' output rows (matmuls says how).
  void share_rows(std::initializer_list<product> ps);
  /// Copies this stage's owned_tensors into weights_ (in the packed layout where isa_ has
  /// one), and lets go of their pages of the file mapping.
  void copy_weights();
  /// The layout copy_weights gives t: packed, in blocks or not, where isa_ has it.
  cpu::weight_layout layout_for(const tensor_info& t) const;
  void attention(const batch& b, int64_t il, const float* q, float* out);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  int64_t first_;
  int64_t last_;
  cpu::thread_pool pool_;
  kv_storage kv_;
  cpu::isa isa_;
  std::vector<float> rope_freqs_;  // [n_rot / 2] or empty
  // weights read from a copy instead of the file mapping: one arena (2 MiB pages where the
  // kernel gives them, and no rounding up per tensor), each tensor's place in it and layout
  struct owned_weight {
    const uint8_t* data;
    cpu::weight_layout layout;
  };
  std::unique_ptr<uint8_t, huge_page_free> weights_arena_;
  std::unordered_map<const tensor_info*, owned_weight> weights_;
  // scratch, grown to the largest batch seen
  std::vector<float> cur_, q_, k_, v_, attn_, gate_, up_, rope_cs_;
  std::vector<uint8_t> xq_, prepared_;
  std::vector<row_claims::range> chunks_;
  row_claims claims_;
};

}  // namespace baton
