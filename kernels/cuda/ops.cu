// The row and element-wise parts of ops.cuh: get_rows, rms_norm, rope, silu_mul, add,
// softmax_rows. Per-element arithmetic is kernels/ops_math.hpp, per-block decoding
// kernels/blocks.hpp, as on the CPU. Row reductions (rms_norm, softmax_rows) run one CTA
// of row_threads per row: thread i sums elements i, i + row_threads, ... and the CTA adds
// the threads' sums by a fixed halving tree, so a row's result depends on n alone.
#include <math.h>

#include "kernels/blocks.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"
#include "kernels/ops_math.hpp"

namespace baton::cuda {

namespace {

constexpr int row_threads = 256;

// -- get_rows ------------------------------------------------------------------------

/// One thread per block of the gathered rows; table rows need not be aligned.
template <class Block, int N>
__global__ void get_rows_blocks(const uint8_t* table, size_t row_bytes_, int64_t blocks_per_row,
                                const int32_t* ids, int64_t n_blocks, float* out) {
  for (int64_t i = detail::grid_index(); i < n_blocks; i += detail::grid_stride()) {
    const int64_t id = ids[i / blocks_per_row];
    Block b;
    memcpy(&b, table + id * row_bytes_ + (i % blocks_per_row) * sizeof(Block), sizeof b);
    dequantize_block(b, out + i * N);
  }
}

template <class T>
__device__ float decode_elem(const uint8_t* p);
template <>
__device__ float decode_elem<float>(const uint8_t* p) {
  float v;
  memcpy(&v, p, sizeof v);
  return v;
}
struct f16_tag {};
struct bf16_tag {};
template <>
__device__ float decode_elem<f16_tag>(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, sizeof v);
  return fp16_to_fp32(v);
}
template <>
__device__ float decode_elem<bf16_tag>(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, sizeof v);
  return bf16_to_fp32(v);
}

template <class T, int Bytes>
__global__ void get_rows_elems(const uint8_t* table, int64_t n, const int32_t* ids,
                               int64_t n_elems, float* out) {
  for (int64_t i = detail::grid_index(); i < n_elems; i += detail::grid_stride()) {
    const int64_t id = ids[i / n];
    out[i] = decode_elem<T>(table + (id * n + i % n) * Bytes);
  }
}

template <class Block, int N>
cudaError_t launch_get_rows(const void* table, int64_t n, const int32_t* ids, int64_t n_ids,
                            float* out, cudaStream_t stream) {
  const int64_t n_blocks = n_ids * (n / N);
  BATON_LAUNCH(detail::grid_1d(n_blocks), detail::threads_1d, 0, stream, get_rows_blocks<Block, N>)(
      static_cast<const uint8_t*>(table), n / N * sizeof(Block), n / N, ids, n_blocks, out);
  return cudaGetLastError();
}

template <class T, int Bytes>
cudaError_t launch_get_elems(const void* table, int64_t n, const int32_t* ids, int64_t n_ids,
                             float* out, cudaStream_t stream) {
  BATON_LAUNCH(detail::grid_1d(n * n_ids), detail::threads_1d, 0, stream, get_rows_elems<T, Bytes>)(
      static_cast<const uint8_t*>(table), n, ids, n * n_ids, out);
  return cudaGetLastError();
}

// -- row reductions --------------------------------------------------------------------

/// Σ of the CTA's `v` by a fixed halving tree in `buf[row_threads]`; every thread gets it.
template <class T>
__device__ T cta_sum(T v, T* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = row_threads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      buf[threadIdx.x] += buf[threadIdx.x + s];
    }
    __syncthreads();
  }
  const T total = buf[0];
  __syncthreads();  // buf may be reused right after
  return total;
}

/// max of the CTA's `v` (order does not matter for a max).
__device__ float cta_max(float v, float* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = row_threads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) {
      buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + s]);
    }
    __syncthreads();
  }
  const float m = buf[0];
  __syncthreads();
  return m;
}

__global__ void __launch_bounds__(row_threads)
    rms_norm_kernel(const float* x, const float* w, float* y, int64_t n, float eps) {
  __shared__ double buf[row_threads];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * n;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += row_threads) {
    sum += static_cast<double>(xr[i]) * static_cast<double>(xr[i]);
  }
  const float scale = rms_inv_scale(cta_sum(sum, buf), n, eps);
  for (int64_t i = threadIdx.x; i < n; i += row_threads) {
    yr[i] = rms_scaled(xr[i], scale, w[i]);
  }
}

__global__ void __launch_bounds__(row_threads) softmax_kernel(float* x, int64_t n) {
  __shared__ double dbuf[row_threads];
  __shared__ float fbuf[row_threads];
  float* xr = x + static_cast<int64_t>(blockIdx.x) * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += row_threads) {
    m = fmaxf(m, xr[i]);
  }
  const float max = cta_max(m, fbuf);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += row_threads) {
    xr[i] = softmax_exp(xr[i], max);
    sum += xr[i];
  }
  const float inv = softmax_inv(cta_sum(sum, dbuf));
  for (int64_t i = threadIdx.x; i < n; i += row_threads) {
    xr[i] *= inv;
  }
}

// -- element-wise ------------------------------------------------------------------------

struct rope_shape {
  int64_t n_tokens;
  int64_t n_heads;
  int64_t head_dim;
  int64_t row_stride;
  int64_t n_rot;
};

/// One thread per rotated pair: i = (t × n_heads + h) × n_rot / 2 + pair.
__global__ void rope_kernel(float* x, rope_shape s, const float* cs) {
  const int64_t pairs = s.n_rot / 2;
  const int64_t n = s.n_tokens * s.n_heads * pairs;
  for (int64_t i = detail::grid_index(); i < n; i += detail::grid_stride()) {
    const int64_t j = 2 * (i % pairs);
    const int64_t h = (i / pairs) % s.n_heads;
    const int64_t t = i / pairs / s.n_heads;
    float* xp = x + t * s.row_stride + h * s.head_dim + j;
    const float* c = cs + t * s.n_rot + j;
    rope_rotate(xp[0], xp[1], c[0], c[1]);
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = detail::grid_index(); i < n; i += detail::grid_stride()) {
    y[i] = silu_times(gate[i], up[i]);
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = detail::grid_index(); i < n; i += detail::grid_stride()) {
    x[i] += y[i];
  }
}

}  // namespace

cudaError_t get_rows(ggml_type type, const void* table, int64_t n, const int32_t* ids,
                     int64_t n_ids, float* out, cudaStream_t stream) {
  if (n <= 0 || n_ids < 0 || n % traits(type).block_size != 0) {
    return cudaErrorInvalidValue;
  }
  if (n_ids == 0) {
    return cudaSuccess;
  }
  switch (type) {
    case ggml_type::f32:
      return launch_get_elems<float, 4>(table, n, ids, n_ids, out, stream);
    case ggml_type::f16:
      return launch_get_elems<f16_tag, 2>(table, n, ids, n_ids, out, stream);
    case ggml_type::bf16:
      return launch_get_elems<bf16_tag, 2>(table, n, ids, n_ids, out, stream);
    case ggml_type::q4_0:
      return launch_get_rows<block_q4_0, qk4_0>(table, n, ids, n_ids, out, stream);
    case ggml_type::q8_0:
      return launch_get_rows<block_q8_0, qk8_0>(table, n, ids, n_ids, out, stream);
    case ggml_type::q4_k:
      return launch_get_rows<block_q4_k, qk_k>(table, n, ids, n_ids, out, stream);
    case ggml_type::q6_k:
      return launch_get_rows<block_q6_k, qk_k>(table, n, ids, n_ids, out, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t n_rows,
                     float eps, cudaStream_t stream) {
  if (n <= 0 || n_rows < 0 || n_rows > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (n_rows == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(static_cast<unsigned>(n_rows), row_threads, 0, stream, rms_norm_kernel)(
      x, w, y, n, eps);
  return cudaGetLastError();
}

cudaError_t rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                 int64_t row_stride, int64_t n_rot, const float* cs, cudaStream_t stream) {
  if (n_tokens < 0 || n_heads < 0 || n_rot < 0 || n_rot % 2 != 0 || n_rot > head_dim ||
      row_stride < n_heads * head_dim) {
    return cudaErrorInvalidValue;
  }
  const int64_t n = n_tokens * n_heads * (n_rot / 2);
  if (n == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(detail::grid_1d(n), detail::threads_1d, 0, stream, rope_kernel)(
      x, rope_shape{n_tokens, n_heads, head_dim, row_stride, n_rot}, cs);
  return cudaGetLastError();
}

cudaError_t silu_mul(const float* gate, const float* up, float* y, int64_t n,
                     cudaStream_t stream) {
  if (n < 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(detail::grid_1d(n), detail::threads_1d, 0, stream, silu_mul_kernel)(gate, up, y, n);
  return cudaGetLastError();
}

cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n < 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(detail::grid_1d(n), detail::threads_1d, 0, stream, add_kernel)(x, y, n);
  return cudaGetLastError();
}

cudaError_t softmax_rows(float* x, int64_t n, int64_t n_rows, cudaStream_t stream) {
  if (n <= 0 || n_rows < 0 || n_rows > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (n_rows == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(static_cast<unsigned>(n_rows), row_threads, 0, stream, softmax_kernel)(x, n);
  return cudaGetLastError();
}

}  // namespace baton::cuda
