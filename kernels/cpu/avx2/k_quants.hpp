// Internal to matmul_avx2.cpp (compiled with its AVX2 flags); included nowhere else.
// Q4_K and Q6_K weights by Q8_K activations: each row's super-block unpacked once (scales,
// mins) and shared by the tile's tokens, 32 elements at a time by vpmaddubsw then
// vpmaddwd with the sub-block scales into exact integer lanes, one float accumulator
// per element (Q4_K's mins and Q6_K's −32 from the activations' bsums).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx2/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- Q4_K and Q6_K by Q8_K ---------------------------------------------------------

/// [sc0..sc7, m0..m7] from a Q4_K block's 12 packed bytes (ggml's utmp shuffle).
inline __m128i q4_k_scales_mins(const uint8_t* scales) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t utmp[4];
  std::memcpy(utmp, scales, 12);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(utmp));
}

/// i16 vector with byte `lo` of v in the low 8 lanes and byte `hi` in the high 8.
inline __m256i bcast_pair_i16(__m128i v8, int lo, int hi) {
  const __m128i sel = _mm_set_epi64x(0x0101010101010101LL * hi, 0x0101010101010101LL * lo);
  return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v8, sel));
}

struct q4_k_row {
  const uint8_t* qs;
  __m128i sm;    // sc0..sc7, m0..m7 (bytes, all < 64)
  __m256i mdup;  // each min twice, as i16
  float d, dmin;

  void load(const uint8_t* b) {
    sm = q4_k_scales_mins(b + offsetof(block_q4_k, scales));
    mdup = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
        sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
    d = half(b + offsetof(block_q4_k, d));
    dmin = half(b + offsetof(block_q4_k, dmin));
    qs = b + offsetof(block_q4_k, qs);
  }
  /// Group g (0..7) = elements 32g .. 32g + 31 as unsigned nibbles.
  __m256i group(int g) const {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (g / 2)));
    return _mm256_and_si256(g % 2 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0f));
  }
  __m256i scales(int g) const { return bcast_pair_i16(sm, g, g); }
};

struct q6_k_row {
  const uint8_t* ql;
  const uint8_t* qh;
  __m128i sc8;
  __m256i sc16;
  float d;

  void load(const uint8_t* b) {
    sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(block_q6_k, scales)));
    sc16 = _mm256_cvtepi8_epi16(sc8);
    d = half(b + offsetof(block_q6_k, d));
    ql = b + offsetof(block_q6_k, ql);
    qh = b + offsetof(block_q6_k, qh);
  }
  /// Group g (0..7) = elements 32g .. 32g + 31 as q + 32 (0..63).
  __m256i group(int g) const {
    const int n = g / 4, k = g % 4;
    const __m256i l =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * n + 32 * (k % 2)));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * n));
    const __m256i lo =
        _mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(0x0f));
    // qh bits 2k, 2k + 1 to bits 4, 5
    __m256i hi;
    switch (k) {
      case 0:
        hi = _mm256_slli_epi16(h, 4);
        break;
      case 1:
        hi = _mm256_slli_epi16(h, 2);
        break;
      case 2:
        hi = h;
        break;
      default:
        hi = _mm256_srli_epi16(h, 2);
        break;
    }
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
  }
  __m256i scales(int g) const { return bcast_pair_i16(sc8, 2 * g, 2 * g + 1); }
};

template <class Row>
inline __m256i k_lanes_group(const Row& w, int g, __m256i u, const int8_t* yqs, __m256i acc) {
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yqs + 32 * g));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), w.scales(g)));
}

template <bool q6>
struct kernel_k {
  using row = std::conditional_t<q6, q6_k_row, q4_k_row>;
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 1;  // 16 registers: an int and a float sum per element
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = q6 ? sizeof(block_q6_k) : sizeof(block_q4_k);

  size_t prep_bytes(int64_t) const { return 0; }
  void prep(const uint8_t*, uint8_t*, int64_t) const {}

  static __m256i finish_q6(const q6_k_row& w, const block_q8_k& y, __m256i ia) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
    return _mm256_sub_epi32(ia, _mm256_slli_epi32(_mm256_madd_epi16(w.sc16, bs), 5));
  }
  static __m256i min_lanes(const q4_k_row& w, const block_q8_k& y) {
    return _mm256_madd_epi16(w.mdup, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums)));
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm256_setzero_ps();
      }
    }
    for (int64_t i = 0; i < a.n_in / qk_k; ++i) {
      row w[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * block_bytes;
        prefetch_ahead(wp, block_bytes);
        w[r].load(wp);
      }
      const block_q8_k* y[NT];
      for (int t = 0; t < NT; ++t) {
        y[t] = reinterpret_cast<const block_q8_k*>(a.x + t * a.x_stride) + i;
      }
      __m256i ia[NR][NT];
      for (int r = 0; r < NR; ++r) {
        for (int t = 0; t < NT; ++t) {
          ia[r][t] = _mm256_setzero_si256();
        }
      }
      for (int g = 0; g < 8; ++g) {
        for (int r = 0; r < NR; ++r) {
          const __m256i u = w[r].group(g);
          for (int t = 0; t < NT; ++t) {
            ia[r][t] = k_lanes_group(w[r], g, u, y[t]->qs, ia[r][t]);
          }
        }
      }
      for (int t = 0; t < NT; ++t) {
        for (int r = 0; r < NR; ++r) {
          if constexpr (q6) {
            const __m256 f = _mm256_cvtepi32_ps(finish_q6(w[r], *y[t], ia[r][t]));
            acc[r][t] = _mm256_fmadd_ps(f, _mm256_set1_ps(w[r].d * y[t]->d), acc[r][t]);
          } else {
            const __m256 f = _mm256_cvtepi32_ps(ia[r][t]);
            acc[r][t] = _mm256_fmadd_ps(f, _mm256_set1_ps(w[r].d * y[t]->d), acc[r][t]);
            const __m256 m = _mm256_cvtepi32_ps(min_lanes(w[r], *y[t]));
            acc[r][t] = _mm256_fnmadd_ps(m, _mm256_set1_ps(w[r].dmin * y[t]->d), acc[r][t]);
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        a.y[t * a.ldy + r] = hsum(acc[r][t]);
      }
    }
  }

  void block_ints(const uint8_t* wp, const uint8_t* x, int64_t n_in, int32_t* out) const {
    for (int64_t i = 0; i < n_in / qk_k; ++i) {
      row w;
      w.load(wp + i * block_bytes);
      const auto* y = reinterpret_cast<const block_q8_k*>(x) + i;
      __m256i ia = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        ia = k_lanes_group(w, g, w.group(g), y->qs, ia);
      }
      if constexpr (q6) {
        out[i] = hsum_epi32(finish_q6(w, *y, ia));
      } else {
        out[2 * i] = hsum_epi32(ia);
        out[2 * i + 1] = hsum_epi32(min_lanes(w, *y));
      }
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
