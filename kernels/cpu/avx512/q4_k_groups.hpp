// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// Q4_K weights in kernel_lanes' groups (lanes.hpp): two super-blocks (512 elements, 288
// bytes, as 16 Q4_0 blocks) a group, one sub-block of 32 per lane. A lane's dot is 8
// vpdpbusd as a Q4_0 block's; its scale and min are applied in floats:
//   acc += float(dot) · (d · sc) · dy − (dmin · m) · (dy · Σ y),
// where d · sc and dmin · m are exact (11 × 6 bits) and come with the row's group, shared
// by the tile's tokens, and dy · Σ y with the token's. One lane a piece of 16 (k_quants.hpp,
// as Q6_K still runs) spent 4 vpdpbusd and about ten other instructions per super-block
// and (row, token); this spends 8 and five per two super-blocks.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx512/k_quants.hpp"
#include "kernels/cpu/avx512/lanes.hpp"

namespace baton::cpu::detail {

namespace {

/// Group g of a Q8_K activation row prepared for q4_k_group: blocks 2g and 2g + 1 (zeros
/// past the row's end), sub-block l of 32 (block l / 8, its bytes 32 (l % 8) ..) in lane l:
/// qs[k] lane l = its bytes 4k .. 4k + 3, d lane l = its block's scale, dsum lane l =
/// d · the sum of its 32 qs (from the block's bsums).
struct q8_k_group {
  int8_t qs[8][64];
  float d[16];
  float dsum[16];
};
static_assert(sizeof(q8_k_group) == 640);

void prep_q8_k_groups(const uint8_t* xq, uint8_t* out, int64_t n_in) {
  static constexpr uint8_t zeros[sizeof(block_q8_k)] = {};
  const int64_t nsb = n_in / qk_k;
  auto* groups = reinterpret_cast<q8_k_group*>(out);
  for (int64_t g = 0; g < n_groups(n_in); ++g) {
    const uint8_t* blk[2] = {xq + 2 * g * sizeof(block_q8_k),
                             2 * g + 1 < nsb ? xq + (2 * g + 1) * sizeof(block_q8_k) : zeros};
    __m512i q[8];
    dwords_by_lane(
        [&blk](int l) { return blk[l / 8] + offsetof(block_q8_k, qs) + 32 * (l % 8); }, q);
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      _mm512_store_si512(groups[g].qs[k], q[k]);
    }
    float d[2];
    std::memcpy(&d[0], blk[0] + offsetof(block_q8_k, d), sizeof(float));
    std::memcpy(&d[1], blk[1] + offsetof(block_q8_k, d), sizeof(float));
    const __m512 dl = _mm512_insertf32x8(_mm512_set1_ps(d[0]), _mm256_set1_ps(d[1]), 1);
    const auto bsums = [&blk](int b) {
      return _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(blk[b] + offsetof(block_q8_k, bsums)));
    };
    // the two 16-sums of each sub-block added
    const __m512i sums = _mm512_madd_epi16(
        _mm512_inserti64x4(_mm512_castsi256_si512(bsums(0)), bsums(1), 1), _mm512_set1_epi16(1));
    _mm512_store_ps(groups[g].d, dl);
    _mm512_store_ps(groups[g].dsum, _mm512_mul_ps(_mm512_cvtepi32_ps(sums), dl));
  }
}

/// One Q4_K row's group of two super-blocks, one sub-block of 32 per dword lane (lane l:
/// sub-block l % 8 of block l / 8): u[k] lane l = its elements 4k .. 4k + 3 as 4-bit
/// values, the lanes of q8_k_group; dsc lane l = d · its scale, dmm lane l = dmin · its min.
///
/// pack_rows' layout of a whole group (288 bytes): 256 bytes of quants, dword k of lane l
/// at 64k + 4l (k < 4), byte i of a lane holding its elements i (low nibble) and 16 + i;
/// then 16 bytes scale_l | (min_l >> 4) << 6; 8 bytes (min_l & 15) << 4 (l / 8) at byte
/// l % 8; the halves d, dmin of block 0, then of block 1.
struct q4_k_group {
  static constexpr size_t bytes = 2 * sizeof(block_q4_k);  // in either layout
  static constexpr size_t qs_bytes = 256;                   // packed: then the scales
  static constexpr bool in_blocks = true;                   // has_block_layout
  static constexpr int64_t zen5_pass = 4096;                // split_long_pass
  static constexpr int zen5_first_tokens = 4;               // first_tile_tokens
  static constexpr bool nibble_weights = true;                // packed_lane_dots
  using act = q8_k_group;

  __m512i u[8];
  __m512 dsc;
  __m512 dmm;

  static void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) {
    prep_q8_k_groups(xq, out, n_in);
  }

  /// p: two whole blocks (288 bytes) in ggml's layout, whose 32-byte runs of qs hold
  /// sub-blocks 2i (low nibbles) and 2i + 1 (high).
  void load(const uint8_t* p) {
    __m512i q[8];
    dwords_by_lane(
        [p](int l) {
          return p + (l / 8) * sizeof(block_q4_k) + offsetof(block_q4_k, qs) + 32 * (l % 8 / 2);
        },
        q);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      u[k] = _mm512_mask_blend_epi32(0xaaaa, _mm512_and_si512(q[k], m4),
                                     _mm512_and_si512(_mm512_srli_epi16(q[k], 4), m4));
    }
    static_assert(offsetof(block_q4_k, scales) == 4);
    const auto head = [p](int b) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + b * sizeof(block_q4_k)));
    };
    const __m128i a = q4_k_scales_mins(head(0));  // [sc0..sc7, m0..m7]
    const __m128i b = q4_k_scales_mins(head(1));
    set_scales(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(a, b)),
               _mm512_cvtepu8_epi32(_mm_unpackhi_epi64(a, b)),
               _mm_unpacklo_epi32(head(0), head(1)));
  }

  /// The same group from pack_rows' layout: qs = its 256 bytes of quants, ds = its scales.
  void load_packed(const uint8_t* qs, const uint8_t* ds) {
    packed_nibbles(qs, u);
    load_scales(ds);
  }

  /// u[k] of load_packed(qs, ...) alone.
  static __m512i packed_u(const uint8_t* qs, int k) { return packed_nibbles(qs, k); }

  /// dsc and dmm from pack_rows' 32 bytes of scales.
  void load_scales(const uint8_t* ds) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ds)));
    // lanes 0..7 and 8..15 both bytes 0..7 of the mins' nibbles
    uint64_t nibbles;
    std::memcpy(&nibbles, ds + 16, sizeof nibbles);
    const __m512i nib = _mm512_cvtepu8_epi32(_mm_set1_epi64x(static_cast<int64_t>(nibbles)));
    const __m512i low = _mm512_srlv_epi32(
        nib, _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4));
    const __m512i top = _mm512_and_si512(_mm512_srli_epi32(b, 2), _mm512_set1_epi32(0x30));
    // (low & 15) | top
    const __m512i m = _mm512_ternarylogic_epi32(low, _mm512_set1_epi32(15), top, 0xea);
    set_scales(_mm512_and_si512(b, _mm512_set1_epi32(63)), m,
               _mm_loadl_epi64(reinterpret_cast<const __m128i*>(ds + 24)));
  }

  /// What kernel_lanes' first token tile keeps (makes_rows) of a group: dsc, then dmm.
  static constexpr size_t made_bytes = 128;
  void store_scales(uint8_t* out) const {
    _mm512_store_ps(out, dsc);
    _mm512_store_ps(out + 64, dmm);
  }
  void load_made(const uint8_t* p) {
    dsc = _mm512_load_ps(p);
    dmm = _mm512_load_ps(p + 64);
  }

  /// acc += float(dots) · (d · sc) · dy − (dmin · m) · (dy · Σ y).
  /// Y: q8_k_group, or held_act<q8_k_group>.
  template <class Y>
  __m512 accumulate(__m512 acc, __m512i dots, const Y& y) const {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(dsc, act_ps(y.d)), acc);
    return _mm512_fnmadd_ps(dmm, act_ps(y.dsum), acc);
  }

  /// block_dot_ints of group g's n sub-blocks (16, or 8 for a row's lone last block) from
  /// their lane dots: per block Σ scale · dot, then Σ min · the sums of its activations.
  /// w: the group in ggml's layout; x: the Q8_K row.
  static void block_ints(__m512i dots, const uint8_t* w, const uint8_t* x, int64_t g, int n,
                         int32_t* out) {
    alignas(64) int32_t l[16];
    _mm512_store_si512(l, dots);
    for (int b = 0; b < n / 8; ++b) {
      const uint8_t* blk = w + b * sizeof(block_q4_k);
      uint8_t sm[16];  // [sc0..sc7, m0..m7]
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sm),
                       q4_k_scales_mins(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk))));
      int16_t bsums[16];
      std::memcpy(bsums, x + (2 * g + b) * sizeof(block_q8_k) + offsetof(block_q8_k, bsums),
                  sizeof bsums);
      int32_t sum = 0, mins = 0;
      for (int j = 0; j < 8; ++j) {
        sum += sm[j] * l[8 * b + j];
        mins += sm[8 + j] * (bsums[2 * j] + bsums[2 * j + 1]);
      }
      out[2 * (2 * g + b)] = sum;
      out[2 * (2 * g + b) + 1] = mins;
    }
  }

 private:
  /// dsc, dmm from the lanes' scales and mins (dwords) and the halves d, dmin of block 0,
  /// then of block 1 (the low 8 bytes of h).
  void set_scales(__m512i sc, __m512i m, __m128i h) {
    const __m512 dd = _mm512_castps128_ps512(_mm_cvtph_ps(h));  // d0, dmin0, d1, dmin1
    const __m512i block = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512 d = _mm512_permutexvar_ps(block, dd);
    const __m512 dmin = _mm512_permutexvar_ps(_mm512_add_epi32(block, _mm512_set1_epi32(1)), dd);
    dsc = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d);
    dmm = _mm512_mul_ps(_mm512_cvtepi32_ps(m), dmin);
  }
};

}  // namespace

}  // namespace baton::cpu::detail
