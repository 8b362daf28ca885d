// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// kernel_lanes: weights in groups of 16 blocks of 32, one block per 32-bit lane, by their
// prepared activations — the Q4_0 and Q8_0 groups (q8_0_groups.hpp) and Q4_K's
// (q4_k_groups.hpp). Each lane's block dot is vpdpbusd (unsigned × signed bytes), exact
// in integers, then the group's scales apply in floats. Tiles: wide for a core that runs
// 512-bit operations whole (Zen 5), split for one that splits them in halves (Zen 4).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

constexpr int64_t n_groups(int64_t n_in) { return (n_in / 32 + 15) / 16; }

/// u[k] (k = 0 .. 7) of a packed group of 4-bit quants (Q4_0, Q4_K): 256 bytes holding
/// lane l's dword k % 4 at 64 (k % 4) + 4l, its low nibbles for k < 4, its high ones after.
inline __m512i packed_nibbles(const uint8_t* qs, int k) {
  const __m512i q = _mm512_loadu_si512(qs + 64 * (k % 4));
  return _mm512_and_si512(k < 4 ? q : _mm512_srli_epi16(q, 4), _mm512_set1_epi8(0x0f));
}

/// u[0 .. 7] of packed_nibbles(qs, k), each 64 bytes loaded once: a decode row's group
/// reads every byte of the weights once and the activations once, so the loads bound it
/// (Zen 4 loads one 64-byte vector a cycle; GCC would fold a load into each use).
/// Q4_0 decode, one thread, weights in cache (BATON_BENCH_DECODE_MIB=0): 28-34 -> 34-43
/// GB/s; from DRAM no change.
inline void packed_nibbles(const uint8_t* qs, __m512i (&u)[8]) {
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    __m512i q = _mm512_loadu_si512(qs + 64 * k);
    asm("" : "+v"(q));
    u[k] = _mm512_and_si512(q, lo4);
    u[k + 4] = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
  }
}

/// q[k] lane l = dword k of the 32 bytes at at(l), l = 0 .. 15. The bytes of lanes l and
/// l + 8 share a register (halves), and an 8 × 8 dword transpose in each half puts dword k
/// of every lane in q[k] (a gather a dword per lane ran Q8_0 decode at half the speed).
template <class At>
inline void dwords_by_lane(At at, __m512i (&q)[8]) {
  const auto qs = [&at](int l) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at(l)));
  };
  __m512i r[8];
  #pragma GCC unroll 8
  for (int l = 0; l < 8; ++l) {
    r[l] = _mm512_inserti64x4(_mm512_castsi256_si512(qs(l)), qs(l + 8), 1);
  }
  __m512i t[8], s[8];
  #pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  #pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {  // rows 0..3, then 4..7
    s[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    s[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    s[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    s[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // dwords k and k + 4: the 128-bit lanes 0 (then 1) of s[k] and s[k + 4] in each half
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  #pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    q[k] = _mm512_permutex2var_epi64(s[k], lo, s[k + 4]);
    q[k + 4] = _mm512_permutex2var_epi64(s[k], hi, s[k + 4]);
  }
}

/// A group's prepared activations (Act: q8_group, q8_k_group) held in registers: a decode
/// tile of a block of packed rows loads them once for its rows.
template <class Act>
struct held_act {
  __m512i qs[8];
  __m512i start;  // dots_start of the group
  __m512 d;
  __m512 dsum;    // q8_k_group's; zeros for a q8_group

  explicit held_act(const Act& y);
};

/// The 64 bytes or 16 lanes of an activation field, from memory or a register.
inline __m512i act_si(const int8_t (&p)[64]) { return _mm512_load_si512(p); }
inline __m512i act_si(__m512i v) { return v; }
inline __m512 act_ps(const float (&p)[16]) { return _mm512_load_ps(p); }
inline __m512 act_ps(__m512 v) { return v; }

/// Where a lane's integer dot starts: the activations' correction for the weights' offset
/// (q8_group), or 0 (q4_k_groups.hpp's q8_k_group, whose weights have none).
template <class Act>
inline __m512i dots_start(const Act& y) {
  if constexpr (requires { y.corr; }) {
    return _mm512_load_si512(y.corr);
  } else {
    return _mm512_setzero_si512();
  }
}
template <class Act>
inline __m512i dots_start(const held_act<Act>& y) {
  return y.start;
}

template <class Act>
held_act<Act>::held_act(const Act& y) : start(dots_start(y)), d(_mm512_load_ps(y.d)) {
  #pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    qs[k] = _mm512_load_si512(y.qs[k]);
  }
  if constexpr (requires { y.dsum; }) {
    dsum = _mm512_load_ps(y.dsum);
  } else {
    dsum = _mm512_setzero_ps();
  }
}

/// Each lane's exact block dot Σ (w − offset) · y from a group's unsigned weight dwords u
/// (lane l = block l) and its prepared activations (Act, or held in registers); the
/// integer order cannot matter.
template <class Act>
inline __m512i lane_dots(const __m512i (&u)[8], const Act& y) {
  __m512i s0 = dots_start(y);
  __m512i s1 = _mm512_setzero_si512();
  #pragma GCC unroll 4
  for (int k = 0; k < 8; k += 2) {
    s0 = _mm512_dpbusd_epi32(s0, u[k], act_si(y.qs[k]));
    s1 = _mm512_dpbusd_epi32(s1, u[k + 1], act_si(y.qs[k + 1]));
  }
  return _mm512_add_epi32(s0, s1);
}

/// lane_dots of a whole packed group's weights (Group::packed_u of qs), each 64 bytes of
/// them used as they are loaded: GCC 12 kept a block's 8 rows' unpacked weights (load_packed)
/// on the stack beside the activations held in registers (Q4_0: 67 stack accesses a group).
/// 4-bit weights (Group::nibble_weights) take their high nibbles in place, as 16 times
/// their value: that sum, 16 · Σ hi · y, is shifted back once, where packed_u shifts each
/// 64 bytes — the same integers, three instructions fewer a row's group. Decode reads its
/// stream a little nearer the read (bench_decode_read, 2048 × 8192, two threads, 70+ GB/s
/// reads, three alternations: Q4_0 0.79-0.81 -> 0.81, Q4_K 0.79-0.84 -> 0.82-0.86;
/// bench model tg64, four paired rounds: Q4_0 +1.0 %, Q4_K_M +1.4 %, 3 of 4 ahead each).
template <class Group, class Act>
inline __m512i packed_lane_dots(const uint8_t* qs, const Act& y) {
  __m512i s0 = dots_start(y);
  __m512i s1 = _mm512_setzero_si512();
  if constexpr (Group::nibble_weights) {
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i q = _mm512_loadu_si512(qs + 64 * k);
      asm("" : "+v"(q));  // one load for both nibbles: GCC would fold it into each and
      const __m512i lo = _mm512_and_si512(q, _mm512_set1_epi8(0x0f));
      const __m512i hi16 = _mm512_and_si512(q, _mm512_set1_epi8(static_cast<char>(0xf0)));
      s0 = _mm512_dpbusd_epi32(s0, lo, act_si(y.qs[k]));
      s1 = _mm512_dpbusd_epi32(s1, hi16, act_si(y.qs[k + 4]));  // 240 · 128 · 16 fits
    }
    return _mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4));  // exact: s1 is 16 · Σ hi · y
  } else {
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      s0 = _mm512_dpbusd_epi32(s0, Group::packed_u(qs, k), act_si(y.qs[k]));
      s1 = _mm512_dpbusd_epi32(s1, Group::packed_u(qs, k + 4), act_si(y.qs[k + 4]));
    }
    return _mm512_add_epi32(s0, s1);
  }
}

/// The last group of a row, ggml's layout in either (pack_rows leaves it where it was):
/// `n` < 16 blocks, the rest as zeros.
template <class Group>
void load_partial(Group& w, const uint8_t* p, int n) {
  alignas(64) uint8_t buf[Group::bytes] = {};
  std::memcpy(buf, p, static_cast<size_t>(n) * (Group::bytes / 16));
  w.load(buf);
}

/// Q4_0, Q8_0 or Q4_K weights (Group: q4_0_group, q8_0_group, q4_k_group) by their
/// prepared activations (Group::act). An element's value: lane l accumulates blocks l,
/// 16 + l, 32 + l, ... (Q4_K: sub-blocks of 32) as Group::accumulate adds a block dot
/// (Q4_0, Q8_0: acc = fma(float(block dot), dx · dy, acc)), then the 16 lanes are summed
/// by hsum. Every
/// tile shape computes exactly that, from ggml's layout or (Packed) pack_rows' — the lanes
/// are the same, only how they are loaded differs. One accumulator per element: a lone
/// row's chain waits for one FMA per 16 blocks.
template <class Group, bool Packed, int Rows, int Tokens, int64_t LongPass>
struct kernel_lanes {
  /// Decode tiles (one token): a whole block of packed rows (pack_rows), which is one
  /// sequential stream, its groups of activations held in registers for its rows and the
  /// prefetch plan's `blocks` (none on Zen 4, 6 KiB into L1 on Zen 5); one row elsewhere
  /// (a row of ggml's layout, or of the last rows), with the plan's `rows`.
  /// Zen 4, two threads, decode GB/s over the read of the same milliseconds
  /// (bench_decode_read, 2048 × 8192; slow stretches are reads of 30-42 GB/s, fast ones
  /// 55-70), rows alone with a prefetch -> blocks of 8: see bench/RESULTS.md, eleventh
  /// session.
  static constexpr bool block_tiles = Packed && Group::in_blocks;
  static constexpr int max_rows_1 = block_tiles ? static_cast<int>(packed_block) : 1;
  static constexpr int max_rows = Rows;
  static constexpr int max_tokens = Tokens;
  static constexpr int part_floats = tile_part_floats;

  /// Rows longer than 2048 (or long_pass) pass in slices of long_pass elements, so that
  /// the tile's tokens' prepared activations stay in L1 while the rows of a block use them.
  int64_t long_pass = LongPass;
  int64_t k_pass(int64_t n_in) const {
    return n_in <= std::max<int64_t>(2048, long_pass) ? n_in : long_pass;
  }

  /// The tokens of a row block's first token tile (run_matmul; with_lanes_kernel sets it).
  int first_tokens = Tokens;

  using act = typename Group::act;

  /// Groups whose scales take work to unpack (Q4_K) have them unpacked once per row block,
  /// by its first token tile, as the tiles of 2 rows or more read them (packed_group_by_k),
  /// and read as made by the others: the same values. (A pass of their own over the block
  /// before the tiles waited on DRAM for every group's scales: 2.3 % of Q4_K_M prefill.)
  static constexpr bool makes_rows = Packed && Rows >= 2 && requires { Group::made_bytes; };
  size_t made_row_bytes(int64_t n_in) const
    requires makes_rows
  {
    return static_cast<size_t>(n_in / 512) * Group::made_bytes;
  }

  size_t prep_bytes(int64_t n_in) const { return n_groups(n_in) * sizeof(act); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const { Group::prep(xq, out, n_in); }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    const int64_t nb = a.n_in / 32;
    constexpr size_t group_bytes = Group::bytes;
    __m512 acc[NR][NT];
    start_sums(a, acc);
    // k_pass slices are whole groups (512 elements)
    const int64_t g1 = a.k1 == a.n_in ? n_groups(a.n_in) : a.k1 / 512;
    const weight_prefetch pf = tile_prefetch(a, NT, false);
    const int64_t whole = nb / 16;  // groups that are not the row's partial last one
    const tile_rows at = rows_of(a, group_bytes, whole);
    int64_t g = a.k0 / 512;
    if constexpr (block_tiles && NT == 1 && NR == max_rows_1) {
      // a whole block (the driver runs this shape on those alone): its rows' group g lie
      // side by side, the tile's stream
      const auto& ys = reinterpret_cast<const act*>(a.x);
      const weight_prefetch fb = tile_prefetch(a, 1, true);
      for (; g < std::min(g1, whole); ++g) {
        const held_act<act> y(ys[g]);
        const uint8_t* p = at.group(0, g);
        prefetch_ahead(p, NR * group_bytes, fb);
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const uint8_t* qs = p + r * group_bytes;  // then its scales
          Group w;
          w.load_scales(qs + Group::qs_bytes);
          acc[r][0] = w.accumulate(acc[r][0], packed_lane_dots<Group>(qs, y), y);
        }
      }
    }
    for (; g < g1; ++g) {
      if constexpr (Packed && NR >= 2 && NR * NT >= 4 && NT > 1) {
        if (g < whole) {
          packed_group_by_k<NR, NT>(a, at, g, pf, acc);
          continue;
        }
      }
      Group w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        if (g < whole) {
          const uint8_t* p = at.group(r, g);
          prefetch_ahead(p, group_bytes, pf);
          if constexpr (Packed) {
            w[r].load_packed(p, p + Group::qs_bytes);  // its qs, then its scales
          } else {
            w[r].load(p);
          }
        } else {
          load_partial(w[r], at.tail + r * at.tail_gap, static_cast<int>(nb - 16 * g));
        }
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const act*>(a.x + t * a.x_stride)[g];
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          acc[r][t] = w[r].accumulate(acc[r][t], lane_dots(w[r].u, y), y);
        }
      }
    }
    end_sums(a, acc);
  }

  /// For tiles of 2 rows or more (Zen 4's 2 × 6; measured there only):
  /// acc += whole group g of the tile's rows (pack_rows' layout) by its tokens, as tile()
  /// adds it, in another order of the integer products: for each dword k, every row's
  /// weights and every token's activations — a row's weights are unpacked as they are
  /// used and a token's are loaded once for all rows, so the tile's integer sums and
  /// accumulators stay in registers (Zen 4 loads one 64-byte vector a cycle).
  template <int NR, int NT>
  static void packed_group_by_k(const tile_args& a, const tile_rows& at, int64_t g,
                                weight_prefetch pf, __m512 (&acc)[NR][NT]) {
    const uint8_t* qs[NR];
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      qs[r] = at.group(r, g);  // then its scales
      prefetch_ahead(qs[r], Group::bytes, pf);
    }
    const act* y[NT];
    __m512i s[NR][NT];
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      y[t] = reinterpret_cast<const act*>(a.x + t * a.x_stride) + g;
      const __m512i c = dots_start(*y[t]);
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        s[r][t] = c;
      }
    }
    #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      __m512i u[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        u[r] = Group::packed_u(qs[r], k);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        __m512i yk = _mm512_load_si512(y[t]->qs[k]);
        asm("" : "+v"(yk));  // one load for all rows: GCC would fold it into each vpdpbusd
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          s[r][t] = _mm512_dpbusd_epi32(s[r][t], u[r], yk);
        }
      }
    }
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      Group w;
      if constexpr (makes_rows) {
        if (a.rows_made != nullptr) {
          uint8_t* made = a.rows_made + r * a.rows_made_stride + g * Group::made_bytes;
          if (a.first_token_tile) {
            w.load_scales(qs[r] + Group::qs_bytes);
            w.store_scales(made);
          } else {
            w.load_made(made);
          }
        } else {
          w.load_scales(qs[r] + Group::qs_bytes);
        }
      } else {
        w.load_scales(qs[r] + Group::qs_bytes);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = w.accumulate(acc[r][t], s[r][t], *y[t]);
      }
    }
  }

  void block_ints(const uint8_t* w, const uint8_t* x, int64_t n_in, int32_t* out) const {
    const int64_t nb = n_in / 32;
    uint8_t* buf = scratch(prep_bytes(n_in));
    prep(x, buf, n_in);
    const auto* groups = reinterpret_cast<const act*>(buf);
    for (int64_t g = 0; g < n_groups(n_in); ++g) {
      const int n = static_cast<int>(std::min<int64_t>(16, nb - 16 * g));
      Group u;
      if (n == 16) {
        u.load(w + g * Group::bytes);
      } else {
        load_partial(u, w + g * Group::bytes, n);
      }
      Group::block_ints(lane_dots(u.u, groups[g]), w + g * Group::bytes, x, g, n, out);
    }
  }
};

/// Prefill tiles (Q4_0, measured; Q8_0 the same shapes) for a core that runs 512-bit
/// operations whole (measured on Zen 5, its 48 KiB L1d, which now runs 2 × 6: see
/// runs_split_tiles; other cores still run these): 1 × 16, the row's group unpacked once for 16
/// tokens whose prepared activations of n_in = 2048 (40 KiB) stay in L1 (one thread,
/// 2048 × 2048: 1 × 8 380, 1 × 12 460, 1 × 16 470-490 GFLOP/s; 2 × 6 370, 3 × 4 320).
/// Longer rows in slices of 1024: n_in = 8192 ran at 200 GFLOP/s in one pass, 380 in
/// slices of 1024 (300 of 2048, 320 of 512). One row: packed_group_by_k, whose gain is an
/// activation load shared by rows, is not used (and not measured on Zen 5).
template <class Group, bool Packed>
using kernel_lanes_wide = kernel_lanes<Group, Packed, 1, 16, 1024>;

/// The same for a core that splits them in halves (Zen 4: one 64-byte load a cycle, 32 KiB
/// L1d): in 1 × 16 each block dot's 8 vpdpbusd wait on 10 loads of activations, and 16
/// tokens' activations overflow L1; 2 × 6 loads each activation for two rows (one thread,
/// 2048 × 2048: 1 × 16 155, 2 × 8 234, 2 × 6 280 GFLOP/s). Slices of 2048, or of
/// split_long_pass (with_lanes_kernel sets long_pass).
template <class Group, bool Packed>
using kernel_lanes_split = kernel_lanes<Group, Packed, 2, 6, 2048>;

/// Whether this core runs 2 × 6 tiles: AMD's AVX-512 cores, families 19h (Zen 4, which
/// splits 512-bit operations in halves) and 1Ah (Zen 5).
/// Zen 5 ran 1 × 16 fastest when the tiles were new; once 2 × 6 shared each activation
/// load between its rows (packed_group_by_k), 2 × 6 ran Q4_0 and Q8_0 faster there too
/// (bench_kernels, one thread, GFLOP/s, 1 × 16 -> 2 × 6, 2048 × 2048 / n_in 8192, rows in
/// blocks: Q4_0 460 / 346 -> 466 / 420, Q8_0 395 / 325 -> 421 / 350; pp128 of the model,
/// three interleaved rounds: Q4_0 317 -> 359, Q8_0 297 -> 315) but not Q4_K (438 / 347 ->
/// 398 / 353; Q4_K_M pp128 352-359 -> 336-346) until the driver ran a row block's tiles in
/// one call (tile_args::repeat): then Q4_K too (1 × 16 -> 2 × 6 in slices of 4096, 470 /
/// 375 -> 509 / 465; Q4_K_M pp128 302 -> 349, 4 rounds). Other cores (not measured) keep
/// 1 × 16.
inline bool runs_split_tiles() {
  const core_kind core = this_core();
  return core == core_kind::zen4 || core == core_kind::zen5;
}

/// The slices of n_in that Group's 2 × 6 tiles pass over rows in: 2048 (6 tokens' prepared
/// Q8_0 activations: 15 KiB, beside the weights in Zen 4's 32 KiB of L1d), or on Zen 5
/// (48 KiB) Group::zen5_pass where it has one: Q4_0 4096 (one thread, 128 tokens, n_in
/// 8192 × 2048 rows, medians of 8 and 10 interleaved runs: 394 -> 449, 429 -> 481 GFLOP/s;
/// pp128 of the model, three sets of 5 rounds: +2.8, +0.3, +1.3 %) and Q4_K 4096 (445 ->
/// 462), but Q8_0, whose weights take twice the bytes, 375 -> 293 (with repeat, 390 -> 375).
template <class Group>
int64_t split_long_pass() {
  if constexpr (requires { Group::zen5_pass; }) {
    if (this_core() == core_kind::zen5) {
      return Group::zen5_pass;
    }
  }
  return 2048;
}

/// The tokens of a row block's first token tile for Group's tiles of `split` shape (2 × 6)
/// or not (1 × 16): force_first_tile_tokens's, else on Zen 5 Group::zen5_first_tokens of
/// 2 × 6 where it has one, else the shape's width. Q4_0 4: a 6-token tile streams the
/// block's weights from memory slower than a 4-token one (one thread, 16 tokens, 2048 ×
/// 131072 rows, three interleaved rounds: 376-397 -> 433-442 GFLOP/s; pp16 of the model
/// 320-340 -> 340-360 tokens/s), which the later tiles' 6 tokens in L2 more than repay.
/// Q4_K 4 too: as fast alone, but in the model (paired rounds) 8 streams +9 %, 16 +2 %,
/// pp16 282-301 -> 315-317. Not Q8_0 (313-317 -> 289-302 GFLOP/s) nor the tiles of other
/// kernels (Q6_K 326-367 -> 289-330, F16 131 -> 115).
template <class Group>
int first_tile_tokens(bool split, int width) {
  if (const int forced = forced_first_tile_tokens(); forced > 0) {
    return std::min(forced, width);
  }
  if constexpr (requires { Group::zen5_first_tokens; }) {
    if (split && this_core() == core_kind::zen5) {
      return Group::zen5_first_tokens;
    }
  }
  return width;
}

/// f(the Q4_0, Q8_0 or Q4_K kernel of this core's tiles for the weights' layout). Every one
/// prepares activations alike (prep depends on Group only).
template <class Group, class F>
decltype(auto) with_lanes_kernel(bool packed, F&& f) {
  const avx512_tiles tiles = forced_avx512_tiles();
  if (tiles == avx512_tiles::automatic ? runs_split_tiles() : tiles == avx512_tiles::split) {
    kernel_lanes_split<Group, true> in_blocks;
    kernel_lanes_split<Group, false> as_ggml;
    in_blocks.long_pass = as_ggml.long_pass = split_long_pass<Group>();
    in_blocks.first_tokens = as_ggml.first_tokens =
        first_tile_tokens<Group>(true, kernel_lanes_split<Group, true>::max_tokens);
    return packed ? f(in_blocks) : f(as_ggml);
  }
  kernel_lanes_wide<Group, true> in_blocks;
  kernel_lanes_wide<Group, false> as_ggml;
  in_blocks.first_tokens = as_ggml.first_tokens =
      first_tile_tokens<Group>(false, kernel_lanes_wide<Group, true>::max_tokens);
  return packed ? f(in_blocks) : f(as_ggml);
}

}  // namespace

}  // namespace baton::cpu::detail
