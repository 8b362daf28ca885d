// Internal to kernels/cuda: the launch arithmetic and warp primitives the kernels share.
// Every reduction here has one fixed order given its length, so a value never depends
// on how many rows or tokens were launched with it.
#pragma once

#include "kernels/cuda/portability.cuh"

#include <cstdint>

namespace baton::cuda::detail {

constexpr int warp_size = 32;
constexpr unsigned full_mask = 0xffffffffu;

/// Threads of the 1-D element-wise kernels, and the most CTAs they launch (grid-stride
/// loops cover the rest).
constexpr int threads_1d = 256;
constexpr int64_t max_ctas_1d = 1 << 20;

inline unsigned grid_1d(int64_t n) {
  const int64_t ctas = (n + threads_1d - 1) / threads_1d;
  return static_cast<unsigned>(ctas < max_ctas_1d ? ctas : max_ctas_1d);
}

/// The first index and stride of a grid-stride loop.
__device__ inline int64_t grid_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

/// Σ over the warp's lanes by an xor butterfly. Each step adds the same two values on
/// both lanes of a pair (a + b == b + a exactly), so every lane ends with the same sum,
/// and the pairing depends on lane ids only.
template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = warp_size / 2; o > 0; o >>= 1) {
    v += __shfl_xor_sync(full_mask, v, o);
  }
  return v;
}

/// dst[bytes] = src[bytes], the warp's lanes on consecutive words (or bytes when src is
/// not 4-byte aligned: rows of 18- or 210-byte blocks need not be), so each load of
/// the warp touches one contiguous span. dst is 16-byte aligned shared memory.
__device__ inline void warp_copy(uint8_t* dst, const uint8_t* src, int bytes, int lane) {
  int done = 0;
  if ((reinterpret_cast<uintptr_t>(src) & 3u) == 0) {
    const int words = bytes / 4;
    const auto* s = reinterpret_cast<const uint32_t*>(src);
    auto* d = reinterpret_cast<uint32_t*>(dst);
    for (int i = lane; i < words; i += warp_size) {
      d[i] = __ldg(s + i);
    }
    done = 4 * words;
  }
  for (int i = done + lane; i < bytes; i += warp_size) {
    dst[i] = __ldg(src + i);
  }
}

/// Whether p is aligned for T.
template <class T>
bool aligned_for(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(T) == 0;
}

}  // namespace baton::cuda::detail
