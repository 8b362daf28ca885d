// The AVX-512 twin of machine_limits: a 512-bit reader (one to four streams, optional
// software prefetch), the int8 peak as vpdpbusd on zmm (16 lanes × 4 byte products = 64
// multiply-accumulates an instruction) and the f32 peak as vfmadd on zmm (16 lanes × 2
// flops). Sixteen independent accumulators: a dot product or FMA has a latency of about
// four cycles and two issue per cycle on Zen 4/5 and recent Intel cores, so eight keep the
// pipes full and sixteen leave room for a core with more or slower ones.

// GCC 12's AVX-512 headers start results from _mm512_undefined_*() and warn on it
// (GCC bug 105593); the warning says nothing about this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/cpu/machine_limits_impl.hpp"

namespace baton::cpu::detail {

namespace {

constexpr int n_acc = 16;

/// acc += per lane Σ of four u8(a) · s8(b) products, as vpdpbusd. Written as asm because
/// GCC 12 copies every accumulator around a loop of the intrinsic and spills some to the
/// stack; as asm each stays in its register.
inline void dpbusd(__m512i& acc, __m512i a, __m512i b) {
  asm("vpdpbusd %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
}

/// The word sum of p[n] read in S streams of 512-bit loads, prefetching `pf` bytes ahead
/// in each stream when PF (into L2 when L2, else into L1).
template <int S, bool PF, bool L2>
uint64_t read_sum_512(const uint8_t* p, size_t n, size_t pf) {
  const size_t len = stream_len(n, S);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
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
      a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(q));
      a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(q + 64));
      a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(q + 128));
      a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(q + 192));
    }
  }
  const __m512i a = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  const size_t done = S * len;
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(a)) + sum_words(p + done, n - done);
}

}  // namespace

uint64_t read_sum_avx512(int prefetch_bytes, bool to_l2, int n_streams, const uint8_t* p,
                         size_t n) {
  const auto pf = static_cast<size_t>(prefetch_bytes);
  const auto read = [&]<int S>() {
    if (prefetch_bytes == 0) {
      return read_sum_512<S, false, false>(p, n, pf);
    }
    return to_l2 ? read_sum_512<S, true, true>(p, n, pf) : read_sum_512<S, true, false>(p, n, pf);
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

peak_run int8_peak_avx512(int64_t iters, uint32_t seed) {
  const __m512i a = _mm512_set1_epi32(static_cast<int>(seed | 0x01010101u));  // u8
  const __m512i b = _mm512_set1_epi32(static_cast<int>(seed * 3u + 1u));      // s8
  __m512i acc[n_acc];
#pragma GCC unroll 16
  for (int k = 0; k < n_acc; ++k) {
    acc[k] = _mm512_set1_epi32(k);
  }
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int k = 0; k < n_acc; ++k) {
      dpbusd(acc[k], a, b);
    }
  }
  __m512i s = acc[0];
#pragma GCC unroll 16
  for (int k = 1; k < n_acc; ++k) {
    s = _mm512_add_epi32(s, acc[k]);
  }
  // 16 lanes × 4 byte products per instruction, 2 ops each
  return {static_cast<double>(iters) * n_acc * 16 * 4 * 2,
          static_cast<uint32_t>(_mm512_reduce_add_epi32(s))};
}

peak_run f32_peak_avx512(int64_t iters, uint32_t seed) {
  // x ← x·a + b with a just below 1 settles at b / (1 − a): no overflow, no subnormals
  const __m512 a = _mm512_set1_ps(0.999f + static_cast<float>(seed & 1) * 1e-4f);
  const __m512 b = _mm512_set1_ps(1e-3f);
  __m512 acc[n_acc];
#pragma GCC unroll 16
  for (int k = 0; k < n_acc; ++k) {
    acc[k] = _mm512_set1_ps(static_cast<float>(k));
  }
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int k = 0; k < n_acc; ++k) {
      acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    }
  }
  __m512 s = acc[0];
#pragma GCC unroll 16
  for (int k = 1; k < n_acc; ++k) {
    s = _mm512_add_ps(s, acc[k]);
  }
  return {static_cast<double>(iters) * n_acc * 16 * 2,
          static_cast<uint64_t>(_mm512_reduce_add_ps(s))};
}

}  // namespace baton::cpu::detail
