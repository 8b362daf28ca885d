// The AVX-512 (F, BW, VL, DQ, VNNI) twin of matmul: tile kernels for every weight type.
// Integer dot products use vpdpbusd (unsigned × signed bytes): Q4_0 nibbles are unsigned
// as stored and Q8_0 weights are made unsigned by +128; the activation-only correction
// (−8·Σy or −128·Σy per 4 bytes) starts the accumulator. K-quants use vpmaddubsw then
// vpdpwssd with the sub-block scales. Each output element owns one 16-lane float
// accumulator (Q4_0 and Q8_0 one block per lane, reduced exactly in integers first; the
// float types 16 elements of k), whose update sequence does not depend on the tile it is
// computed in. Decode tiles are one row: from DRAM one sequential stream (with software
// prefetch) reads faster on Zen 4 than several (and on Zen 5: rows taken from 2, 4 or 8
// parts of a thread's range in turn read 0.9, 0.6, 0.6 times as fast).
//
// Every loop over a tile's rows or tokens is fully unrolled (#pragma GCC unroll 16):
// without it GCC 12 kept a 1 × 16 tile's accumulators in memory, a load and a store
// around every FMA (Q4_0 prefill, one thread, Zen 5: 240 -> 410 GFLOP/s). Unrolling
// changes no operation of any element.

// GCC 12's AVX-512 headers start results from _mm512_undefined_*() and warn on it
// (GCC bug 105593); the warning says nothing about this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

/// Σ of 16 lanes in a fixed tree: halves, quarters, pairs, then the last two.
inline float hsum(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline int32_t hsum_epi32(__m512i v) { return _mm512_reduce_add_epi32(v); }

// -- prefetch ---------------------------------------------------------------------

/// How far ahead of the weights being read they are prefetched. Measured on Zen 4 from
/// DRAM: the hardware prefetcher alone keeps too few lines in flight once the activations
/// take a good part of L1 (n_in = 8192 streamed at 18 GB/s, 30 GB/s with this).
constexpr int64_t prefetch_distance = 8192;

/// Whether Q4_0 rows longer than 4 KiB (n_in above ~7,000: FFN down) are prefetched.
/// Measured on Zen 5 (AMD family 1Ah), one decode row of 2048 × 8192: 17 GB/s with the
/// prefetch, 21 without (two threads 32 and 40; bench_kernels, three runs); the shorter
/// rows and the other types read as fast or faster with it. Zen 4 keeps it.
/// The CPU's family as cpuid leaf 1 states it (base + extended), 0 if it does not.
unsigned cpu_family() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) {
    return 0;
  }
  return ((a >> 8) & 0xf) + ((a >> 20) & 0xff);
}

/// Whether cpuid's vendor is AuthenticAMD.
bool amd_cpu() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(0, &a, &b, &c, &d) != 0 && b == 0x68747541u;  // "Auth"
}

bool prefetch_long_q4_0_rows() {
  static const bool yes = cpu_family() < 0x1a;
  return yes;
}

/// Prefetches the lines of [p, p + bytes) a prefetch distance ahead.
inline void prefetch_ahead(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + prefetch_distance + o), _MM_HINT_T0);
  }
}

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

constexpr int64_t n_groups(int64_t n_in) { return (n_in / 32 + 15) / 16; }

/// q[k] lane l = dword k of the qs of Q8_0 block l, for 16 whole blocks at p (ggml's
/// layout). The qs of blocks l and l + 8 share a register (halves), and an 8 × 8 dword
/// transpose in each half puts dword k of every block in q[k] (a gather a dword per lane
/// ran Q8_0 decode at half the speed).
inline void q8_0_dwords_by_lane(const uint8_t* p, __m512i (&q)[8]) {
  const auto qs = [p](int l) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + l * sizeof(block_q8_0) + 2));
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

/// Each lane's exact block dot Σ (w − offset) · y from a group's unsigned weight dwords u
/// (lane l = block l) and its prepared activations; the integer order cannot matter.
inline __m512i lane_dots(const __m512i (&u)[8], const q8_group& y) {
  __m512i s0 = _mm512_load_si512(y.corr);
  __m512i s1 = _mm512_setzero_si512();
  #pragma GCC unroll 4
  for (int k = 0; k < 8; k += 2) {
    s0 = _mm512_dpbusd_epi32(s0, u[k], _mm512_load_si512(y.qs[k]));
    s1 = _mm512_dpbusd_epi32(s1, u[k + 1], _mm512_load_si512(y.qs[k + 1]));
  }
  return _mm512_add_epi32(s0, s1);
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

/// One Q4_0 row's group of 16 blocks, one block per dword lane: u[k] lane l = the
/// unsigned nibbles of elements 4k .. 4k + 3 of block l (k < 4: low nibbles of qs dword
/// k; k ≥ 4: high nibbles of qs dword k − 4, elements 16 + 4(k − 4) ...), d lane l = its
/// scale: the layout of q8_group.
struct q4_0_group {
  static constexpr size_t bytes = 16 * sizeof(block_q4_0);  // in either layout
  static constexpr size_t qs_bytes = 256;                    // packed: then the scales
  static constexpr int32_t offset = 8;

  __m512i u[8];
  __m512 d;

  /// Whether rows of w_stride bytes are prefetched in software (prefetch_long_q4_0_rows).
  static bool prefetch(size_t w_stride) { return w_stride <= 4096 || prefetch_long_q4_0_rows(); }

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
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    #pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i q = _mm512_loadu_si512(qs + 64 * k);
      u[k] = _mm512_and_si512(q, lo4);
      u[k + 4] = _mm512_and_si512(_mm512_srli_epi16(q, 4), lo4);
    }
    d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ds)));
  }

};

/// One Q8_0 row's group of 16 blocks, one block per dword lane: u[k] lane l = bytes
/// 4k .. 4k + 3 of block l's qs made unsigned (+128), d lane l = its scale.
struct q8_0_group {
  static constexpr size_t bytes = 16 * sizeof(block_q8_0);  // in either layout
  static constexpr size_t qs_bytes = 512;                    // packed: then the scales
  static constexpr int32_t offset = 128;

  __m512i u[8];
  __m512 d;

  static bool prefetch(size_t) { return true; }

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
    d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ds)));
  }

};

/// The last group of a row, ggml's layout in either (pack_rows leaves it where it was):
/// `n` < 16 blocks, the rest as zeros.
template <class Group>
void load_partial(Group& w, const uint8_t* p, int n) {
  alignas(64) uint8_t buf[Group::bytes] = {};
  std::memcpy(buf, p, static_cast<size_t>(n) * (Group::bytes / 16));
  w.load(buf);
}

/// Q4_0 or Q8_0 weights (Group: q4_0_group, q8_0_group) by prepared Q8_0 activations. An
/// element's value: lane l accumulates blocks l, 16 + l, 32 + l, ... as
/// acc = fma(float(block dot), dx · dy, acc), then the 16 lanes are summed by hsum. Every
/// tile shape computes exactly that, from ggml's layout or (Packed) pack_rows' — the lanes
/// are the same, only how they are loaded differs. One accumulator per element: a lone
/// row's chain waits for one FMA per 16 blocks.
template <class Group, bool Packed, int Rows, int Tokens, int64_t LongPass>
struct kernel_lanes {
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = Rows;
  static constexpr int max_tokens = Tokens;
  static constexpr int part_floats = 16;

  /// Rows longer than 2048 pass in slices of LongPass elements, so that the tile's tokens'
  /// prepared activations stay in L1 while the rows of a block use them.
  int64_t k_pass(int64_t n_in) const { return n_in <= 2048 ? n_in : LongPass; }

  size_t prep_bytes(int64_t n_in) const { return n_groups(n_in) * sizeof(q8_group); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    prep_q8_groups(xq, out, n_in, Group::offset);
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    const int64_t nb = a.n_in / 32;
    constexpr size_t group_bytes = Group::bytes;
    __m512 acc[NR][NT];
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = a.k0 == 0 ? _mm512_setzero_ps()
                              : _mm512_load_ps(a.part + (r * a.part_ld + t) * part_floats);
      }
    }
    // k_pass slices are whole groups (512 elements)
    const int64_t g1 = a.k1 == a.n_in ? n_groups(a.n_in) : a.k1 / 512;
    const bool prefetch = Group::prefetch(a.w_stride);
    const int64_t whole = nb / 16;  // groups that are not the row's partial last one
    for (int64_t g = a.k0 / 512; g < g1; ++g) {
      Group w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* row = a.w + r * a.w_stride;
        if (g < whole) {
          if constexpr (Packed) {
            const uint8_t* qs = row + group_bytes * g;  // then its 16 scales
            if (prefetch) {
              prefetch_ahead(qs, group_bytes);
            }
            w[r].load_packed(qs, qs + Group::qs_bytes);
          } else {
            const uint8_t* wp = row + g * group_bytes;
            if (prefetch) {
              prefetch_ahead(wp, group_bytes);
            }
            w[r].load(wp);
          }
        } else {
          load_partial(w[r], row + g * group_bytes, static_cast<int>(nb - 16 * g));
        }
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const q8_group*>(a.x + t * a.x_stride)[g];
        const __m512 dy = _mm512_load_ps(y.d);
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lane_dots(w[r].u, y)), _mm512_mul_ps(w[r].d, dy),
                                      acc[r][t]);
        }
      }
    }
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        if (a.k1 == a.n_in) {
          a.y[t * a.ldy + r] = hsum(acc[r][t]);
        } else {
          _mm512_store_ps(a.part + (r * a.part_ld + t) * part_floats, acc[r][t]);
        }
      }
    }
  }

  void block_ints(const uint8_t* w, const uint8_t* x, int64_t n_in, int32_t* out) const {
    const int64_t nb = n_in / 32;
    uint8_t* buf = scratch(prep_bytes(n_in));
    prep(x, buf, n_in);
    const auto* groups = reinterpret_cast<const q8_group*>(buf);
    for (int64_t g = 0; g < n_groups(n_in); ++g) {
      const int n = static_cast<int>(std::min<int64_t>(16, nb - 16 * g));
      Group u;
      if (n == 16) {
        u.load(w + g * Group::bytes);
      } else {
        load_partial(u, w + g * Group::bytes, n);
      }
      alignas(64) int32_t l[16];
      _mm512_store_si512(l, lane_dots(u.u, groups[g]));
      std::memcpy(out + 16 * g, l, static_cast<size_t>(n) * sizeof(int32_t));
    }
  }
};

/// Prefill tiles (Q4_0, measured; Q8_0 the same shapes) for a core that runs 512-bit operations whole (Zen 5; its 48 KiB
/// L1d): 1 × 16, the row's group unpacked once for 16 tokens whose prepared activations of
/// n_in = 2048 (40 KiB) stay in L1 (one thread, 2048 × 2048: 1 × 8 380, 1 × 12 460,
/// 1 × 16 470-490 GFLOP/s; 2 × 6 370, 3 × 4 320). Longer rows in slices of 1024: n_in =
/// 8192 ran at 200 GFLOP/s in one pass, 380 in slices of 1024 (300 of 2048, 320 of 512).
template <class Group, bool Packed>
using kernel_lanes_wide = kernel_lanes<Group, Packed, 1, 16, 1024>;

/// The same for a core that splits them in halves (Zen 4: one 64-byte load a cycle, 32 KiB
/// L1d): in 1 × 16 each block dot's 8 vpdpbusd wait on 10 loads of activations, and 16
/// tokens' activations overflow L1; 2 × 6 loads each activation for two rows (one thread,
/// 2048 × 2048: 1 × 16 155, 2 × 8 234, 2 × 6 280 GFLOP/s).
template <class Group, bool Packed>
using kernel_lanes_split = kernel_lanes<Group, Packed, 2, 6, 2048>;

/// Whether this core splits 512-bit operations in two 256-bit halves: AMD family 19h
/// (Zen 4, the first AMD core with AVX-512).
bool splits_512_bit_ops() {
  static const bool yes = amd_cpu() && cpu_family() == 0x19;
  return yes;
}

/// f(the Q4_0 or Q8_0 kernel of this core's tiles for the weights' layout). Every one
/// prepares activations alike (prep depends on Group only).
template <class Group, class F>
decltype(auto) with_lanes_kernel(bool packed, F&& f) {
  const avx512_tiles tiles = forced_avx512_tiles();
  if (tiles == avx512_tiles::automatic ? splits_512_bit_ops() : tiles == avx512_tiles::split) {
    return packed ? f(kernel_lanes_split<Group, true>{}) : f(kernel_lanes_split<Group, false>{});
  }
  return packed ? f(kernel_lanes_wide<Group, true>{}) : f(kernel_lanes_wide<Group, false>{});
}

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

// -- F16, BF16, F32: float lanes over k ------------------------------------------------

enum class fkind { f32, f16, bf16 };

/// F16, BF16 or F32 weights by f32 activations. An element's value: lane l accumulates
/// w[k] · x[k] for k = l, 16 + l, 32 + l, ... in one chain, acc = fma(w, x, acc) (the
/// row's last partial 16 masked), then hsum. One accumulator per element, so a prefill
/// tile holds Rows × Tokens of them and loads each weight vector once for Tokens FMAs
/// and each activation vector once for Rows; decode tiles take DecodeRows rows, each its
/// own chain, so that one FMA's latency does not bound a lone row.
template <fkind K, int DecodeRows, int Rows, int Tokens>
struct kernel_float {
  static constexpr int max_rows_1 = DecodeRows;
  static constexpr int max_rows = Rows;
  static constexpr int max_tokens = Tokens;
  static constexpr size_t elt = K == fkind::f32 ? 4 : 2;

  // f16 and bf16 activations are widened to f32 once (exactly)
  size_t prep_bytes(int64_t n_in) const { return K == fkind::f32 ? 0 : n_in * sizeof(float); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    auto* o = reinterpret_cast<float*>(out);
    int64_t k = 0;
    for (; k + 16 <= n_in; k += 16) {
      _mm512_store_ps(o + k, widen(xq + 2 * k, 0xffff));
    }
    if (k < n_in) {
      _mm512_mask_storeu_ps(o + k, tail_mask(n_in - k), widen(xq + 2 * k, tail_mask(n_in - k)));
    }
  }
  static __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

  /// 16 weights (or activations) from p as floats; lanes outside `m` are zero. Full
  /// registers load unmasked: masked loads from DRAM stall the stream (Zen 4).
  static __m512 widen(const uint8_t* p, __mmask16 m) {
    if (m == 0xffff) {
      if constexpr (K == fkind::f32) {
        return _mm512_loadu_ps(p);
      } else if constexpr (K == fkind::f16) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      } else {
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
      }
    }
    if constexpr (K == fkind::f32) {
      return _mm512_maskz_loadu_ps(m, p);
    } else if constexpr (K == fkind::f16) {
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    } else {
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    }
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    tile_from<NR, NT, false>(a);
  }

  /// One token's row as the caller gave it (f16 or bf16, widened here) by nr ≤ DecodeRows
  /// rows: the values tile<nr, 1> reads from the prepared row, so the same operations.
  void decode_unprepared(const tile_args& a, int nr) const
    requires(K != fkind::f32)
  {
    [&]<int... I>(std::integer_sequence<int, I...>) {
      ((nr == I + 1 ? tile_from<I + 1, 1, true>(a) : void()), ...);
    }(std::make_integer_sequence<int, DecodeRows>{});
  }

  /// acc[r][t] += w · x, 16 elements of k at a time. Raw: x rows unprepared (elt bytes an
  /// element).
  template <int NR, int NT, bool Raw>
  void tile_from(const tile_args& a) const {
    __m512 acc[NR][NT];
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm512_setzero_ps();
      }
    }
    // Prefetch: a line per 64 bytes of weights (every other step of f16 and bf16)
    auto step = [&](int64_t k, __mmask16 m, bool prefetch) {
      __m512 w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + k * elt;
        if (prefetch) {
          prefetch_ahead(wp, 64);
        }
        w[r] = widen(wp, m);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        __m512 x;
        if constexpr (Raw) {
          x = widen(a.x + t * a.x_stride + k * elt, m);
        } else {
          const uint8_t* xp = a.x + t * a.x_stride + k * 4;
          x = m == 0xffff ? _mm512_loadu_ps(xp) : _mm512_maskz_loadu_ps(m, xp);
        }
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
        }
      }
    };
    int64_t k = 0;
    for (; k + 32 <= a.n_in; k += 32) {
      step(k, 0xffff, true);
      step(k + 16, 0xffff, elt == 4);
    }
    for (; k < a.n_in; k += 16) {
      step(k, a.n_in - k >= 16 ? 0xffff : tail_mask(a.n_in - k), true);
    }
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        a.y[t * a.ldy + r] = hsum(acc[r][t]);
      }
    }
  }
};

/// Float tiles: decode one row (a chain of FMAs per 16 elements reads 29 GB/s at 3.7 GHz,
/// a thread's share of DRAM here; 2 or 4 rows read slower on Zen 4), prefill 4 × 6: four
/// weight vectors widened and six activation vectors loaded for 24 FMAs, within Zen 4's
/// one 64-byte load a cycle (the 3 × 4 tile of two accumulators an element folded an
/// activation load into nearly every FMA). One thread, F16 2048 × 2048, 128 tokens, Zen 4:
/// 3 × 4 of two accumulators 88-95 GFLOP/s, 1 × 3 × 4 90-95, 2 × 3 × 8 96-100, 4 × 6 × 4
/// 100-108, 1 × 5 × 5 103-109, 1 × 4 × 6 105-109 (f32 FMA peak 117).
template <fkind K>
using kernel_float_tiles = kernel_float<K, 1, 4, 6>;

/// f(the kernel for `weight` weights in this layout).
template <class F>
decltype(auto) with_kernel(ggml_type weight, bool packed, F&& f) {
  switch (weight) {
    case ggml_type::q4_0:
      return with_lanes_kernel<q4_0_group>(packed, f);
    case ggml_type::q8_0:
      return with_lanes_kernel<q8_0_group>(packed, f);
    case ggml_type::q4_k:
      return f(kernel_k<false>{});
    case ggml_type::q6_k:
      return f(kernel_k<true>{});
    case ggml_type::f16:
      return f(kernel_float_tiles<fkind::f16>{});
    case ggml_type::bf16:
      return f(kernel_float_tiles<fkind::bf16>{});
    case ggml_type::f32:
      return f(kernel_float_tiles<fkind::f32>{});
    default:
      std::abort();
  }
}

}  // namespace

void matmul_avx512(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                   int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1,
                   bool packed) {
  const size_t xs = activation_row_bytes(weight, n_in);
  with_kernel(weight, packed, [&](const auto& k) {
    run_matmul(k, weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1, xs);
  });
}

size_t prepared_row_bytes_avx512(ggml_type weight, int64_t n_in, int64_t n_tokens) {
  return with_kernel(weight, false,
                     [&](const auto& k) { return prepared_row_bytes(k, n_in, n_tokens); });
}

void prepare_row_avx512(ggml_type weight, const void* xq, void* out, int64_t n_in) {
  with_kernel(weight, false, [&](const auto& k) {
    if (k.prep_bytes(n_in) > 0) {
      k.prep(static_cast<const uint8_t*>(xq), static_cast<uint8_t*>(out), n_in);
    }
  });
}

void block_dot_ints_avx512(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                           int32_t* out) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* x = static_cast<const uint8_t*>(x_row);
  switch (weight) {
    case ggml_type::q4_0:
      return kernel_lanes_wide<q4_0_group, false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q8_0:
      return kernel_lanes_wide<q8_0_group, false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q4_k:
      return kernel_k<false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q6_k:
      return kernel_k<true>{}.block_ints(w, x, n_in, out);
    default:
      std::abort();
  }
}

}  // namespace baton::cpu::detail
