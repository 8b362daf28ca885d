// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// Q4_0 and Q8_0 weights for kernel_lanes (lanes.hpp), by prepared Q8_0 activations: groups
// of 16 blocks, one block per lane. Q4_0 nibbles are unsigned as stored and Q8_0 weights
// are made unsigned by +128; the activation-only correction (−8·Σy or −128·Σy per 4
// bytes) starts the accumulator, and each lane's block dot is reduced exactly in integers
// first.
#pragma once

#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/avx512/lanes.hpp"

namespace baton::cpu::detail {

namespace {

// -- Q4_0 and Q8_0: groups of 16 blocks, one block per lane -----------------------------

/// A prepared group of 16 Q8_0 activation blocks (16g .. 16g + 15), one block per dword
/// lane: qs[k] lane l = bytes 4k .. 4k + 3 of block l, corr lane l = −offset · Σ of block
/// l's qs (the weights' offset: 8 for Q4_0's unsigned nibbles, 128 for Q8_0's bytes made
/// unsigned), d lane l = its scale. Blocks past the row's end are zeros.
struct q8_group {
  int8_t qs[8][64];
  int32_t corr[16];
  float d[16];
};
static_assert(sizeof(q8_group) == 640);


/// q[k] lane l = dword k of the qs of Q8_0 block l, for 16 whole blocks at p (ggml's layout).
inline void q8_0_dwords_by_lane(const uint8_t* p, __m512i (&q)[8]) {
  dwords_by_lane([p](int l) { return p + l * sizeof(block_q8_0) + 2; }, q);
}

/// Lane l = the scale of Q8_0 block l, for 16 whole blocks at p (ggml's layout).
inline __m512 q8_0_scales(const uint8_t* p) {
  const __m512i at = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(sizeof(block_q8_0)));
  // each dword's low half is the block's scale
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(at, p, 1)));
}

/// out = the prepared groups of one Q8_0 activation row, for weights of that offset.
void prep_q8_groups(const uint8_t* xq, uint8_t* out, int64_t n_in, int32_t offset) {
  const int64_t nb = n_in / 32;
  auto* groups = reinterpret_cast<q8_group*>(out);
  const int64_t whole = nb / 16;
  for (int64_t g = 0; g < whole; ++g) {
    const uint8_t* p = xq + 16 * g * sizeof(block_q8_0);
    __m512i q[8];
    q8_0_dwords_by_lane(p, q);
    __m512i sum = _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      _mm512_store_si512(groups[g].qs[k], q[k]);
      sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), q[k]);  // Σ of each block's qs
    }
    _mm512_store_si512(groups[g].corr, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-offset)));
    _mm512_store_ps(groups[g].d, q8_0_scales(p));
  }
  // the partial last group, with zeros past the row's end
  for (int64_t g = whole; g < n_groups(n_in); ++g) {
    q8_group& o = groups[g];
    std::memset(&o, 0, sizeof o);
    for (int64_t l = 0; l < 16 && 16 * g + l < nb; ++l) {
      block_q8_0 b;
      std::memcpy(&b, xq + (16 * g + l) * sizeof b, sizeof b);
      int32_t sum = 0;
      for (int j = 0; j < 32; ++j) {
        sum += b.qs[j];
      }
      for (int k = 0; k < 8; ++k) {
        std::memcpy(o.qs[k] + 4 * l, b.qs + 4 * k, 4);
      }
      o.corr[l] = -offset * sum;
      o.d[l] = _cvtsh_ss(b.d);
    }
  }
}

/// Word indices that gather dword k of the qs of blocks 0..15 of a Q4_0 group (18 bytes
/// each, so every field is word-aligned) from three windows of it: bytes [0, 128) for
/// blocks 0..6, [126, 254) for 7..13, [224, 288) for 14 and 15 (src = 0, 1, 2).
constexpr std::array<uint16_t, 32> q4_group_idx(int k, int src) {
  std::array<uint16_t, 32> idx{};
  const int base[3] = {0, 126, 224};
  for (int l = 0; l < 16; ++l) {
    const int s = l < 7 ? 0 : l < 14 ? 1 : 2;
    for (int j = 0; j < 2; ++j) {
      const int word = (18 * l + 2 + 4 * k - base[s]) / 2 + j;
      idx[2 * l + j] = s == src ? static_cast<uint16_t>(word) : 0;
    }
  }
  return idx;
}
/// Word indices of the scales d of blocks 0..15 in the same windows, in words 0..15.
constexpr std::array<uint16_t, 32> q4_group_d_idx(int src) {
  std::array<uint16_t, 32> idx{};
  const int base[3] = {0, 126, 224};
  for (int l = 0; l < 16; ++l) {
    const int s = l < 8 ? 0 : l < 14 ? 1 : 2;
    idx[l] = s == src ? static_cast<uint16_t>((18 * l - base[s]) / 2) : 0;
  }
  return idx;
}

/// What a Q4_0 or Q8_0 group (weights stored with `Offset` added) shares: prepared Q8_0
/// activations, and d lane l = block l's scale, which scales its block dot.
template <int32_t Offset>
struct q8_0_scaled {
  static constexpr int32_t offset = Offset;
  using act = q8_group;

  __m512 d;

  static void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) {
    prep_q8_groups(xq, out, n_in, offset);
  }
  /// d from pack_rows' 16 scales (halves).
  void load_scales(const uint8_t* ds) {
    d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ds)));
  }
  /// acc += float(dots) · dx · dy. Y: q8_group, or held_act<q8_group>.
  template <class Y>
  __m512 accumulate(__m512 acc, __m512i dots, const Y& y) const {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(d, act_ps(y.d)), acc);
  }
  /// block_dot_ints of group g's n blocks: their lane dots as they are.
  static void block_ints(__m512i dots, const uint8_t*, const uint8_t*, int64_t g, int n,
                         int32_t* out) {
    alignas(64) int32_t l[16];
    _mm512_store_si512(l, dots);
    std::memcpy(out + 16 * g, l, static_cast<size_t>(n) * sizeof(int32_t));
  }
};

/// One Q4_0 row's group of 16 blocks, one block per dword lane: u[k] lane l = the
/// unsigned nibbles of elements 4k .. 4k + 3 of block l (k < 4: low nibbles of qs dword
/// k; k ≥ 4: high nibbles of qs dword k − 4, elements 16 + 4(k − 4) ...), d lane l = its
/// scale: the layout of q8_group.
struct q4_0_group : q8_0_scaled<8> {
  static constexpr size_t bytes = 16 * sizeof(block_q4_0);  // in either layout
  static constexpr size_t qs_bytes = 256;                    // packed: then the scales
  static constexpr bool in_blocks = true;                    // has_block_layout
  static constexpr int64_t zen5_pass = 4096;                 // split_long_pass
  static constexpr int zen5_first_tokens = 4;                // first_tile_tokens
  static constexpr bool nibble_weights = true;                // packed_lane_dots

  __m512i u[8];

  /// p: 16 whole blocks (288 bytes).
  void load(const uint8_t* p) {
    alignas(64) static constexpr std::array<uint16_t, 32> ia[4] = {
        q4_group_idx(0, 0), q4_group_idx(1, 0), q4_group_idx(2, 0), q4_group_idx(3, 0)};
    alignas(64) static constexpr std::array<uint16_t, 32> ib[4] = {
        q4_group_idx(0, 1), q4_group_idx(1, 1), q4_group_idx(2, 1), q4_group_idx(3, 1)};
    alignas(64) static constexpr std::array<uint16_t, 32> ic[4] = {
        q4_group_idx(0, 2), q4_group_idx(1, 2), q4_group_idx(2, 2), q4_group_idx(3, 2)};
    alignas(64) static constexpr std::array<uint16_t, 32> da = q4_group_d_idx(0);
    alignas(64) static constexpr std::array<uint16_t, 32> db = q4_group_d_idx(1);
    alignas(64) static constexpr std::array<uint16_t, 32> dc = q4_group_d_idx(2);
    const __m512i r0 = _mm512_loadu_si512(p);
    const __m512i r1 = _mm512_loadu_si512(p + 64);
    const __m512i r2 = _mm512_loadu_si512(p + 126);
    const __m512i r3 = _mm512_loadu_si512(p + 190);
    const __m512i r4 = _mm512_loadu_si512(p + 224);
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    for (int k = 0; k < 4; ++k) {
      // words: lanes 0..6 = words 0..13, lanes 14, 15 = words 28..31
      const __m512i a = _mm512_permutex2var_epi16(r0, _mm512_load_si512(ia[k].data()), r1);
      __m512i b = _mm512_permutex2var_epi16(r2, _mm512_load_si512(ib[k].data()), r3);
      b = _mm512_mask_permutexvar_epi16(b, 0xf0000000u, _mm512_load_si512(ic[k].data()), r4);
      const __m512i q = _mm512_mask_blend_epi16((1u << 14) - 1, b, a);
      u[k] = _mm512_and_si512(q, lo4);
      u[k + 4] = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
    }
    const __m512i a = _mm512_permutex2var_epi16(r0, _mm512_load_si512(da.data()), r1);
    __m512i b = _mm512_permutex2var_epi16(r2, _mm512_load_si512(db.data()), r3);
    b = _mm512_mask_permutexvar_epi16(b, 0xc000, _mm512_load_si512(dc.data()), r4);
    d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi16(0x00ff, b, a)));
  }

  /// The same group from pack_rows' layout: qs = its 256 bytes of qs dwords, lane-ordered,
  /// ds = its 16 scales. The same lanes as load(), read without a shuffle.
  void load_packed(const uint8_t* qs, const uint8_t* ds) {
    packed_nibbles(qs, u);
    load_scales(ds);
  }

  /// u[k] of load_packed(qs, ...) alone.
  static __m512i packed_u(const uint8_t* qs, int k) { return packed_nibbles(qs, k); }
};

/// One Q8_0 row's group of 16 blocks, one block per dword lane: u[k] lane l = bytes
/// 4k .. 4k + 3 of block l's qs made unsigned (+128), d lane l = its scale.
struct q8_0_group : q8_0_scaled<128> {
  static constexpr bool nibble_weights = false;               // packed_lane_dots
  static constexpr size_t bytes = 16 * sizeof(block_q8_0);  // in either layout
  static constexpr size_t qs_bytes = 512;                    // packed: then the scales
  /// In blocks of 8 (has_block_layout) its decode read no faster on Zen 4
  /// (bench_decode_read 2048 × 8192, two threads, 0.85-0.92 of the read against 0.88-0.92
  /// in 30-42 GB/s stretches, 0.70-0.73 against 0.67-0.77 in 54-70 GB/s ones; a software
  /// prefetch 8, 16 or 32 KiB ahead in the block's stream read 3-10 % slower), and pp128
  /// fell 2-6 % (a prefill tile's rows strided across the blocks); on Zen 5, with its
  /// prefetch into L1, tg64 rose 37 -> 50 t/s (pp128 1-3 % slower): a CPU stage lays Q8_0
  /// out in blocks there only (preferred_layout).
  static constexpr bool in_blocks = true;

  __m512i u[8];

  /// p: 16 whole blocks (544 bytes) in ggml's layout.
  void load(const uint8_t* p) {
    q8_0_dwords_by_lane(p, u);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      u[k] = _mm512_xor_si512(u[k], flip);
    }
    d = q8_0_scales(p);
  }

  /// The same group from pack_rows' layout: qs = its 512 bytes of qs dwords, lane-ordered,
  /// ds = its 16 scales.
  void load_packed(const uint8_t* qs, const uint8_t* ds) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      u[k] = _mm512_xor_si512(_mm512_loadu_si512(qs + 64 * k), flip);
    }
    load_scales(ds);
  }

  /// u[k] of load_packed(qs, ...) alone.
  static __m512i packed_u(const uint8_t* qs, int k) {
    return _mm512_xor_si512(_mm512_loadu_si512(qs + 64 * k),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};


}  // namespace

}  // namespace baton::cpu::detail
