// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// Q6_K weights by Q8_K activations, one 16-element piece of a super-block per 32-bit
// lane: the row's quants (repacked in lane order by pack_rows, or unpacked and transposed
// from ggml's layout) and the prepared activations in the same lanes (4 x 4 dwords in
// each 128-bit lane), 4 vpdpbusd per super-block into exact integer lanes, then the
// pieces' scales times d in floats; each row's super-block is unpacked once and shared by
// the tile's tokens. (The vpmaddubsw + vpdpwssd way before spent twice the integer
// operations: one thread, 128 tokens, 20-25 % slower.) Q4_K ran so too, until
// q4_k_groups.hpp's lanes of 32 (its scale and min applied in floats) replaced it. Here
// also q4_k_scales_mins, which that unpacks with.
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

// -- Q4_K scales and mins ---------------------------------------------------------------

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

// -- Q6_K: one 16-element piece of a super-block per lane --------------------------------

/// A prepared Q8_K block for kernel_k_lanes, its 16 pieces of 16 activations in the lanes
/// of the weights' row (Row::prep): qs[k] lane λ = bytes 4k .. 4k + 3 of lane λ's piece;
/// corr lane λ = where that lane's integer sum starts (−32 · the piece's bsum, as Q6_K
/// stores q + 32); then d.
struct q8_k_lanes {
  int8_t qs[4][64];
  int32_t corr[16];
  float d;
  uint8_t pad[60];
};
static_assert(sizeof(q8_k_lanes) == 384);

/// v[k] = dword k of every 128-bit lane of the four inputs: out[k] dword 4p + i = in[i]
/// dword 4p + k. So the 16-element piece that fills 128-bit lane p of in[i] goes to lane
/// 4p + i, its dword k in out[k].
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

/// One Q6_K row's super-block in lanes: u[k] lane λ = dword k of sub-block 4i + p
/// (λ = 4p + i) as unsigned 6-bit values (q + 32), sc lane λ = that sub-block's scale,
/// dsc lane λ = d · that scale (exact: 11 × 8 bits).
///
/// A sub-block j = 8n + 2k + s (n: half of 128, k: 32-element group, s: its 16-half) has its
/// low 4 bits in 16 bytes of ql at 64n + 32 (k % 2) + 16s, nibble k / 2, and its top 2 bits
/// in 16 bytes of qh at 32n + 16s, bits 2k. So ql's 64 bytes of half n hold, in 128-bit lane
/// p, sub-block 8n + p (low nibbles) and 8n + 4 + p (high), whose qh bytes are qh's 128-bit
/// lane 2n + p % 2, bits 2 (p / 2) and 4 + 2 (p / 2).
struct q6_k_lanes_row {
  static constexpr size_t block_bytes = sizeof(block_q6_k);
  __m512i u[4];
  __m512i sc;
  __m512 dsc;

  /// Lane λ = 4p + i holds sub-block 4i + p: a per-sub-block vector (16 i32) in lane order.
  static __m512i lane_order(__m512i by_sub_block) {
    return _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), by_sub_block);
  }

  void load(const uint8_t* b) {
    const auto* x = reinterpret_cast<const block_q6_k*>(b);
    const __m512i qh = _mm512_loadu_si512(x->qh);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // qh bits to bits 4, 5: low nibbles' sub-blocks shift left 4 (p < 2) or 2, high
    // nibbles' right 0 or 2 (bits that cross into a neighbouring byte are masked off)
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    #pragma GCC unroll 2
    for (int n = 0; n < 2; ++n) {
      const __m512i ql = _mm512_loadu_si512(x->ql + 64 * n);
      // qh's 128-bit lanes 2n, 2n + 1, 2n, 2n + 1
      const __m512i h =
          n == 0 ? _mm512_shuffle_i64x2(qh, qh, 0x44) : _mm512_shuffle_i64x2(qh, qh, 0xee);
      // lo | (hi & 0x30)
      u[2 * n] = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, m4), _mm512_sllv_epi16(h, shl),
                                           m30, 0xf8);
      u[2 * n + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_srlv_epi16(h, shr), m30, 0xf8);
    }
    // u[i] 128-bit lane p: sub-block 4i + p
    transpose_dwords_in_lanes(u);
    set_scales(lane_order(_mm512_cvtepi8_epi32(
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->scales)))),
               half(reinterpret_cast<const uint8_t*>(&x->d)));
  }

  /// The same super-block from pack_rows' layout (210 bytes, as ggml's): lane λ's low
  /// 4 bits in dwords 64j + 4λ (j = 0, 1; byte i: elements 4j + i, low nibble, and
  /// 8 + 4j + i), its top 2 bits in the dword at 128 + 4λ (byte i, bits 2k: element
  /// 4k + i), the 16 scales in lane order at 192, d at 208.
  void load_packed(const uint8_t* b) {
    __m512i lo = _mm512_loadu_si512(b);
    __m512i hi = _mm512_loadu_si512(b + 64);
    const __m512i qh = _mm512_loadu_si512(b + 128);
    asm("" : "+v"(lo), "+v"(hi));  // each loaded once (GCC would fold a load into each use)
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // nibble | (top bits moved to bits 4, 5): bits that cross into a neighbouring byte
    // are masked off
    u[0] = _mm512_ternarylogic_epi32(_mm512_and_si512(lo, m4), _mm512_slli_epi16(qh, 4), m30, 0xf8);
    u[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(hi, m4), _mm512_slli_epi16(qh, 2), m30, 0xf8);
    u[2] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(lo, 4), m4), qh, m30, 0xf8);
    u[3] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(hi, 4), m4),
                                     _mm512_srli_epi16(qh, 2), m30, 0xf8);
    set_scales(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))),
               half(b + 208));
  }

  /// The activations in the same lanes: their 64 bytes v hold sub-blocks 4v .. 4v + 3,
  /// one a 128-bit lane, as u's inputs did.
  static void prep(const block_q8_k& y, q8_k_lanes& o) {
    __m512i q[4];
    #pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      q[v] = _mm512_loadu_si512(y.qs + 64 * v);
    }
    transpose_dwords_in_lanes(q);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      _mm512_store_si512(o.qs[k], q[k]);
    }
    const __m512i bsums =
        _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums)));
    _mm512_store_si512(o.corr, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                _mm512_slli_epi32(lane_order(bsums), 5)));
  }

  /// acc += float(lanes) · (d · sc) · dy.
  __m512 accumulate(__m512 acc, __m512i lanes, const q8_k_lanes& y) const {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(dsc, _mm512_set1_ps(y.d)),
                           acc);
  }
  void block_ints(__m512i lanes, const q8_k_lanes&, int32_t* out) const {
    out[0] = hsum_epi32(_mm512_mullo_epi32(lanes, sc));
  }

 private:
  void set_scales(__m512i lane_scales, float d) {
    sc = lane_scales;
    dsc = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_set1_ps(d));
  }
};

/// Q6_K weights (Row: q6_k_lanes_row) by Q8_K activations, one
/// 16-element piece of a super-block per 32-bit lane, from ggml's layout or (Packed)
/// pack_rows'. An element's value: per super-block, lane λ = corr + Σ q · y exactly in
/// integers (4 vpdpbusd), then Row::accumulate's multiply and FMA into acc (the piece's
/// scale with d, in floats); hsum at the end. Every tile computes exactly that. (Until
/// the packed layout the scale was one vpmulld of the integers, and ggml's layout was
/// unpacked for every tile: one thread, Zen 4, 128 tokens 198 -> 238 GFLOP/s at
/// 2048 × 2048, decode 19.8 -> 24.7 GB/s.)
///
/// Prefill tiles 2 × 8: a row's unpacked super-block serves eight tokens. One thread, 128
/// tokens, Zen 4, GFLOP/s, packed Q6_K at 2048 × 2048 / 8192 × 2048 / 2048 × 8192 (n_out ×
/// n_in), two runs each: 2 × 6 230-235 / 225-227 / 210-211, 2 × 8 235-243 / 235-236 /
/// 215-217, 2 × 10 240 / 235 / 212, 3 × 4 206 / 193 / 215, 4 × 4 204 / 182 / 206. From
/// ggml's layout (then also Q4_K), GFLOP/s Q4_K / Q6_K at 2048 × 2048 and n_in 8192:
/// 2 × 4 156 / 173, 158 / 180; 2 × 5 157-166 / 183-186, 168-169 / 191-192; 2 × 6 170-171 /
/// 192-196, 169-172 / 193-197; 1 × 8 180-182 / 205-208 but 134 / 129 on n_in 8192 (its 8
/// tokens' activations overflowed L1); 1 × 12 156-162 / 171-178, 133-135 / 126-130.
template <class Row, bool Packed, int64_t LongPass = 2048>
struct kernel_k_lanes {
  /// Packed rows lie in blocks of 8 (pack_rows): a decode tile is a whole block, its
  /// super-block i's activations held in registers for its 8 rows and the prefetch plan's
  /// `blocks` (as kernel_lanes' Q4_0 and Q4_K; bench/RESULTS.md, eleventh and twelfth
  /// sessions).
  static constexpr bool block_tiles = Packed;
  static constexpr int max_rows_1 = Packed ? static_cast<int>(packed_block) : 1;
  static constexpr int max_rows = 2;
  static constexpr int max_tokens = 8;
  static constexpr int part_floats = tile_part_floats;

  /// Rows longer than LongPass pass in slices of it, so that the tile's tokens' prepared
  /// activations stay in L1 while the rows of a block use them: 8 tokens of n_in 8192 are
  /// 96 KiB, of a slice of 2048 24 KiB (Zen 5, one thread, 128 tokens, 2048 × 8192:
  /// 218-254 -> 357-364 GFLOP/s; slices of 1024 ran 2048 × 2048 at 275 against 420;
  /// Q4_K_M pp128, whose FFN down is Q6_K in half the layers, four interleaved rounds:
  /// 332-340 -> 351-358 tokens/s). Not measured on Zen 4 (32 KiB of L1d: 24 KiB fit).
  int64_t k_pass(int64_t n_in) const { return n_in <= LongPass ? n_in : LongPass; }

  size_t prep_bytes(int64_t n_in) const { return n_in / qk_k * sizeof(q8_k_lanes); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    const auto* y = reinterpret_cast<const block_q8_k*>(xq);
    auto* o = reinterpret_cast<q8_k_lanes*>(out);
    for (int64_t i = 0; i < n_in / qk_k; ++i) {
      Row::prep(y[i], o[i]);
      o[i].d = y[i].d;
      std::memset(o[i].pad, 0, sizeof o[i].pad);
    }
  }

  /// The exact integer lanes of one super-block, before their scales, from the token's
  /// activation vectors q (its qs) and its correction.
  static __m512i lanes(const Row& w, const __m512i (&q)[4], __m512i corr) {
    __m512i ia = corr;
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      ia = _mm512_dpbusd_epi32(ia, w.u[k], q[k]);
    }
    return ia;
  }
  /// The same from the prepared activations in memory (GCC folds each load into its
  /// vpdpbusd).
  static __m512i lanes(const Row& w, const q8_k_lanes& y) {
    __m512i q[4];
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      q[k] = _mm512_load_si512(y.qs[k]);
    }
    return lanes(w, q, _mm512_load_si512(y.corr));
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    const int64_t nb = a.n_in / qk_k;
    __m512 acc[NR][NT];
    start_sums(a, acc);
    const int64_t i0 = a.k0 / qk_k, i1 = a.k1 / qk_k;
    const tile_rows at = rows_of(a, Row::block_bytes, nb);
    if constexpr (block_tiles && NT == 1 && NR == max_rows_1) {
      // a whole block (the driver runs this shape on those alone): its rows' super-block
      // i lie side by side, the tile's stream
      const auto* ys = reinterpret_cast<const q8_k_lanes*>(a.x);
      const weight_prefetch fb = tile_prefetch(a, 1, true);
      for (int64_t i = i0; i < i1; ++i) {
        __m512i q[4];
        #pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          q[k] = _mm512_load_si512(ys[i].qs[k]);
        }
        const __m512i c = _mm512_load_si512(ys[i].corr);
        const uint8_t* p = at.group(0, i);
        prefetch_ahead(p, NR * Row::block_bytes, fb);
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          Row w;
          w.load_packed(p + r * Row::block_bytes);
          acc[r][0] = w.accumulate(acc[r][0], lanes(w, q, c), ys[i]);
        }
      }
      end_sums(a, acc);
      return;
    }
    const weight_prefetch pf = tile_prefetch(a, NT, false);
    for (int64_t i = i0; i < i1; ++i) {
      Row w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = at.group(r, i);
        prefetch_ahead(wp, Row::block_bytes, pf);
        if constexpr (Packed) {
          w[r].load_packed(wp);
        } else {
          w[r].load(wp);
        }
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const q8_k_lanes*>(a.x + t * a.x_stride)[i];
        if constexpr (NR >= 2) {
          // the token's activations loaded once for all rows (GCC folded a load into each
          // row's vpdpbusd; Zen 4 loads one 64-byte vector a cycle): one thread, 128 tokens,
          // GFLOP/s at 2048 × 2048 / 8192 × 2048 / 2048 × 8192, medians of five runs,
          // 244.1 / 239.0 / 224.3 -> 251.0 / 245.3 / 226.0 (2 × 6 tiles so: 210-245 /
          // 231-236 / 223-224)
          __m512i q[4];
          #pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            q[k] = _mm512_load_si512(y.qs[k]);
            asm("" : "+v"(q[k]));
          }
          const __m512i c = _mm512_load_si512(y.corr);
          #pragma GCC unroll 16
          for (int r = 0; r < NR; ++r) {
            acc[r][t] = w[r].accumulate(acc[r][t], lanes(w[r], q, c), y);
          }
        } else {
          #pragma GCC unroll 16
          for (int r = 0; r < NR; ++r) {
            acc[r][t] = w[r].accumulate(acc[r][t], lanes(w[r], y), y);
          }
        }
      }
    }
    end_sums(a, acc);
  }

  void block_ints(const uint8_t* wp, const uint8_t* x, int64_t n_in, int32_t* out) const {
    uint8_t* buf = scratch(prep_bytes(n_in));
    prep(x, buf, n_in);
    const auto* y = reinterpret_cast<const q8_k_lanes*>(buf);
    for (int64_t i = 0; i < n_in / qk_k; ++i) {
      Row w;
      w.load(wp + i * Row::block_bytes);
      w.block_ints(lanes(w, y[i]), y[i], out + i);
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
