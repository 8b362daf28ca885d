// The float operations of a Llama layer besides matmul: rmsnorm, rope (GGUF's llama
// layout: adjacent pairs, Llama 3 frequency factors), SiLU-gated product, softmax, and
// causal attention of one query head over a paged K/V cache. Scalar code with a fixed
// order of operations: a value depends only on its own inputs, never on batch or
// thread count.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.hpp"

namespace baton::cpu {

/// y[n] = x[n] / sqrt(mean(x²) + eps) × w[n]   (sum of squares in double, as ggml)
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

/// cs[n_rot] = (cos θ_i, sin θ_i) for i < n_rot/2 at position `pos`, θ_i = pos ×
/// base^(−2i/n_rot) / factor_i, computed as ggml does (θ multiplied step by step in
/// float). `freq_factors` may be null.
void rope_cache(int32_t pos, int64_t n_rot, float freq_base, const float* freq_factors,
                float* cs);

/// Rotates the first n_rot values of x as adjacent pairs (x[2i], x[2i+1]) by cs.
void rope_apply(float* x, int64_t n_rot, const float* cs);

/// y[n] = silu(gate[n]) × up[n]
void silu_mul(const float* gate, const float* up, float* y, int64_t n);

/// x[n] = softmax(x[n]) in place (max subtracted, sum in double).
void softmax(float* x, int64_t n);

/// Where one layer's cached K or V rows live: `blocks[b]` points at block b of a
/// sequence's block table; within a block, position p % block_size, KV head h starts at
/// ((p % block_size) × n_head_kv + h) × head_dim elements of `type` (f16 or f32).
struct kv_view {
  const void* const* blocks;
  int64_t block_size;
  int64_t n_head_kv;
  int64_t head_dim;
  ggml_type type;
};

/// Bytes of one cached element: f16 or f32.
inline int64_t kv_elem_bytes(const kv_view& kv) { return kv.type == ggml_type::f16 ? 2 : 4; }

/// The cached row of KV head `h` at position `p`.
inline const uint8_t* kv_row(const kv_view& kv, int64_t p, int64_t h) {
  const auto* block = static_cast<const uint8_t*>(kv.blocks[p / kv.block_size]);
  return block + (((p % kv.block_size) * kv.n_head_kv + h) * kv.head_dim) * kv_elem_bytes(kv);
}

/// The cached rows of KV head `h` at positions 0, 1, 2, ... in turn: kv_row's rows
/// without its division by the block size for each (a 64-bit idiv a key was a tenth of
/// the AVX2 attention's time).
class kv_cursor {
 public:
  kv_cursor(const kv_view& kv, int64_t h)
      : blocks_(kv.blocks),
        block_size_(kv.block_size),
        stride_(kv.n_head_kv * kv.head_dim * kv_elem_bytes(kv)),
        head_at_(h * kv.head_dim * kv_elem_bytes(kv)) {}

  /// The next position's row.
  const uint8_t* next() {
    if (left_ == 0) {
      row_ = static_cast<const uint8_t*>(*blocks_++) + head_at_;
      left_ = block_size_;
    }
    const uint8_t* r = row_;
    row_ += stride_;
    --left_;
    return r;
  }

 private:
  const void* const* blocks_;
  int64_t block_size_;
  int64_t stride_;   // bytes from a position's row to the next one's, within a block
  int64_t head_at_;  // bytes from a block's start to head h's row of its first position
  const uint8_t* row_ = nullptr;
  int64_t left_ = 0;  // rows left in the current block
};

/// out[head_dim] = Σ_p softmax_p(scale × q·k_p) v_p over positions p in [0, n_kv) of KV
/// head `kv_head`. With f16 K, q is rounded to f16 first (as llama.cpp's f16 dot).
/// `scratch` holds n_kv floats.
void attention_head(const float* q, const kv_view& k, const kv_view& v, int64_t kv_head,
                    int64_t n_kv, float scale, float* scratch, float* out);

/// attention_head with AVX2/FMA/F16C (ops_avx2.cpp): same steps, 8-lane sums, fused
/// multiply-adds and exp_avx2, so equal to the reference within float rounding. Needs an
/// AVX2 CPU.
void attention_head_avx2(const float* q, const kv_view& k, const kv_view& v, int64_t kv_head,
                         int64_t n_kv, float scale, float* scratch, float* out);

/// attention_head_avx2 for n_q query heads that share KV head `kv_head` (q and out: n_q
/// heads one after another): the same bits for each head, each key's and value's row
/// converted once for the group. `scratch` holds n_q × n_kv floats. Needs an AVX2 CPU.
void attention_group_avx2(const float* q, int64_t n_q, const kv_view& k, const kv_view& v,
                          int64_t kv_head, int64_t n_kv, float scale, float* scratch,
                          float* out);

/// attention_group_avx2 on 16 lanes (ops_avx512.cpp): the same bits for each head, two
/// keys' score chains in one register, 64 dimensions of values a pass. Needs an AVX-512
/// CPU.
void attention_group_avx512(const float* q, int64_t n_q, const kv_view& k, const kv_view& v,
                            int64_t kv_head, int64_t n_kv, float scale, float* scratch,
                            float* out);

/// y[n] = e^x[n] with AVX2/FMA, within 2 ulps of the exact value (ops_avx2.cpp): the
/// softmax of attention_head_avx2 and silu_mul_avx2 use it. y may be x.
void exp_avx2(const float* x, float* y, int64_t n);

/// silu_mul with exp_avx2's e^x, 8 elements at a time: within a few ulps of silu_mul.
/// Every element goes through the same operations, wherever it falls in the row.
void silu_mul_avx2(const float* gate, const float* up, float* y, int64_t n);

/// silu_mul_avx2 on 16 lanes (ops_avx512.cpp): the same operations, so the same bits for
/// every element. Needs an AVX-512 CPU.
void silu_mul_avx512(const float* gate, const float* up, float* y, int64_t n);

}  // namespace baton::cpu
