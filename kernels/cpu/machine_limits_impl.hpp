// Internal to kernels/cpu: what the SIMD twins of machine_limits (machine_limits_avx2.cpp,
// machine_limits_avx512.cpp) export to machine_limits.cpp, and the cut of a buffer into
// streams that every reader shares (so every reader sums the same words).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace baton::cpu::detail {

/// Bytes of one stream's step: four 64-byte lines.
constexpr size_t read_step = 256;

/// How a reader cuts p[n] into n_streams parts: each stream_len(n, n_streams) bytes (a
/// multiple of read_step), stream s starting at s · len; the bytes past n_streams · len are
/// the tail, summed word by word (sum_words).
inline size_t stream_len(size_t n, int n_streams) {
  return n / static_cast<size_t>(n_streams) / read_step * read_step;
}

/// Σ of the n / 8 little-endian 64-bit words of p[n], wrapping.
inline uint64_t sum_words(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    s += w;
  }
  return s;
}

/// What a peak loop did: its operations (1 multiply-accumulate = 2) and a sum of its
/// accumulators, which the caller keeps so that no loop is optimized away.
struct peak_run {
  double ops = 0;
  uint64_t checksum = 0;
};

// -- per-isa entry points (each defined in its twin's file) -----------------------

uint64_t read_sum_avx2(int prefetch_bytes, bool to_l2, int n_streams, const uint8_t* p,
                       size_t n);
uint64_t read_sum_avx512(int prefetch_bytes, bool to_l2, int n_streams, const uint8_t* p,
                         size_t n);

/// `iters` rounds of independent int8 dot products / f32 FMAs on registers seeded from
/// `seed` (unknown to the compiler, so nothing folds).
peak_run int8_peak_avx2(int64_t iters, uint32_t seed);
peak_run f32_peak_avx2(int64_t iters, uint32_t seed);
peak_run int8_peak_avx512(int64_t iters, uint32_t seed);
peak_run f32_peak_avx512(int64_t iters, uint32_t seed);

}  // namespace baton::cpu::detail
