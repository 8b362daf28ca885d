// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// What the AVX-512 kernels share: sums of 16 lanes (floats in a fixed tree), the
// software prefetch of weights (matmul.hpp's prefetch_plan), and where a tile's rows lie.
#pragma once

// GCC 12's AVX-512 headers start results from _mm512_undefined_*() and warn on it
// (GCC bug 105593); the warning says nothing about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/isa.hpp"
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

/// A tile's float accumulators, all zero.
template <int NR, int NT>
inline void zero_tile(__m512 (&acc)[NR][NT]) {
  #pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) {
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      acc[r][t] = _mm512_setzero_ps();
    }
  }
}

/// A tile's outputs: y[t * ldy + r] = hsum(acc[r][t]).
template <int NR, int NT>
inline void write_sums(const tile_args& a, const __m512 (&acc)[NR][NT]) {
  #pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) {
    #pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      a.y[t * a.ldy + r] = hsum(acc[r][t]);
    }
  }
}

/// Floats of a tile's partial sums an element between passes over n_in (k_pass): its
/// accumulator, 16 lanes.
constexpr int tile_part_floats = 16;

/// A tile's accumulators as its pass over [k0, k1) of n_in starts: zeros for the first
/// pass, else the partial sums the pass before left at part.
template <int NR, int NT>
inline void start_sums(const tile_args& a, __m512 (&acc)[NR][NT]) {
  #pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) {
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      acc[r][t] = a.k0 == 0 ? _mm512_setzero_ps()
                            : _mm512_load_ps(a.part + (r * a.part_ld + t) * tile_part_floats);
    }
  }
}

/// Its outputs after the last pass (write_sums), else its partial sums for the next.
template <int NR, int NT>
inline void end_sums(const tile_args& a, const __m512 (&acc)[NR][NT]) {
  if (a.k1 == a.n_in) {
    write_sums(a, acc);
    return;
  }
  #pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) {
    #pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      _mm512_store_ps(a.part + (r * a.part_ld + t) * tile_part_floats, acc[r][t]);
    }
  }
}

// -- where a tile's rows lie ----------------------------------------------------------

/// Where a tile's rows keep their whole pieces (groups of 16 blocks, pairs of super-blocks,
/// Q6_K super-blocks; `piece` bytes each, `whole` a row) and their tails (the partial last
/// group, where a row has one): row r's piece g at groups + r · gap + g · stride, its tail
/// at tail + r · tail_gap. The matrix's rows below a.block_rows lie in blocks of
/// packed_block (pack_rows), the others (and every row of ggml's layout, where block_rows
/// is 0) alone; a tile's rows are all in one block or all alone (the driver ends tiles at a
/// block's end).
struct tile_rows {
  const uint8_t* groups;
  size_t gap;
  size_t stride;
  const uint8_t* tail;
  size_t tail_gap;

  const uint8_t* group(int r, int64_t g) const { return groups + r * gap + g * stride; }
};
inline tile_rows rows_of(const tile_args& a, size_t piece, int64_t whole) {
  const size_t pieces = static_cast<size_t>(whole) * piece;
  const size_t tail_bytes = a.w_stride - pieces;
  if (a.row0 < a.block_rows) {
    const size_t j = static_cast<size_t>(a.row0 % packed_block);
    const uint8_t* block = a.w - j * a.w_stride;
    return {block + j * piece, piece, packed_block * piece,
            block + packed_block * pieces + j * tail_bytes, tail_bytes};
  }
  return {a.w, a.w_stride, piece, a.w + pieces, a.w_stride};
}

// -- prefetch ---------------------------------------------------------------------

/// The lines of [p, p + bytes) a prefetch distance `f` ahead, into L1 or L2 (the plan's:
/// matmul.hpp's prefetch_plan). Measured on Zen 4 from DRAM: the hardware prefetcher alone
/// kept too few lines in flight for a row alone once the activations took a good part of
/// L1 (n_in = 8192 streamed at 18 GB/s, 30 with 8 KiB ahead; 4 KiB read slower, 16 KiB as
/// fast), and into L2 a lone thread's stream no longer stalled on L1's few miss buffers
/// (bench_kernels, one thread, into L1 -> into L2, GB/s: Q4_0 21-23 -> 26-30, Q8_0 19 ->
/// 22.5, Q4_K 16-22 -> 24-28, Q6_K 23 -> 27-30, F16 at n_in 8192 18 -> 26-27). Zen 5 is
/// the other way round: see automatic_prefetch_plan (matmul.cpp).

/// The prefetch for a tile of nt tokens: the call's plan (tile_args::prefetch) for one
/// (rows alone or a block), for more the driver's choice (tile_args::tokens_prefetch).
inline weight_prefetch tile_prefetch(const tile_args& a, int nt, bool block) {
  if (nt > 1) {
    return a.tokens_prefetch;
  }
  return block ? a.prefetch.blocks : a.prefetch.rows;
}

inline void prefetch_ahead(const uint8_t* p, int64_t bytes, weight_prefetch f) {
  if (f.distance == 0) {
    return;
  }
  const char* at = reinterpret_cast<const char*>(p + f.distance);
  for (int64_t o = 0; o < bytes; o += 64) {
    if (f.into_l1) {
      _mm_prefetch(at + o, _MM_HINT_T0);
    } else {
      _mm_prefetch(at + o, _MM_HINT_T1);
    }
  }
}

}  // namespace

}  // namespace baton::cpu::detail
