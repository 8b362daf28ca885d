// Internal to matmul_avx2.cpp (compiled with its AVX2 flags); included nowhere else.
// The activation conversions (f32 rows to Q8_0, Q8_K, F16, BF16), bit for bit the scalar
// references', and the lane helpers only they use (abs, max of lanes, roundf, the pack
// of 32 int32 to int8).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/blocks.hpp"

namespace baton::cpu::detail {

namespace {

// -- activation conversions ---------------------------------------------------------

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/// max over lanes; NaN lanes are skipped as fmax / `>` skip them (max_ps returns its
/// second operand when either is NaN, and the accumulator is never NaN).
inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

/// roundf: half away from zero. v − trunc(v) is exact, so the comparison is too.
inline __m256 roundf_ps(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = abs_ps(_mm256_sub_ps(v, t));
  const __m256 one = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/// 32 int32 (four registers, in order) to 32 int8 with saturation.
inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  // packs work per 128-bit lane: dwords come out as a0 b0 c0 d0 a1 b1 c1 d1
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_q8_0(const float* x, uint8_t* out, int64_t n) {
  for (int64_t i = 0; i < n / qk8_0; ++i, x += qk8_0) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      amax = _mm256_max_ps(abs_ps(v[j]), amax);
    }
    const float d = hmax(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256i q[4];
    for (int j = 0; j < 4; ++j) {
      q[j] = _mm256_cvttps_epi32(roundf_ps(_mm256_mul_ps(v[j], _mm256_set1_ps(id))));
    }
    const uint16_t dh = fp32_to_fp16(d);
    uint8_t* b = out + i * sizeof(block_q8_0);
    std::memcpy(b, &dh, 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + 2), pack_i8(q[0], q[1], q[2], q[3]));
  }
}

void quantize_q8_k(const float* x, uint8_t* out, int64_t n) {
  for (int64_t i = 0; i < n / qk_k; ++i, x += qk_k) {
    block_q8_k b;
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < qk_k; j += 8) {
      amax = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + j)), amax);
    }
    const float am = hmax(amax);
    if (am == 0.0f) {
      std::memset(&b, 0, sizeof b);
    } else {
      // the reference keeps the first element of the largest magnitude
      float max = 0.0f;
      for (int j = 0; j < qk_k; j += 8) {
        const int hit = _mm256_movemask_ps(
            _mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), _mm256_set1_ps(am), _CMP_EQ_OQ));
        if (hit != 0) {
          max = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
          break;
        }
      }
      const float iscale = -127.0f / max;
      const __m256 vs = _mm256_set1_ps(iscale);
      for (int j = 0; j < qk_k; j += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
          // nearest_int: the float add rounds half to even, the mantissa holds the result
          const __m256 v = _mm256_add_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8 * k)),
                                         _mm256_set1_ps(12582912.0f));
          const __m256i m = _mm256_sub_epi32(
              _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff)),
              _mm256_set1_epi32(0x00400000));
          q[k] = _mm256_min_epi32(m, _mm256_set1_epi32(127));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + j), pack_i8(q[0], q[1], q[2], q[3]));
      }
      for (int j = 0; j < qk_k / 16; ++j) {
        // Σ of 16 bytes: sign-extend and add as i16 pairs
        const __m256i w =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * j)));
        __m128i s = _mm_add_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        s = _mm_add_epi16(s, _mm_unpackhi_epi64(s, s));
        s = _mm_add_epi16(s, _mm_srli_epi64(s, 32));
        s = _mm_add_epi16(s, _mm_srli_epi32(s, 16));
        b.bsums[j] = static_cast<int16_t>(_mm_cvtsi128_si32(s));
      }
      b.d = 1.0f / iscale;
    }
    std::memcpy(out + i * sizeof b, &b, sizeof b);
  }
}

void convert_f16(const float* x, uint8_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void convert_bf16(const float* x, uint8_t* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(
            u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)))),
        16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                              _mm256_set1_epi32(0x7f800000));
    const __m256i h =
        _mm256_and_si256(_mm256_blendv_epi8(rounded, nan, is_nan), _mm256_set1_epi32(0xffff));
    const __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), p);
  }
  for (; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

}  // namespace

}  // namespace baton::cpu::detail
