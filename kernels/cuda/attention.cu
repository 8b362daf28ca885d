// The paged K/V part of ops.cuh: kv_store and attention.
//
// attention grid: one CTA per (token, query head), blockIdx.x = t × n_head + h, of
// attn_warps warps. Lanes split head_dim (lane l holds dims l, l + 32, ...); warp w takes
// positions w, w + attn_warps, ... of the token's n_kv. Two passes over the positions,
// as the CPU reference's softmax needs its normalizer before a probability is rounded to
// f16: pass 1 keeps each warp's running max and Σ e^(s − max) (in double, rescaled when
// the max moves), combined over warps in warp order; pass 2 recomputes each score (the
// same operations, so the same bits), forms its probability as the CPU does, and
// accumulates p × v per warp; the warps' outputs are then added in warp order. A score
// is the lanes' partial dots reduced by the fixed butterfly. Every step depends on the
// token's n_kv, block table and data only, so a token computes the same bits alone or
// in any batch. K is read twice and V once; context length is unbounded.
#include <math.h>

#include "kernels/blocks.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"
#include "kernels/ops_math.hpp"

namespace baton::cuda {

namespace {

using detail::warp_size;

constexpr int attn_warps = 4;
constexpr int max_head_dim = 256;
constexpr int dims_per_lane = max_head_dim / warp_size;

template <class T>
__device__ float load_kv(const T* p);
template <>
__device__ float load_kv<float>(const float* p) {
  return __ldg(p);
}
template <>
__device__ float load_kv<uint16_t>(const uint16_t* p) {
  return fp16_to_fp32(__ldg(p));
}

/// The cached row of KV head `kvh` at position p of a sequence, or null when its block
/// table names a block outside the cache (the result is then NaN, never a stray read).
template <class T>
__device__ const T* kv_row(const paged_kv& kv, const void* base, const int32_t* table, int64_t p,
                           int64_t kvh) {
  const int64_t block = table[p / kv.block_size];
  if (block < 0 || block >= kv.n_blocks) {
    return nullptr;
  }
  const int64_t slot = block * kv.block_size + p % kv.block_size;
  return static_cast<const T*>(base) + (slot * kv.n_head_kv + kvh) * kv.head_dim;
}

/// scale × q·k for one position; every lane returns the same value.
template <class T>
__device__ float score(const float* qv, const T* k, int64_t head_dim, float scale, int lane) {
  if (k == nullptr) {
    return NAN;
  }
  float part = 0.0f;
#pragma unroll
  for (int j = 0; j < dims_per_lane; ++j) {
    const int64_t i = lane + j * warp_size;
    if (i < head_dim) {
      part += qv[j] * load_kv(k + i);
    }
  }
  return detail::warp_sum(part) * scale;
}

struct attn_args {
  const float* q;
  int64_t n_head;
  int64_t group;  // query heads per KV head
  const int32_t* tables;
  const int32_t* table_offset;
  const int32_t* n_kv;
  float scale;
  float* out;
};

template <class T>
__global__ void __launch_bounds__(warp_size* attn_warps)
    attention_kernel(const paged_kv kv, const attn_args a) {
  __shared__ float warp_max[attn_warps];
  __shared__ double warp_sum_exp[attn_warps];
  __shared__ float warp_out[attn_warps][max_head_dim];
  const int64_t t = blockIdx.x / a.n_head;
  const int64_t h = blockIdx.x % a.n_head;
  const int64_t kvh = h / a.group;
  const int64_t d = kv.head_dim;
  const int lane = threadIdx.x % warp_size;
  const int wid = threadIdx.x / warp_size;
  const int64_t n = a.n_kv[t];
  const int32_t* table = a.tables + a.table_offset[t];
  const float* q = a.q + (t * a.n_head + h) * d;
  const bool f16 = kv.type == ggml_type::f16;

  float qv[dims_per_lane];
#pragma unroll
  for (int j = 0; j < dims_per_lane; ++j) {
    const int64_t i = lane + j * warp_size;
    qv[j] = i < d ? (f16 ? round_f16(q[i]) : q[i]) : 0.0f;
  }

  // pass 1: this warp's max and Σ e^(s − max)
  float m = -INFINITY;
  double sum = 0.0;
  for (int64_t p = wid; p < n; p += attn_warps) {
    const float s = score(qv, kv_row<T>(kv, kv.k, table, p, kvh), d, a.scale, lane);
    if (s > m) {  // a NaN score never moves the max; pass 2 carries it to the output
      sum *= exp(static_cast<double>(m) - static_cast<double>(s));
      m = s;
    }
    sum += static_cast<double>(softmax_exp(s, m));
  }
  if (lane == 0) {
    warp_max[wid] = m;
    warp_sum_exp[wid] = sum;
  }
  __syncthreads();
  float max = -INFINITY;
  for (int w = 0; w < attn_warps; ++w) {
    max = fmaxf(max, warp_max[w]);
  }
  double total = 0.0;
  for (int w = 0; w < attn_warps; ++w) {
    if (warp_max[w] != -INFINITY) {
      total += warp_sum_exp[w] * exp(static_cast<double>(warp_max[w]) - static_cast<double>(max));
    }
  }
  const float inv = softmax_inv(total);

  // pass 2: Σ p × v over this warp's positions
  float acc[dims_per_lane] = {};
  for (int64_t p = wid; p < n; p += attn_warps) {
    const float s = score(qv, kv_row<T>(kv, kv.k, table, p, kvh), d, a.scale, lane);
    float pr = softmax_exp(s, max) * inv;
    if (f16) {
      pr = round_f16(pr);
    }
    const T* v = kv_row<T>(kv, kv.v, table, p, kvh);
#pragma unroll
    for (int j = 0; j < dims_per_lane; ++j) {
      const int64_t i = lane + j * warp_size;
      if (i < d) {
        acc[j] += pr * (v ? load_kv(v + i) : NAN);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < dims_per_lane; ++j) {
    const int64_t i = lane + j * warp_size;
    if (i < d) {
      warp_out[wid][i] = acc[j];
    }
  }
  __syncthreads();
  float* out = a.out + (t * a.n_head + h) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float o = warp_out[0][i];
    for (int w = 1; w < attn_warps; ++w) {
      o += warp_out[w][i];
    }
    out[i] = o;
  }
}

template <class T>
__global__ void kv_store_kernel(paged_kv kv, const float* k, const float* v,
                                const int32_t* slots, int64_t n_tokens) {
  const int64_t row = kv.n_head_kv * kv.head_dim;
  const int64_t n_slots = kv.n_blocks * kv.block_size;
  for (int64_t i = detail::grid_index(); i < n_tokens * row; i += detail::grid_stride()) {
    const int64_t t = i / row;
    const int64_t slot = slots[t];
    if (slot < 0 || slot >= n_slots) {
      continue;  // not a cache slot: nothing to store
    }
    const int64_t at = slot * row + i % row;
    if constexpr (sizeof(T) == 2) {
      static_cast<uint16_t*>(kv.k)[at] = fp32_to_fp16(k[i]);
      static_cast<uint16_t*>(kv.v)[at] = fp32_to_fp16(v[i]);
    } else {
      static_cast<float*>(kv.k)[at] = k[i];
      static_cast<float*>(kv.v)[at] = v[i];
    }
  }
}

bool valid_kv(const paged_kv& kv) {
  return (kv.type == ggml_type::f16 || kv.type == ggml_type::f32) && kv.k != nullptr &&
         kv.v != nullptr && kv.n_blocks > 0 && kv.block_size > 0 && kv.n_head_kv > 0 &&
         kv.head_dim > 0;
}

}  // namespace

cudaError_t kv_store(const paged_kv& kv, const float* k, const float* v, const int32_t* slots,
                     int64_t n_tokens, cudaStream_t stream) {
  if (!valid_kv(kv) || n_tokens < 0) {
    return cudaErrorInvalidValue;
  }
  if (n_tokens == 0) {
    return cudaSuccess;
  }
  const unsigned grid = detail::grid_1d(n_tokens * kv.n_head_kv * kv.head_dim);
  if (kv.type == ggml_type::f16) {
    BATON_LAUNCH(grid, detail::threads_1d, 0, stream, kv_store_kernel<uint16_t>)(
        kv, k, v, slots, n_tokens);
  } else {
    BATON_LAUNCH(grid, detail::threads_1d, 0, stream, kv_store_kernel<float>)(
        kv, k, v, slots, n_tokens);
  }
  return cudaGetLastError();
}

cudaError_t attention(const paged_kv& kv, const float* q, int64_t n_tokens, int64_t n_head,
                      const int32_t* tables, const int32_t* table_offset, const int32_t* n_kv,
                      float scale, float* out, cudaStream_t stream) {
  if (!valid_kv(kv) || kv.head_dim > max_head_dim || n_tokens < 0 || n_head <= 0 ||
      n_head % kv.n_head_kv != 0 || n_tokens * n_head > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (n_tokens == 0) {
    return cudaSuccess;
  }
  const attn_args a{q, n_head, n_head / kv.n_head_kv, tables, table_offset, n_kv, scale, out};
  const auto grid = static_cast<unsigned>(n_tokens * n_head);
  if (kv.type == ggml_type::f16) {
    BATON_LAUNCH(grid, warp_size * attn_warps, 0, stream, attention_kernel<uint16_t>)(kv, a);
  } else {
    BATON_LAUNCH(grid, warp_size * attn_warps, 0, stream, attention_kernel<float>)(kv, a);
  }
  return cudaGetLastError();
}

}  // namespace baton::cuda
