// Internal to matmul_avx2.cpp (compiled with its AVX2 flags); included nowhere else.
// Q4_0 and Q8_0 weights by prepared Q8_0 activations, one 32-element block at a time:
// vpmaddubsw on Q4_0's unsigned nibbles (its −8 comes back as −8·Σy from the prepared
// activations) or on Q8_0's |q| with the signs moved onto the activations, reduced
// exactly in integer lanes, then two alternating float accumulators per element.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx2/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- Q4_0 and Q8_0 with prepared activations ---------------------------------------

/// One prepared Q8_0 activation block: qs, the Q4_0 correction −8 · Σ of each 4 bytes,
/// and the scale in every lane.
struct q8_prep {
  int8_t qs[32];
  int32_t corr[8];
  float d[8];
};
static_assert(sizeof(q8_prep) == 96);

template <bool q4>
struct kernel_q8_blocks {
  static constexpr int max_rows_1 = 1;  // decode: one sequential stream reads fastest
  static constexpr int max_rows = 1;
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);

  size_t prep_bytes(int64_t n_in) const { return n_in / 32 * sizeof(q8_prep); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    auto* o = reinterpret_cast<q8_prep*>(out);
    for (int64_t i = 0; i < n_in / 32; ++i) {
      const uint8_t* b = xq + i * sizeof(block_q8_0);
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o[i].qs), y);
      const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), y), ones16());
      _mm256_store_si256(reinterpret_cast<__m256i*>(o[i].corr),
                         _mm256_sub_epi32(_mm256_setzero_si256(), s4));
      _mm256_store_ps(o[i].d, bcast_half(b));
    }
  }

  /// The weights of block b made ready for vpmaddubsw: Q4_0 unsigned nibbles in order,
  /// Q8_0 |q| (its signs go onto the activations). s = the signs source for Q8_0.
  static void unpack(const uint8_t* b, __m256i& u, __m256i& s, __m256& d) {
    d = bcast_half(b);
    if constexpr (q4) {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
      s = u;
    } else {
      s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
      u = _mm256_abs_epi8(s);
    }
  }

  /// Exact lanes: Σ over each 4 bytes of w · y (Q4_0: (q − 8) · y).
  static __m256i lanes(__m256i u, __m256i s, const q8_prep& y) {
    const __m256i yq = _mm256_load_si256(reinterpret_cast<const __m256i*>(y.qs));
    if constexpr (q4) {
      (void)s;
      return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u, yq), ones16()),
                              _mm256_load_si256(reinterpret_cast<const __m256i*>(y.corr)));
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(yq, s)), ones16());
    }
  }

  /// acc[r][t][i % 2] += lanes · (dx · dy) for block i: two accumulators per element, so
  /// a lone row (decode) is not bound by the latency of one chain of adds.
  template <int NR, int NT>
  void tile(const tile_args& a) const {
    __m256 acc[NR][NT][2];
    zero_tile(acc);
    // j is a constant in every call, so the accumulators stay in registers
    auto step = [&]<int j>(int64_t i) {
      __m256i u[NR], s[NR];
      __m256 dx[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * block_bytes;
        prefetch_ahead(wp, block_bytes);
        unpack(wp, u[r], s[r], dx[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const q8_prep*>(a.x + t * a.x_stride)[i];
        const __m256 dy = _mm256_load_ps(y.d);
        for (int r = 0; r < NR; ++r) {
          const __m256 sc = _mm256_mul_ps(dx[r], dy);
          acc[r][t][j] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes(u[r], s[r], y)), sc, acc[r][t][j]);
        }
      }
    };
    const int64_t nb = a.n_in / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
      step.template operator()<0>(i);
      step.template operator()<1>(i + 1);
    }
    if (i < nb) {
      step.template operator()<0>(i);
    }
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        a.y[t * a.ldy + r] = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
      }
    }
  }

  void block_ints(const uint8_t* w, const uint8_t* x, int64_t n_in, int32_t* out) const {
    auto* p = reinterpret_cast<q8_prep*>(scratch(prep_bytes(n_in)));
    prep(x, reinterpret_cast<uint8_t*>(p), n_in);
    for (int64_t i = 0; i < n_in / 32; ++i) {
      __m256i u, s;
      __m256 d;
      unpack(w + i * block_bytes, u, s, d);
      out[i] = hsum_epi32(lanes(u, s, p[i]));
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
