// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// Q4_K and Q6_K weights by Q8_K activations: vpmaddubsw then vpdpwssd with the sub-block
// scales, into exact integer lanes per super-block; each row's super-block is unpacked
// once and shared by the tile's tokens.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- Q4_K and Q6_K by Q8_K ---------------------------------------------------------

inline __m512i load_idx32(const int16_t* idx) { return _mm512_loadu_si512(idx); }

/// vpshufb controls over [sc0..sc7, m0..m7] (in every 128-bit lane) giving chunk c's
/// scales as i16: lanes 0..15 (bytes 0..31) sub-block 2c, lanes 16..31 sub-block 2c + 1.
inline __m512i q4_k_scale_ctrl(int c) {
  const int64_t lo = 0x8000800080008000LL | (0x0001000100010001LL * (2 * c));
  const int64_t hi = 0x8000800080008000LL | (0x0001000100010001LL * (2 * c + 1));
  return _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo);
}
/// Each min twice as i16, to meet the pairs of 16-sums (bsums) of its 32 elements.
inline __m256i q4_k_min_ctrl() {
  return _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128, 11, -128, 11,
                          -128, 12, -128, 12, -128, 13, -128, 13, -128, 14, -128, 14, -128, 15,
                          -128, 15, -128);
}

/// Q6_K: lane i of chunk c has sub-block 4c + i / 8.
alignas(64) const int16_t idx_q6_k_sc[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,
     6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8,  8,  8,  8,  8,  8,  8,  8,  9,  9,  9,  9,  9,  9,  9,  9,
     10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
     14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

/// [sc0..sc7, m0..m7] as bytes from the first 16 bytes of a Q4_K block (d, dmin, then
/// the 12 packed bytes q0..q11): sc_j = q_j & 63, m_j = q_(j+4) & 63 for j < 4;
/// sc_j = (q_(j+4) & 15) | (q_(j-4) >> 6) << 4, m_j = (q_(j+4) >> 4) | (q_j >> 6) << 4 else.
inline __m128i q4_k_scales_mins(__m128i head) {
  constexpr char z = -128;  // vpshufb: zero byte
  const __m128i low = _mm_and_si128(
      _mm_shuffle_epi8(head, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, z, z, z, z)),
      _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
  const __m128i nib =
      _mm_shuffle_epi8(_mm_and_si128(_mm_srli_epi16(head, 4), _mm_set1_epi8(0x0f)),
                       _mm_setr_epi8(z, z, z, z, z, z, z, z, z, z, z, z, 12, 13, 14, 15));
  // (q >> 6) << 4 is (q >> 2) & 0x30
  const __m128i top =
      _mm_shuffle_epi8(_mm_and_si128(_mm_srli_epi16(head, 2), _mm_set1_epi8(0x30)),
                       _mm_setr_epi8(z, z, z, z, 4, 5, 6, 7, z, z, z, z, 8, 9, 10, 11));
  return _mm_or_si128(_mm_or_si128(low, nib), top);
}

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

/// One Q4_K row's super-block, unpacked once and shared by the tile's tokens.
struct q4_k_row {
  const uint8_t* qs;
  __m512i sm;    // [sc0..sc7, m0..m7] bytes in every 128-bit lane
  __m256i mdup;  // each min twice, as i16
  __m128 dm;     // d, dmin

  void load(const uint8_t* b) {
    static_assert(offsetof(block_q4_k, scales) == 4);
    const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    sm = _mm512_broadcast_i32x4(q4_k_scales_mins(head));
    mdup = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm), q4_k_min_ctrl());
    dm = _mm_cvtph_ps(head);  // lanes 0, 1: d, dmin
    qs = b + offsetof(block_q4_k, qs);
  }
  /// Elements 64c .. 64c + 63 as unsigned bytes, natural order.
  __m512i chunk(int c) const {
    const __m512i q =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c)));
    return _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xffff0000u, q, 4), _mm512_set1_epi8(0x0f));
  }
  __m512i scales(int c) const { return _mm512_shuffle_epi8(sm, q4_k_scale_ctrl(c)); }
};

/// One Q6_K row's super-block.
struct q6_k_row {
  const uint8_t* ql;
  const uint8_t* qh;
  __m512i sc;  // 16 scales as i16 in the low 256 bits
  float d;

  void load(const uint8_t* b) {
    sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(block_q6_k, scales)))));
    d = half(b + offsetof(block_q6_k, d));
    ql = b + offsetof(block_q6_k, ql);
    qh = b + offsetof(block_q6_k, qh);
  }
  /// Elements 64c .. 64c + 63 as unsigned 6-bit values (q + 32), natural order.
  __m512i chunk(int c) const {
    const int n = c / 2;
    const __m512i l = _mm512_loadu_si512(ql + 64 * n);
    const __m512i h =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * n)));
    // qh bits (0,1), (2,3), (4,5), (6,7) of element groups 0..3 go to bits 4, 5
    __m512i lo, hi;
    if (c % 2 == 0) {
      lo = _mm512_and_si512(l, _mm512_set1_epi8(0x0f));
      hi = _mm512_sllv_epi16(h, _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1));
    } else {
      lo = _mm512_and_si512(_mm512_srli_epi16(l, 4), _mm512_set1_epi8(0x0f));
      hi = _mm512_srlv_epi16(h, _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1));
    }
    // lo | (hi & 0x30)
    return _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x30), 0xf8);
  }
  __m512i scales(int c) const { return _mm512_permutexvar_epi16(load_idx32(idx_q6_k_sc[c]), sc); }
};

/// acc + chunk c's exact integer lanes: over a super-block's 4 chunks, Σ lanes =
/// Σ scale · Σ q · y (for Q6_K with q + 32, the offset taken out by finish_q6).
template <class Row>
inline __m512i k_lanes_chunk(const Row& w, int c, __m512i u, const uint8_t* yqs, __m512i acc) {
  const __m512i y = _mm512_loadu_si512(yqs + 64 * c);
  return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, y), w.scales(c));
}

template <bool q6>
struct kernel_k {
  using row = std::conditional_t<q6, q6_k_row, q4_k_row>;
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 2;
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = q6 ? sizeof(block_q6_k) : sizeof(block_q4_k);

  size_t prep_bytes(int64_t) const { return 0; }
  void prep(const uint8_t*, uint8_t*, int64_t) const {}

  /// Lanes after the chunk loop, less the Q6_K offset: −32 · Σ scale · bsum.
  static __m512i finish_q6(const row& w, const block_q8_k& y, __m512i ia) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(_mm512_castsi512_si256(w.sc), bs), 5);
    return _mm512_sub_epi32(ia, _mm512_zextsi256_si512(corr));
  }
  static __m256i min_lanes(const q4_k_row& w, const block_q8_k& y) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
    return _mm256_madd_epi16(w.mdup, bs);
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    const int64_t nb = a.n_in / qk_k;
    __m512 acc[NR][NT];
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm512_setzero_ps();
      }
    }
    for (int64_t i = 0; i < nb; ++i) {
      row w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * block_bytes;
        prefetch_ahead(wp, block_bytes);
        w[r].load(wp);
      }
      const block_q8_k* y[NT];
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        y[t] = reinterpret_cast<const block_q8_k*>(a.x + t * a.x_stride) + i;
      }
      __m512i ia[NR][NT];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        #pragma GCC unroll 16
        for (int t = 0; t < NT; ++t) {
          ia[r][t] = _mm512_setzero_si512();
        }
      }
      for (int c = 0; c < 4; ++c) {
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const __m512i u = w[r].chunk(c);
          #pragma GCC unroll 16
          for (int t = 0; t < NT; ++t) {
            ia[r][t] =
                k_lanes_chunk(w[r], c, u, reinterpret_cast<const uint8_t*>(y[t]->qs), ia[r][t]);
          }
        }
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          if constexpr (q6) {
            const __m512 f = _mm512_cvtepi32_ps(finish_q6(w[r], *y[t], ia[r][t]));
            acc[r][t] = _mm512_fmadd_ps(f, _mm512_set1_ps(w[r].d * y[t]->d), acc[r][t]);
          } else {
            // [d · dy, dmin · dy]
            const __m128 s = _mm_mul_ps(w[r].dm, _mm_set1_ps(y[t]->d));
            const __m512 f = _mm512_cvtepi32_ps(ia[r][t]);
            acc[r][t] = _mm512_fmadd_ps(f, _mm512_broadcastss_ps(s), acc[r][t]);
            const __m512 m = _mm512_cvtepi32_ps(_mm512_zextsi256_si512(min_lanes(w[r], *y[t])));
            acc[r][t] = _mm512_fnmadd_ps(m, _mm512_broadcastss_ps(_mm_movehdup_ps(s)), acc[r][t]);
          }
        }
      }
    }
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      #pragma GCC unroll 16
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
      __m512i ia = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        ia = k_lanes_chunk(w, c, w.chunk(c), reinterpret_cast<const uint8_t*>(y->qs), ia);
      }
      if constexpr (q6) {
        out[i] = hsum_epi32(finish_q6(w, *y, ia));
      } else {
        out[2 * i] = hsum_epi32(ia);
        out[2 * i + 1] = hsum_epi32(_mm512_zextsi256_si512(min_lanes(w, *y)));
      }
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
