// Internal to matmul_avx2.cpp (compiled with its AVX2 flags); included nowhere else.
// What the AVX2 dot products share: sums of 8 lanes (floats in a fixed tree), i16 ones
// for vpmaddwd, the software prefetch of weights a prefetch distance ahead, and f16
// scales read as floats.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace baton::cpu::detail {

namespace {

// -- shared pieces of the dot products --------------------------------------------

/// Σ of 8 lanes in a fixed tree.
inline float hsum(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline int32_t hsum_epi32(__m256i v) {
  alignas(32) int32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), v);
  int32_t s = 0;
  for (int32_t x : l) {
    s += x;
  }
  return s;
}

inline __m256i ones16() { return _mm256_set1_epi16(1); }

/// Zeroes a tile's accumulators, two an element.
template <int NR, int NT>
inline void zero_tile(__m256 (&acc)[NR][NT][2]) {
  for (int r = 0; r < NR; ++r) {
    for (int t = 0; t < NT; ++t) {
      acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    }
  }
}

/// How far ahead of the weights being read they are prefetched (see avx512/common.hpp:
/// from DRAM the hardware prefetcher alone falls behind once activations fill L1).
constexpr int64_t prefetch_distance = 8192;

/// Prefetches the lines of [p, p + bytes) a prefetch distance ahead, into L2 (as
/// avx512/common.hpp: into L1 each prefetch held one of L1's few miss buffers). Zen 4,
/// decode from DRAM, one thread, into L1 -> into L2, GB/s at n_in 2048 / 8192: Q8_0 19-21 /
/// 11.5 -> 22-25 / 24-26, F16 21 / 12 -> 24-25 / 23-25, Q4_0 14 / 11 -> 14 / 14.5-15.
inline void prefetch_ahead(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + prefetch_distance + o), _MM_HINT_T1);
  }
}

/// 8 copies of an f16 scale as floats.
inline __m256 bcast_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

}  // namespace

}  // namespace baton::cpu::detail
