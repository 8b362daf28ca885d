// The matmul part of ops.cuh: activation conversion, the weight × activation product,
// and the per-block integer dots the tests compare with the CPU's.
//
// matmul grid: one warp per weight row, rows_per_cta warps per CTA (blockIdx.x), and a
// tile of up to max_tile tokens per CTA (blockIdx.y), so a weight row is streamed from
// memory once per tile. Lane l takes blocks l, l + 32, l + 64 ... of the row (elements,
// for float weights), adds each block's float term into one accumulator per token in
// that order, and the warp then sums its lanes by a fixed butterfly. An output's order
// of operations therefore depends on n_in alone: not on the tile it lands in, n_tokens,
// n_out or ldy. Each 32-block chunk of the row is first copied into shared memory by the
// whole warp on consecutive words (coalesced), since lanes reading their own 18..210-byte
// block would each touch a different span.
#include "kernels/blocks.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.cuh"

namespace baton::cuda {

namespace {

using detail::warp_size;

constexpr int rows_per_cta = 4;
constexpr int max_tile = 8;
constexpr int64_t max_grid_y = 65535;

// -- activation conversion ---------------------------------------------------------

BATON_HD void quantize_block(const float* x, block_q8_0& b) { quantize_block_q8_0(x, b); }
BATON_HD void quantize_block(const float* x, block_q8_k& b) { quantize_block_q8_k(x, b); }

/// Activation rows are contiguous and so are their blocks: block i of the whole batch
/// reads x[i × N ...] and writes xq + i × sizeof(Block).
template <class Block, int N>
__global__ void quantize_blocks(const float* x, uint8_t* xq, int64_t n_blocks) {
  for (int64_t i = detail::grid_index(); i < n_blocks; i += detail::grid_stride()) {
    Block b;
    quantize_block(x + i * N, b);
    memcpy(xq + i * sizeof(Block), &b, sizeof b);
  }
}

__global__ void convert_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = detail::grid_index(); i < n; i += detail::grid_stride()) {
    y[i] = fp32_to_fp16(x[i]);
  }
}

__global__ void convert_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = detail::grid_index(); i < n; i += detail::grid_stride()) {
    y[i] = fp32_to_bf16(x[i]);
  }
}

template <class Block, int N>
cudaError_t launch_quantize(const float* x, void* xq, int64_t n, cudaStream_t stream) {
  BATON_LAUNCH(detail::grid_1d(n / N), detail::threads_1d, 0, stream, quantize_blocks<Block, N>)(
      x, static_cast<uint8_t*>(xq), n / N);
  return cudaGetLastError();
}

// -- per-block float terms of the quantized dots --------------------------------------
// Each is the CPU scalar reference's per-block expression (kernels/cpu/matmul.cpp), with
// the integer parts from kernels/blocks.hpp.

struct q4_0_dot {
  using wblock = block_q4_0;
  using xblock = block_q8_0;
  __device__ static float term(const wblock& w, const xblock& x) {
    return static_cast<float>(dot_q4_0(w, x)) * fp16_to_fp32(w.d) * fp16_to_fp32(x.d);
  }
};

struct q8_0_dot {
  using wblock = block_q8_0;
  using xblock = block_q8_0;
  __device__ static float term(const wblock& w, const xblock& x) {
    return static_cast<float>(dot_q8_0(w, x)) * (fp16_to_fp32(w.d) * fp16_to_fp32(x.d));
  }
};

/// The CPU keeps ggml's eight lane sums across blocks; here a block's eight are summed
/// as integers first (exact), so the block contributes d·Σaux − dmin·Σmin.
struct q4_k_dot {
  using wblock = block_q4_k;
  using xblock = block_q8_k;
  __device__ static float term(const wblock& w, const xblock& x) {
    int32_t aux32[8];
    const int32_t sum_min = dot_q4_k(w, x, aux32);
    int32_t sum = 0;
    for (int l = 0; l < 8; ++l) {
      sum += aux32[l];
    }
    const float d = fp16_to_fp32(w.d) * x.d;
    const float dmin = fp16_to_fp32(w.dmin) * x.d;
    return d * static_cast<float>(sum) - dmin * static_cast<float>(sum_min);
  }
};

struct q6_k_dot {
  using wblock = block_q6_k;
  using xblock = block_q8_k;
  __device__ static float term(const wblock& w, const xblock& x) {
    int32_t aux32[8];
    dot_q6_k(w, x, aux32);
    int32_t sum = 0;
    for (int l = 0; l < 8; ++l) {
      sum += aux32[l];
    }
    return (fp16_to_fp32(w.d) * x.d) * static_cast<float>(sum);
  }
};

/// Where one CTA's warp works: weight row r (or none) and tokens [t0, t0 + nt).
struct tile {
  int64_t r;
  int64_t t0;
  int nt;
};

__device__ inline tile this_tile(int64_t n_out, int64_t n_tokens, int tile_tokens) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * rows_per_cta + threadIdx.x / warp_size;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * tile_tokens;
  const int64_t left = n_tokens - t0;
  return {r < n_out ? r : -1, t0, static_cast<int>(left < tile_tokens ? left : tile_tokens)};
}

/// y[t × ldy + r] for the tile: the warp's lane sums, reduced.
template <class T, int NT>
__device__ void store_tile(const tile& tl, const T* acc, float* y, int64_t ldy, int lane) {
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t < tl.nt) {
      const T s = detail::warp_sum(acc[t]);
      if (lane == 0) {
        y[(tl.t0 + t) * ldy + tl.r] = static_cast<float>(s);
      }
    }
  }
}

template <class D, int NT>
__global__ void __launch_bounds__(warp_size* rows_per_cta)
    matmul_quantized(const uint8_t* w, size_t w_stride, const uint8_t* xq, size_t x_stride,
                     float* y, int64_t n_blocks, int64_t n_out, int64_t n_tokens, int64_t ldy) {
  using wblock = typename D::wblock;
  using xblock = typename D::xblock;
  constexpr int chunk_bytes = warp_size * static_cast<int>(sizeof(wblock));
  __shared__ __align__(16) uint8_t stage[rows_per_cta][chunk_bytes];
  const tile tl = this_tile(n_out, n_tokens, NT);
  if (tl.r < 0) {
    return;  // the whole warp: only warp-level synchronization below
  }
  const int lane = threadIdx.x % warp_size;
  uint8_t* my_stage = stage[threadIdx.x / warp_size];
  const uint8_t* row = w + tl.r * w_stride;
  float acc[NT] = {};
  for (int64_t b0 = 0; b0 < n_blocks; b0 += warp_size) {
    const int nb = static_cast<int>(n_blocks - b0 < warp_size ? n_blocks - b0 : warp_size);
    __syncwarp();  // the previous chunk is read by every lane before it is overwritten
    detail::warp_copy(my_stage, row + b0 * sizeof(wblock), nb * static_cast<int>(sizeof(wblock)),
                      lane);
    __syncwarp();
    if (lane < nb) {
      const auto& wb = *reinterpret_cast<const wblock*>(my_stage + lane * sizeof(wblock));
      const uint8_t* xb = xq + (b0 + lane) * sizeof(xblock);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t < tl.nt) {
          acc[t] += D::term(wb, *reinterpret_cast<const xblock*>(xb + (tl.t0 + t) * x_stride));
        }
      }
    }
  }
  store_tile<float, NT>(tl, acc, y, ldy, lane);
}

// -- float weights -------------------------------------------------------------------

struct f32_elem {
  using type = float;
  __device__ static float get(const float* p, int64_t i) { return __ldg(p + i); }
};
struct f16_elem {
  using type = uint16_t;
  __device__ static float get(const uint16_t* p, int64_t i) { return fp16_to_fp32(__ldg(p + i)); }
};
struct bf16_elem {
  using type = uint16_t;
  __device__ static float get(const uint16_t* p, int64_t i) { return bf16_to_fp32(__ldg(p + i)); }
};

/// As ggml's float dots: float products summed in double (per lane, then the warp).
template <class E, int NT>
__global__ void __launch_bounds__(warp_size* rows_per_cta)
    matmul_float(const uint8_t* w, size_t w_stride, const uint8_t* xq, size_t x_stride, float* y,
                 int64_t n_in, int64_t n_out, int64_t n_tokens, int64_t ldy) {
  using elem = typename E::type;
  const tile tl = this_tile(n_out, n_tokens, NT);
  if (tl.r < 0) {
    return;
  }
  const int lane = threadIdx.x % warp_size;
  const auto* row = reinterpret_cast<const elem*>(w + tl.r * w_stride);
  double acc[NT] = {};
  for (int64_t i = lane; i < n_in; i += warp_size) {
    const float wv = E::get(row, i);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t < tl.nt) {
        const auto* x = reinterpret_cast<const elem*>(xq + (tl.t0 + t) * x_stride);
        acc[t] += static_cast<double>(wv * E::get(x, i));
      }
    }
  }
  store_tile<double, NT>(tl, acc, y, ldy, lane);
}

/// The launch shared by every weight type: the tile is max_tile tokens, or 1 for a
/// single token (fewer registers; the same operations for that token).
struct matmul_shape {
  size_t w_stride;
  size_t x_stride;
  int64_t n_in;
  int64_t n_out;
  int64_t n_tokens;
  int64_t ldy;
};

template <class D>
cudaError_t launch_quantized(const void* w, const void* xq, float* y, const matmul_shape& s,
                             int64_t block_size, cudaStream_t stream) {
  if (!detail::aligned_for<typename D::xblock>(xq)) {
    return cudaErrorInvalidValue;
  }
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xq);
  const int64_t n_blocks = s.n_in / block_size;
  const dim3 block(warp_size * rows_per_cta);
  if (s.n_tokens == 1) {
    const dim3 grid(static_cast<unsigned>((s.n_out + rows_per_cta - 1) / rows_per_cta), 1);
    BATON_LAUNCH(grid, block, 0, stream, matmul_quantized<D, 1>)(
        wb, s.w_stride, xb, s.x_stride, y, n_blocks, s.n_out, 1, s.ldy);
  } else {
    const dim3 grid(static_cast<unsigned>((s.n_out + rows_per_cta - 1) / rows_per_cta),
                    static_cast<unsigned>((s.n_tokens + max_tile - 1) / max_tile));
    BATON_LAUNCH(grid, block, 0, stream, matmul_quantized<D, max_tile>)(
        wb, s.w_stride, xb, s.x_stride, y, n_blocks, s.n_out, s.n_tokens, s.ldy);
  }
  return cudaGetLastError();
}

template <class E>
cudaError_t launch_float(const void* w, const void* xq, float* y, const matmul_shape& s,
                         cudaStream_t stream) {
  using elem = typename E::type;
  if (!detail::aligned_for<elem>(w) || !detail::aligned_for<elem>(xq)) {
    return cudaErrorInvalidValue;
  }
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xq);
  const dim3 block(warp_size * rows_per_cta);
  if (s.n_tokens == 1) {
    const dim3 grid(static_cast<unsigned>((s.n_out + rows_per_cta - 1) / rows_per_cta), 1);
    BATON_LAUNCH(grid, block, 0, stream, matmul_float<E, 1>)(
        wb, s.w_stride, xb, s.x_stride, y, s.n_in, s.n_out, 1, s.ldy);
  } else {
    const dim3 grid(static_cast<unsigned>((s.n_out + rows_per_cta - 1) / rows_per_cta),
                    static_cast<unsigned>((s.n_tokens + max_tile - 1) / max_tile));
    BATON_LAUNCH(grid, block, 0, stream, matmul_float<E, max_tile>)(
        wb, s.w_stride, xb, s.x_stride, y, s.n_in, s.n_out, s.n_tokens, s.ldy);
  }
  return cudaGetLastError();
}

/// Whether n_in elements of `weight` are whole blocks of it and of its activation type.
bool valid_n_in(ggml_type weight, int64_t n_in) {
  return cpu::has_matmul(weight) && n_in > 0 &&
         n_in % traits(weight).block_size == 0 &&
         n_in % traits(cpu::activation_type(weight)).block_size == 0;
}

// -- block integer dots ----------------------------------------------------------------

/// One thread per block; blocks are copied out byte-wise, rows need not be aligned.
template <class W, class X>
__device__ void load_blocks(const uint8_t* w, const uint8_t* x, int64_t i, W& wb, X& xb) {
  memcpy(&wb, w + i * sizeof(W), sizeof(W));
  memcpy(&xb, x + i * sizeof(X), sizeof(X));
}

__global__ void block_ints_kernel(ggml_type weight, const uint8_t* w, const uint8_t* x,
                                  int64_t n_blocks, int32_t* out) {
  const int64_t i = detail::grid_index();
  if (i >= n_blocks) {
    return;
  }
  int32_t aux32[8];
  switch (weight) {
    case ggml_type::q4_0: {
      block_q4_0 wb;
      block_q8_0 xb;
      load_blocks(w, x, i, wb, xb);
      out[i] = dot_q4_0(wb, xb);
      return;
    }
    case ggml_type::q8_0: {
      block_q8_0 wb;
      block_q8_0 xb;
      load_blocks(w, x, i, wb, xb);
      out[i] = dot_q8_0(wb, xb);
      return;
    }
    case ggml_type::q4_k: {
      block_q4_k wb;
      block_q8_k xb;
      load_blocks(w, x, i, wb, xb);
      out[2 * i + 1] = dot_q4_k(wb, xb, aux32);
      break;
    }
    default: {  // q6_k: the launcher admits nothing else
      block_q6_k wb;
      block_q8_k xb;
      load_blocks(w, x, i, wb, xb);
      dot_q6_k(wb, xb, aux32);
      break;
    }
  }
  int32_t sum = 0;
  for (int l = 0; l < 8; ++l) {
    sum += aux32[l];
  }
  out[weight == ggml_type::q4_k ? 2 * i : i] = sum;
}

}  // namespace

cudaError_t quantize_activations(ggml_type weight, const float* x, void* xq, int64_t n_in,
                                 int64_t n_tokens, cudaStream_t stream) {
  if (!valid_n_in(weight, n_in) || n_tokens < 0) {
    return cudaErrorInvalidValue;
  }
  if (n_tokens == 0) {
    return cudaSuccess;
  }
  const int64_t n = n_in * n_tokens;  // rows are contiguous on both sides
  switch (cpu::activation_type(weight)) {
    case ggml_type::q8_0:
      return launch_quantize<block_q8_0, qk8_0>(x, xq, n, stream);
    case ggml_type::q8_k:
      return launch_quantize<block_q8_k, qk_k>(x, xq, n, stream);
    case ggml_type::f16:
      BATON_LAUNCH(detail::grid_1d(n), detail::threads_1d, 0, stream, convert_f16)(
          x, static_cast<uint16_t*>(xq), n);
      return cudaGetLastError();
    case ggml_type::bf16:
      BATON_LAUNCH(detail::grid_1d(n), detail::threads_1d, 0, stream, convert_bf16)(
          x, static_cast<uint16_t*>(xq), n);
      return cudaGetLastError();
    default:
      return cudaMemcpyAsync(xq, x, static_cast<size_t>(n) * sizeof(float),
                             cudaMemcpyDeviceToDevice, stream);
  }
}

cudaError_t matmul(ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
                   int64_t n_out, int64_t n_tokens, int64_t ldy, cudaStream_t stream) {
  if (!valid_n_in(weight, n_in) || n_out < 0 || n_tokens < 0 || (n_tokens > 1 && ldy < n_out) ||
      (n_tokens + max_tile - 1) / max_tile > max_grid_y) {
    return cudaErrorInvalidValue;
  }
  if (n_out == 0 || n_tokens == 0) {
    return cudaSuccess;
  }
  const matmul_shape s{row_bytes(weight, static_cast<uint64_t>(n_in)),
                       cpu::activation_row_bytes(weight, n_in), n_in, n_out, n_tokens, ldy};
  const int64_t bs = traits(weight).block_size;
  switch (weight) {
    case ggml_type::q4_0:
      return launch_quantized<q4_0_dot>(w, xq, y, s, bs, stream);
    case ggml_type::q8_0:
      return launch_quantized<q8_0_dot>(w, xq, y, s, bs, stream);
    case ggml_type::q4_k:
      return launch_quantized<q4_k_dot>(w, xq, y, s, bs, stream);
    case ggml_type::q6_k:
      return launch_quantized<q6_k_dot>(w, xq, y, s, bs, stream);
    case ggml_type::f16:
      return launch_float<f16_elem>(w, xq, y, s, stream);
    case ggml_type::bf16:
      return launch_float<bf16_elem>(w, xq, y, s, stream);
    default:
      return launch_float<f32_elem>(w, xq, y, s, stream);
  }
}

cudaError_t block_dot_ints(ggml_type weight, const void* w_row, const void* x_row,
                           int64_t n_in, int32_t* out, cudaStream_t stream) {
  const bool integer = weight == ggml_type::q4_0 || weight == ggml_type::q8_0 ||
                       weight == ggml_type::q4_k || weight == ggml_type::q6_k;
  if (!integer || !valid_n_in(weight, n_in)) {
    return cudaErrorInvalidValue;
  }
  const int64_t n_blocks = n_in / traits(weight).block_size;
  BATON_LAUNCH(static_cast<unsigned>((n_blocks + 127) / 128), 128, 0, stream, block_ints_kernel)(
      weight, static_cast<const uint8_t*>(w_row), static_cast<const uint8_t*>(x_row), n_blocks,
      out);
  return cudaGetLastError();
}

}  // namespace baton::cuda
