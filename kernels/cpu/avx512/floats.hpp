// Internal to matmul_avx512.cpp (compiled with its AVX-512 flags); included nowhere else.
// F16, BF16 and F32 weights by f32 activations: float lanes over k, one 16-lane
// accumulator per element (16 elements of k at a time, then hsum); f16 and bf16
// activations are widened to f32 once. Decode tiles one row, or blocks of 8 rows (up to
// three blocks in lockstep), prefill 4 × 6.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- F16, BF16, F32: float lanes over k ------------------------------------------------

enum class fkind { f32, f16, bf16 };

/// F16, BF16 or F32 weights by f32 activations. An element's value: lane l accumulates
/// w[k] · x[k] for k = l, 16 + l, 32 + l, ... in one chain, acc = fma(w, x, acc) (the
/// row's last partial 16 masked), then hsum. One accumulator per element, so a prefill
/// tile holds Rows × Tokens of them and loads each weight vector once for Tokens FMAs
/// and each activation vector once for Rows; a decode tile is one row, or a whole block.
///
/// Rows in blocks (weight_layout::packed_blocks): 64-byte pieces (32 f16 or bf16, 16 f32)
/// of the block's 8 rows side by side, the rows' tails (n_in % those) after. A decode tile
/// is a whole block, or up to three from as many parts of the call's rows in lockstep
/// (decode_blocks): each 16 activations widened once for all their rows, no software
/// prefetch. Zen 4, F16, two threads, decode over read (a probe of the same arithmetic,
/// bit-identical): 2048 × 8192 0.93 -> 1.00 in 36-42 GB/s stretches, 0.82-0.85 -> 0.93-0.95
/// in 70+ ones; 8192 × 2048 0.92 -> 1.00 and 0.77-0.78 -> 0.89-0.90.
template <fkind K, int Rows, int Tokens>
struct kernel_float {
  static constexpr bool block_tiles = true;
  static constexpr int max_rows_1 = static_cast<int>(packed_block);
  static constexpr int max_rows = Rows;
  static constexpr int max_tokens = Tokens;
  static constexpr size_t elt = K == fkind::f32 ? 4 : 2;
  static constexpr int64_t piece = 64 / elt;  // elements a block's row piece holds

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

  /// One token's row as the caller gave it (f16 or bf16, widened here; f32 as it is) by nr
  /// rows (1, or a whole block): the values tile<nr, 1> reads from the prepared row, so the
  /// same operations.
  void decode_unprepared(const tile_args& a, int nr) const {
    if (nr == max_rows_1) {
      const tile_args one[1] = {a};
      blocks_from<1, true>(one);
    } else {
      tile_from<1, 1, true>(a);
    }
  }

  /// The most whole blocks decode_blocks reads in lockstep.
  static constexpr int max_block_streams = 3;

  /// n (1 .. max_block_streams) whole blocks of one token's unprepared row in lockstep, a
  /// piece of each in turn: each block's rows take decode_unprepared's operations, from n
  /// streams of weights (run_matmul's prefetch_plan::block_streams).
  void decode_blocks(const tile_args* a, int n) const {
    if (n == 3) {
      const tile_args three[3] = {a[0], a[1], a[2]};
      blocks_from<3, true>(three);
    } else if (n == 2) {
      const tile_args two[2] = {a[0], a[1]};
      blocks_from<2, true>(two);
    } else {
      decode_unprepared(a[0], max_rows_1);
    }
  }

  /// acc[r][t] += w · x, 16 elements of k at a time. Raw: x rows unprepared (elt bytes an
  /// element).
  template <int NR, int NT, bool Raw>
  void tile_from(const tile_args& a) const {
    if constexpr (NT == 1 && NR == max_rows_1) {
      const tile_args one[1] = {a};
      blocks_from<1, Raw>(one);
    } else {
      __m512 acc[NR][NT];
      zero_tile(acc);
      rest_from<NR, NT, Raw>(a, acc, 0);
    }
  }

  /// Activations k .. k + 15 of token t (m: those in the row).
  template <bool Raw>
  static __m512 act(const tile_args& a, int t, int64_t k, __mmask16 m) {
    if constexpr (Raw) {
      return widen(a.x + t * a.x_stride + k * elt, m);
    } else {
      const uint8_t* xp = a.x + t * a.x_stride + k * 4;
      return m == 0xffff ? _mm512_loadu_ps(xp) : _mm512_maskz_loadu_ps(m, xp);
    }
  }

  /// S whole blocks (the driver runs this shape on those alone) of one token: each block's
  /// rows' piece i lie side by side, a stream of weights, and the S streams advance a piece
  /// at a time together, each 16 activations widened once for all S × 8 rows. No software
  /// prefetch on either core (Zen 5, F16 2048 x 8192, decode over read 0.66-0.75 without,
  /// 0.55 with the quantized blocks' 6 KiB into L1); on Zen 5 three streams a thread read
  /// 0.81-0.85 of the read where one read 0.63-0.76 (bench/RESULTS.md, eighteenth
  /// session; F32 0.60-0.62 -> 0.87-0.90). Then each block's tail and sums as any tile's.
  template <int S, bool Raw>
  void blocks_from(const tile_args (&a)[S]) const {
    constexpr int NR = max_rows_1;
    __m512 acc[S][NR][1];
    tile_rows at[S];
    const int64_t whole = a[0].n_in / piece;
    #pragma GCC unroll 4
    for (int j = 0; j < S; ++j) {
      zero_tile(acc[j]);
      at[j] = rows_of(a[j], 64, whole);
    }
    int64_t k = 0;
    for (int64_t i = 0; i < whole; ++i, k += piece) {
      #pragma GCC unroll 4
      for (int64_t s = 0; s < piece; s += 16) {
        const __m512 x = act<Raw>(a[0], 0, k + s, 0xffff);
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          #pragma GCC unroll 4
          for (int j = 0; j < S; ++j) {
            const uint8_t* p = at[j].group(0, i) + r * 64 + s * elt;
            acc[j][r][0] = _mm512_fmadd_ps(widen(p, 0xffff), x, acc[j][r][0]);
          }
        }
      }
    }
    #pragma GCC unroll 4
    for (int j = 0; j < S; ++j) {
      rest_from<NR, 1, Raw>(a[j], acc[j], k);
    }
  }

  /// A tile's elements from k on: its rows' whole pieces (rows not read as a block), the
  /// tail, then the sums.
  template <int NR, int NT, bool Raw>
  void rest_from(const tile_args& a, __m512 (&acc)[NR][NT], int64_t k) const {
    const int64_t whole = a.n_in / piece;
    const tile_rows at = rows_of(a, 64, whole);
    // 16 weights of each row from w[r] by the activations kk .. kk + 15 (m: those in the
    // row); prefetch: a line per 64 bytes of weights, a piece
    const weight_prefetch pf = tile_prefetch(a, NT, false);
    auto step = [&](const uint8_t* const (&w)[NR], int64_t kk, __mmask16 m, bool prefetch) {
      __m512 wv[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        if (prefetch) {
          prefetch_ahead(w[r], 64, pf);
        }
        wv[r] = widen(w[r], m);
      }
      #pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const __m512 x = act<Raw>(a, t, kk, m);
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          acc[r][t] = _mm512_fmadd_ps(wv[r], x, acc[r][t]);
        }
      }
    };
    for (int64_t i = k / piece; i < whole; ++i, k += piece) {
      #pragma GCC unroll 4
      for (int64_t s = 0; s < piece; s += 16) {
        const uint8_t* w[NR];
        #pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          w[r] = at.group(r, i) + s * elt;
        }
        step(w, k + s, 0xffff, s == 0);
      }
    }
    // the tail: n_in % piece elements of each row
    for (int64_t s = 0; k < a.n_in; k += 16, s += 16) {
      const uint8_t* w[NR];
      #pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        w[r] = at.tail + r * at.tail_gap + s * elt;
      }
      step(w, k, a.n_in - k >= 16 ? 0xffff : tail_mask(a.n_in - k), true);
    }
    write_sums(a, acc);
  }
};

/// Float tiles: decode one row alone (a chain of FMAs per 16 elements reads 29 GB/s at
/// 3.7 GHz, a thread's share of DRAM here; 2 or 4 rows of ggml's layout read slower on
/// Zen 4) or a whole block of 8 in blocks, prefill 4 × 6: four
/// weight vectors widened and six activation vectors loaded for 24 FMAs, within Zen 4's
/// one 64-byte load a cycle (the 3 × 4 tile of two accumulators an element folded an
/// activation load into nearly every FMA). One thread, F16 2048 × 2048, 128 tokens, Zen 4:
/// 3 × 4 of two accumulators 88-95 GFLOP/s, 1 × 3 × 4 90-95, 2 × 3 × 8 96-100, 4 × 6 × 4
/// 100-108, 1 × 5 × 5 103-109, 1 × 4 × 6 105-109 (f32 FMA peak 117).
template <fkind K>
using kernel_float_tiles = kernel_float<K, 4, 6>;

}  // namespace

}  // namespace baton::cpu::detail
