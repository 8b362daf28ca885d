// Internal to matmul_avx2.cpp (compiled with its AVX2 flags); included nowhere else.
// F16, BF16 and F32 weights by f32 activations: float lanes over k, two alternating
// 8-lane accumulators per element, then hsum; f16 and bf16 activations are widened to
// f32 once (padded with zeros to a multiple of 8).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx2/common.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

// -- F16, BF16, F32: float lanes over k ------------------------------------------------

enum class fkind { f32, f16, bf16 };

template <fkind K>
struct kernel_float {
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 1;
  static constexpr int max_tokens = 6;
  static constexpr size_t elt = K == fkind::f32 ? 4 : 2;

  // padded with zeros to a multiple of 8, so tiles load whole registers
  size_t prep_bytes(int64_t n_in) const {
    return K == fkind::f32 ? 0 : (n_in + 7) / 8 * 8 * sizeof(float);
  }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    auto* o = reinterpret_cast<float*>(out);
    for (int64_t k = 0; k < n_in; k += 8) {
      _mm256_store_ps(o + k, widen(xq, k, n_in));
    }
  }

  /// 8 whole values at p as floats.
  static __m256 load8(const uint8_t* p) {
    if constexpr (K == fkind::f32) {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    } else if constexpr (K == fkind::f16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    } else {
      return _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
    }
  }

  /// 8 values from element k of a row of n as floats, zeros past n: the tail goes
  /// through a zeroed copy, the same lanes and the same zeros in every tile.
  static __m256 widen(const uint8_t* p, int64_t k, int64_t n) {
    if (k + 8 <= n) {
      return load8(p + k * elt);
    }
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, p + k * elt, static_cast<size_t>(n - k) * elt);
    return load8(buf);
  }

  /// acc[r][t][(k / 8) % 2] += w · x: two accumulators per element.
  template <int NR, int NT>
  void tile(const tile_args& a) const {
    __m256 acc[NR][NT][2];
    zero_tile(acc);
    // j is a constant in every call, so the accumulators stay in registers
    auto step = [&]<int j>(int64_t k, bool full) {
      __m256 w[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wr = a.w + r * a.w_stride;
        if ((k * elt) % 64 == 0) {
          prefetch_ahead(wr + k * elt, 64);
        }
        w[r] = full ? load8(wr + k * elt) : widen(wr, k, a.n_in);
      }
      for (int t = 0; t < NT; ++t) {
        const uint8_t* xr = a.x + t * a.x_stride;
        __m256 x;
        if constexpr (K == fkind::f32) {
          x = full ? load8(xr + k * elt) : widen(xr, k, a.n_in);
        } else {
          x = _mm256_load_ps(reinterpret_cast<const float*>(xr) + k);  // padded
        }
        for (int r = 0; r < NR; ++r) {
          acc[r][t][j] = _mm256_fmadd_ps(w[r], x, acc[r][t][j]);
        }
      }
    };
    int64_t k = 0;
    for (; k + 16 <= a.n_in; k += 16) {
      step.template operator()<0>(k, true);
      step.template operator()<1>(k + 8, true);
    }
    if (k + 8 <= a.n_in) {
      step.template operator()<0>(k, true);
      k += 8;
      if (k < a.n_in) {
        step.template operator()<1>(k, false);
      }
    } else if (k < a.n_in) {
      step.template operator()<0>(k, false);
    }
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        a.y[t * a.ldy + r] = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
      }
    }
  }
};

}  // namespace

}  // namespace baton::cpu::detail
