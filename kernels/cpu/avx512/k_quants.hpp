// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// Q4_K and Q6_K weights by Q8_K activations, into exact integer lanes per super-block;
// each row's super-block is unpacked once and shared by the tile's tokens. Q4_K: vpmaddubsw
// then vpdpwssd with the sub-block scales. Q6_K: one 16-element sub-block per 32-bit lane
// (weights and prepared activations transposed alike), 4 vpdpbusd then one vpmulld by the
// scales: about half the operations of the Q4_K way, for the output head of every batched
// decode step.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- Q4_K by Q8_K ---------------------------------------------------------------------

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

/// acc + chunk c's exact integer lanes: over a super-block's 4 chunks, Σ lanes =
/// Σ scale · Σ q · y.
inline __m512i k_lanes_chunk(const q4_k_row& w, int c, __m512i u, const uint8_t* yqs,
                             __m512i acc) {
  const __m512i y = _mm512_loadu_si512(yqs + 64 * c);
  return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, y), w.scales(c));
}

/// Q4_K weights by Q8_K activations. An element's value: per super-block, 16 exact integer
/// lanes of Σ scale · q · y and 8 of Σ min · bsum, then acc = fma(float(lanes), d · dy,
/// acc) and acc = fnmadd(float(min lanes), dmin · dy, acc); hsum at the end.
struct kernel_q4_k {
  using row = q4_k_row;
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 2;
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = sizeof(block_q4_k);

  size_t prep_bytes(int64_t) const { return 0; }
  void prep(const uint8_t*, uint8_t*, int64_t) const {}

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
          // [d · dy, dmin · dy]
          const __m128 s = _mm_mul_ps(w[r].dm, _mm_set1_ps(y[t]->d));
          const __m512 f = _mm512_cvtepi32_ps(ia[r][t]);
          acc[r][t] = _mm512_fmadd_ps(f, _mm512_broadcastss_ps(s), acc[r][t]);
          const __m512 m = _mm512_cvtepi32_ps(_mm512_zextsi256_si512(min_lanes(w[r], *y[t])));
          acc[r][t] = _mm512_fnmadd_ps(m, _mm512_broadcastss_ps(_mm_movehdup_ps(s)), acc[r][t]);
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
      out[2 * i] = hsum_epi32(ia);
      out[2 * i + 1] = hsum_epi32(_mm512_zextsi256_si512(min_lanes(w, *y)));
    }
  }
};

// -- Q6_K: one sub-block per lane -------------------------------------------------------

/// A prepared Q8_K block for kernel_q6_k, its 16 sub-blocks of 16 in the lanes of a Q6_K
/// block's unpacked quants (q6_k_lane_order): qs[k] lane λ = bytes 4k .. 4k + 3 of sub-block
/// j(λ), corr lane λ = −32 · its bsum (Q6_K stores q + 32), then d.
struct q8_k_lanes {
  int8_t qs[4][64];
  int32_t corr[16];
  float d;
  uint8_t pad[60];
};
static_assert(sizeof(q8_k_lanes) == 384);

/// v[k] = dword k of every 128-bit lane of the four inputs: out[k] dword 4p + i = in[i]
/// dword 4p + k. Four 16-element sub-blocks that fill 128-bit lane p of in[0..3] (sub-block
/// 4i + p in both the weights' and the activations' inputs below) go to lane 4p + i.
inline void transpose_dwords_in_lanes(__m512i (&v)[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(v[0], v[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(v[2], v[3]);
  v[0] = _mm512_unpacklo_epi64(t0, t2);
  v[1] = _mm512_unpackhi_epi64(t0, t2);
  v[2] = _mm512_unpacklo_epi64(t1, t3);
  v[3] = _mm512_unpackhi_epi64(t1, t3);
}

/// Lane λ = 4p + i holds sub-block 4i + p: a per-sub-block vector (16 i32) in lane order.
inline __m512i q6_k_lane_order(__m512i by_sub_block) {
  return _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), by_sub_block);
}

/// One Q6_K row's super-block in lanes: u[k] lane λ = dword k of sub-block 4i + p (λ = 4p + i)
/// as unsigned 6-bit values (q + 32), sc lane λ = that sub-block's scale.
///
/// A sub-block j = 8n + 2k + s (n: half of 128, k: 32-element group, s: its 16-half) has its
/// low 4 bits in 16 bytes of ql at 64n + 32 (k % 2) + 16s, nibble k / 2, and its top 2 bits
/// in 16 bytes of qh at 32n + 16s, bits 2k. So ql's 64 bytes of half n hold, in 128-bit lane
/// p, sub-block 8n + p (low nibbles) and 8n + 4 + p (high), whose qh bytes are qh's 128-bit
/// lane 2n + p % 2, bits 2 (p / 2) and 4 + 2 (p / 2).
struct q6_k_lanes_row {
  __m512i u[4];
  __m512i sc;
  float d;

  void load(const uint8_t* b) {
    const auto* x = reinterpret_cast<const block_q6_k*>(b);
    const __m512i qh = _mm512_loadu_si512(x->qh);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // qh bits to bits 4, 5: low nibbles' sub-blocks shift left 4 (p < 2) or 2, high
    // nibbles' right 0 or 2 (bytes' bits that cross into a neighbour are masked off)
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    #pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m512i ql = _mm512_loadu_si512(x->ql + 64 * n);
      // qh's 128-bit lanes 2n, 2n + 1, 2n, 2n + 1
      const __m512i h = n == 0 ? _mm512_shuffle_i64x2(qh, qh, 0x44) : _mm512_shuffle_i64x2(qh, qh, 0xee);
      // lo | (hi & 0x30)
      u[2 * n] = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, m4), _mm512_sllv_epi16(h, shl), m30,
                                           0xf8);
      u[2 * n + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_srlv_epi16(h, shr), m30, 0xf8);
    }
    // u[i] lane p: sub-block 4i + p
    transpose_dwords_in_lanes(u);
    sc = q6_k_lane_order(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales))));
    d = half(reinterpret_cast<const uint8_t*>(&x->d));
  }
};

/// Q6_K weights by Q8_K activations, one 16-element sub-block per 32-bit lane (the lanes of
/// q6_k_lanes_row). An element's value: per super-block, lane λ = scale · (Σ q · y − 32 ·
/// bsum) exactly in integers (4 vpdpbusd from −32 · bsum, one vpmulld), then acc =
/// fma(float(lanes), d · dy, acc); hsum at the end. Every tile computes exactly that.
struct kernel_q6_k {
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 2;
  static constexpr int max_tokens = 4;

  size_t prep_bytes(int64_t n_in) const { return n_in / qk_k * sizeof(q8_k_lanes); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    const auto* y = reinterpret_cast<const block_q8_k*>(xq);
    auto* o = reinterpret_cast<q8_k_lanes*>(out);
    for (int64_t i = 0; i < n_in / qk_k; ++i) {
      // 64 bytes v hold sub-blocks 4v .. 4v + 3, one a 128-bit lane
      __m512i q[4];
      #pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        q[v] = _mm512_loadu_si512(y[i].qs + 64 * v);
      }
      transpose_dwords_in_lanes(q);
      #pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        _mm512_store_si512(o[i].qs[k], q[k]);
      }
      const __m512i bsums = _mm512_cvtepi16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums)));
      _mm512_store_si512(o[i].corr,
                         _mm512_sub_epi32(_mm512_setzero_si512(),
                                          _mm512_slli_epi32(q6_k_lane_order(bsums), 5)));
      o[i].d = y[i].d;
      std::memset(o[i].pad, 0, sizeof o[i].pad);
    }
  }

  /// The exact integer lanes of one super-block: scale · (Σ q · y − 32 · bsum).
  static __m512i lanes(const q6_k_lanes_row& w, const q8_k_lanes& y) {
    __m512i ia = _mm512_load_si512(y.corr);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      ia = _mm512_dpbusd_epi32(ia, w.u[k], _mm512_load_si512(y.qs[k]));
    }
    return _mm512_mullo_epi32(ia, w.sc);
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
      q6_k_lanes_row w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * sizeof(block_q6_k);
        prefetch_ahead(wp, sizeof(block_q6_k));
        w[r].load(wp);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const q8_k_lanes*>(a.x + t * a.x_stride)[i];
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes(w[r], y)),
                                      _mm512_set1_ps(w[r].d * y.d), acc[r][t]);
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
    uint8_t* buf = scratch(prep_bytes(n_in));
    prep(x, buf, n_in);
    const auto* y = reinterpret_cast<const q8_k_lanes*>(buf);
    for (int64_t i = 0; i < n_in / qk_k; ++i) {
      q6_k_lanes_row w;
      w.load(wp + i * sizeof(block_q6_k));
      out[i] = hsum_epi32(lanes(w, y[i]));
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
