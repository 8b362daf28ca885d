// CUDA twins of the CPU kernels a Llama layer runs: activation conversion, matmul of
// F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K weights, embedding rows, rmsnorm, rope, SiLU-gated
// product, residual add, row softmax, and causal attention over a paged K/V cache with
// grouped-query heads. Every pointer is device memory; every function enqueues on
// `stream` and returns the launch's error (cudaErrorInvalidValue for bad shapes or a
// type without a kernel), never aborts.
//
// Same math as the CPU: per-block arithmetic is kernels/blocks.hpp and per-element
// arithmetic kernels/ops_math.hpp, `__host__ __device__` functions the CPU scalar
// reference calls too. Activations are converted to the weight type's partner format
// exactly as cpu::quantize_activation_row does (bit-identical bytes), and each block's
// integer dot product is exact, so a matmul differs from the CPU only in the order the
// per-block float terms are summed.
//
// Invariance: an output element depends only on its own inputs and the shapes that
// define it (n_in for a matmul, the token's n_kv for attention) — never on n_tokens,
// n_out, the batch around it or the grid. Nothing splits a reduced dimension by batch
// size, so a sequence's tokens do not depend on what it is batched with.
#pragma once

#include "kernels/cuda/portability.cuh"

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_type.hpp"

namespace baton::cuda {

/// xq row t = x[t × n_in, n_in) converted for weights of type `weight`, rows
/// cpu::activation_row_bytes(weight, n_in) apart: the same bytes
/// cpu::quantize_activation_row writes.
cudaError_t quantize_activations(ggml_type weight, const float* x, void* xq, int64_t n_in,
                                 int64_t n_tokens, cudaStream_t stream);

/// y[t × ldy + r] = dot(W row r, xq row t) for r < n_out, t < n_tokens. W: n_out rows of
/// n_in elements, row_bytes(weight, n_in) apart; xq from quantize_activations.
/// Quantized weight rows may start at any address; f32/f16/bf16 weights and xq must be
/// aligned to their element (or activation block), else cudaErrorInvalidValue.
cudaError_t matmul(ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
                   int64_t n_out, int64_t n_tokens, int64_t ldy, cudaStream_t stream);

/// The exact integer part of each block's dot product of one weight row with one
/// activation row, as cpu::block_dot_ints defines it (tests compare them bit for bit).
cudaError_t block_dot_ints(ggml_type weight, const void* w_row, const void* x_row,
                           int64_t n_in, int32_t* out, cudaStream_t stream);

/// out[i × n, n) = decoded row ids[i] of `table` (rows of n elements of `type`; f32
/// included, which makes this a row gather).
cudaError_t get_rows(ggml_type type, const void* table, int64_t n, const int32_t* ids,
                     int64_t n_ids, float* out, cudaStream_t stream);

/// y row r = x row r / sqrt(mean(x row r²) + eps) × w, rows of n.
cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t n_rows,
                     float eps, cudaStream_t stream);

/// Rotates, for every token t and head h, the first n_rot values of
/// x[t × row_stride + h × head_dim ...] as adjacent pairs by cs[t × n_rot, n_rot) (cos, sin
/// pairs from cpu::rope_cache).
cudaError_t rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                 int64_t row_stride, int64_t n_rot, const float* cs, cudaStream_t stream);

/// y[n] = silu(gate[n]) × up[n] (y may alias gate).
cudaError_t silu_mul(const float* gate, const float* up, float* y, int64_t n,
                     cudaStream_t stream);

/// x[n] += y[n]
cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream);

/// Each row of n: x = softmax(x), in place.
cudaError_t softmax_rows(float* x, int64_t n, int64_t n_rows, cudaStream_t stream);

/// One layer's paged K/V on the device: K and V each [n_blocks][block_size][n_head_kv]
/// [head_dim] of `type` (f16 or f32), the layout of runtime/compute/kv_storage.
struct paged_kv {
  void* k = nullptr;
  void* v = nullptr;
  int64_t n_blocks = 0;
  int64_t block_size = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  ggml_type type = ggml_type::f16;
};

/// Stores K and V rows [n_tokens, n_head_kv × head_dim] (rounded to the cache type) at
/// slots[t] = block × block_size + position % block_size.
cudaError_t kv_store(const paged_kv& kv, const float* k, const float* v, const int32_t* slots,
                     int64_t n_tokens, cudaStream_t stream);

/// out[t, h] = Σ_p softmax_p(scale × q[t, h]·k_p) v_p over positions p < n_kv[t] of the
/// sequence whose block table is tables[table_offset[t] ...], KV head h / (n_head /
/// n_head_kv). q and out: [n_tokens, n_head × head_dim]. Decode (one token per sequence)
/// and prefill (many, causal through n_kv) alike; with f16 K, q is rounded to f16 first.
cudaError_t attention(const paged_kv& kv, const float* q, int64_t n_tokens, int64_t n_head,
                      const int32_t* tables, const int32_t* table_offset, const int32_t* n_kv,
                      float scale, float* out, cudaStream_t stream);

}  // namespace baton::cuda
