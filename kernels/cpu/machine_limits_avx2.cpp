// The AVX2 twin of machine_limits: a 256-bit reader (one to four streams, optional
// software prefetch), the int8 peak as the AVX2 kernels compute byte dot products
// (vpmaddubsw to 16-bit pairs, vpmaddwd by ones to 32-bit, vpaddd: 32 multiply-accumulates
// per three instructions on ymm) and the f32 peak as vfmadd on ymm (8 lanes × 2 flops).
// Eight independent accumulators: sixteen ymm registers hold them with the inputs.
#include <immintrin.h>

#include "kernels/cpu/machine_limits_impl.hpp"

namespace baton::cpu::detail {

namespace {

constexpr int n_acc = 8;

/// acc += per 32-bit lane Σ of four u8(a) · s8(b) products, as the AVX2 kernels form them
/// (vpmaddubsw, vpmaddwd by ones, vpaddd). Written as asm: the products do not depend on
/// acc, so as intrinsics the compiler would form them once for all accumulators (and GCC
/// 12 spills accumulators of such a loop to the stack).
inline void dot_step(__m256i& acc, __m256i a, __m256i b, __m256i ones) {
  __m256i t;
  asm("vpmaddubsw %[b], %[a], %[t]\n\t"
      "vpmaddwd %[ones], %[t], %[t]\n\t"
      "vpaddd %[t], %[acc], %[acc]"
      : [acc] "+x"(acc), [t] "=&x"(t)
      : [a] "x"(a), [b] "x"(b), [ones] "x"(ones));
}

/// The word sum of p[n] read in S streams of 256-bit loads, prefetching `pf` bytes ahead
/// in each stream when PF (into L2 when L2, else into L1).
template <int S, bool PF, bool L2>
uint64_t read_sum_256(const uint8_t* p, size_t n, size_t pf) {
  const size_t len = stream_len(n, S);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < len; i += read_step) {
    for (int s = 0; s < S; ++s) {
      const uint8_t* q = p + static_cast<size_t>(s) * len + i;
      if constexpr (PF) {
        // an address past the buffer is fine for a prefetch (it never faults), but not
        // for pointer arithmetic: computed as an integer
        const uintptr_t ahead = reinterpret_cast<uintptr_t>(q) + pf;
        for (size_t o = 0; o < read_step; o += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(ahead + o), L2 ? _MM_HINT_T1 : _MM_HINT_T0);
        }
      }
      const auto* v = reinterpret_cast<const __m256i*>(q);
      a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(v + 0));
      a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(v + 1));
      a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(v + 2));
      a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(v + 3));
      a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(v + 4));
      a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(v + 5));
      a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(v + 6));
      a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(v + 7));
    }
  }
  const __m256i a = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t l[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), a);
  const size_t done = S * len;
  return l[0] + l[1] + l[2] + l[3] + sum_words(p + done, n - done);
}

}  // namespace

uint64_t read_sum_avx2(int prefetch_bytes, bool to_l2, int n_streams, const uint8_t* p,
                       size_t n) {
  const auto pf = static_cast<size_t>(prefetch_bytes);
  const auto read = [&]<int S>() {
    if (prefetch_bytes == 0) {
      return read_sum_256<S, false, false>(p, n, pf);
    }
    return to_l2 ? read_sum_256<S, true, true>(p, n, pf) : read_sum_256<S, true, false>(p, n, pf);
  };
  switch (n_streams) {
    case 1:
      return read.template operator()<1>();
    case 2:
      return read.template operator()<2>();
    case 4:
      return read.template operator()<4>();
  }
  __builtin_trap();
}

peak_run int8_peak_avx2(int64_t iters, uint32_t seed) {
  // small bytes, so vpmaddubsw's 16-bit pair sums never saturate
  const __m256i a = _mm256_set1_epi32(static_cast<int>(seed & 0x0f0f0f0fu));  // u8
  const __m256i b = _mm256_set1_epi32(static_cast<int>((seed >> 4) & 0x07070707u));  // s8
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[n_acc];
#pragma GCC unroll 8
  for (int k = 0; k < n_acc; ++k) {
    acc[k] = _mm256_set1_epi32(k);
  }
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int k = 0; k < n_acc; ++k) {
      dot_step(acc[k], a, b, ones);
    }
  }
  __m256i s = acc[0];
#pragma GCC unroll 8
  for (int k = 1; k < n_acc; ++k) {
    s = _mm256_add_epi32(s, acc[k]);
  }
  alignas(32) uint32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), s);
  uint32_t sum = 0;
  for (uint32_t x : l) {
    sum += x;
  }
  // 32 byte products per step, 2 ops each
  return {static_cast<double>(iters) * n_acc * 32 * 2, sum};
}

peak_run f32_peak_avx2(int64_t iters, uint32_t seed) {
  // x ← x·a + b with a just below 1 settles at b / (1 − a): no overflow, no subnormals
  const __m256 a = _mm256_set1_ps(0.999f + static_cast<float>(seed & 1) * 1e-4f);
  const __m256 b = _mm256_set1_ps(1e-3f);
  __m256 acc[n_acc];
#pragma GCC unroll 8
  for (int k = 0; k < n_acc; ++k) {
    acc[k] = _mm256_set1_ps(static_cast<float>(k));
  }
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int k = 0; k < n_acc; ++k) {
      acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    }
  }
  __m256 s = acc[0];
#pragma GCC unroll 8
  for (int k = 1; k < n_acc; ++k) {
    s = _mm256_add_ps(s, acc[k]);
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, s);
  float sum = 0;
  for (float x : l) {
    sum += x;
  }
  return {static_cast<double>(iters) * n_acc * 8 * 2, static_cast<uint64_t>(sum)};
}

}  // namespace baton::cpu::detail
