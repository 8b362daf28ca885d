// AVX2 + FMA + F16C twin of attention_head (ops.hpp): the same arithmetic as the scalar
// reference — q rounded to f16 against an f16 K, probabilities rounded to f16 against an
// f16 V, softmax in the same order — with 8-lane dot products and fused multiply-adds, so
// results agree with the reference within float rounding, not bit for bit. Compiled for
// AVX2 alone; called only when the chosen kernels are avx2 or avx512.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/attention_steps.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/ops_math.hpp"

namespace baton::cpu {

namespace {


inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline __m256 load8(const uint8_t* row, int64_t i, bool f16) {
  if (f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
  return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
}

/// x[i] = round_f16(x[i]) for i < n: F16C's conversion rounds to nearest even as
/// fp32_to_fp16 does (NaN payloads aside).
void round_to_f16(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) {
    x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
  }
}

/// scratch[p] = (q · k_p) × scale, each key's dot one 8-lane chain over the head's
/// dimensions then hsum; four keys at a time, so that their chains overlap (one key's
/// chain waits on each of its FMAs).
void scores(const float* qv, const kv_view& k, int64_t kv_head, int64_t n_kv, float scale,
            bool k16, float* scratch) {
  const int64_t d = k.head_dim;
  kv_cursor rows(k, kv_head);
  int64_t p = 0;
  for (; p + 4 <= n_kv; p += 4) {
    const uint8_t* kr[4];
    __m256 acc[4];
    for (int j = 0; j < 4; ++j) {
      kr[j] = rows.next();
      acc[j] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < d; i += 8) {
      const __m256 qi = _mm256_load_ps(qv + i);
      for (int j = 0; j < 4; ++j) {
        acc[j] = _mm256_fmadd_ps(qi, load8(kr[j], i, k16), acc[j]);
      }
    }
    for (int j = 0; j < 4; ++j) {
      scratch[p + j] = hsum(acc[j]) * scale;
    }
  }
  for (; p < n_kv; ++p) {
    const uint8_t* kr = rows.next();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 8) {
      acc = _mm256_fmadd_ps(_mm256_load_ps(qv + i), load8(kr, i, k16), acc);
    }
    scratch[p] = hsum(acc) * scale;
  }
}

/// out = Σ_p w[p] × v_p in key order, for a head of 8 × NV dimensions held in registers
/// (NV 8 or 16: heads of 64, 128), or NV = 0: any multiple of 8 up to 1024.
template <int NV>
void weighted_values(const float* w, const kv_view& v, int64_t kv_head, int64_t n_kv, bool v16,
                     float* out) {
  __m256 o[NV > 0 ? NV : 128];
  const int64_t nv = NV > 0 ? NV : v.head_dim / 8;
  for (int64_t j = 0; j < nv; ++j) {
    o[j] = _mm256_setzero_ps();
  }
  kv_cursor rows(v, kv_head);
  for (int64_t p = 0; p < n_kv; ++p) {
    const __m256 wp = _mm256_set1_ps(w[p]);
    const uint8_t* vr = rows.next();
    for (int64_t j = 0; j < nv; ++j) {
      o[j] = _mm256_fmadd_ps(wp, load8(vr, 8 * j, v16), o[j]);
    }
  }
  for (int64_t j = 0; j < nv; ++j) {
    _mm256_storeu_ps(out + 8 * j, o[j]);
  }
}

/// e^x for 8 floats within 2 ulps (tests/ops_test.cpp): x = n·ln 2 + r with |r| ≤ ln 2 / 2
/// (ln 2 in two parts), e^r by Cephes' expf polynomial, 2^n as two exponent-field factors
/// (so that results near and below FLT_MIN round once, in the last multiply); e^x = +inf
/// above ln(FLT_MAX), 0 below ln(2^-150) (where the least subnormal's half rounds to 0),
/// NaN for NaN.
inline __m256 exp_ps(__m256 x) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n within [-150, 129] here: halves within [-75, 65] are normal powers of two
  const __m256 nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-150.0f)),
                                  _mm256_set1_ps(129.0f));
  const __m256i ni = _mm256_cvtps_epi32(nc);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const auto pow2 = [](__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
  };
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, pow2(n1)), pow2(n2));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY),
                       _mm256_cmp_ps(x, _mm256_set1_ps(88.7228394f), _CMP_GT_OQ));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(),
                       _mm256_cmp_ps(x, _mm256_set1_ps(-103.972084f), _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/// y[i] = f(x[i]) for i < n, 8 at a time; the last few through a padded copy, so that
/// every element goes through the same operations. y may be x.
template <class F>
void each_8(const float* x, int64_t n, float* y, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  }
  if (i < n) {
    alignas(32) float tail[8] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm256_store_ps(tail, f(_mm256_load_ps(tail)));
    std::memcpy(y + i, tail, static_cast<size_t>(n - i) * sizeof(float));
  }
}

/// softmax (ops.hpp) with 8-lane max and e^x; the sum in double, in order.
void softmax_avx2(float* x, int64_t n) {
  __m256 m8 = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    m8 = _mm256_max_ps(_mm256_loadu_ps(x + i), m8);  // a NaN lane keeps m8's
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m8);
  float max = -INFINITY;
  for (float l : lanes) {
    max = std::fmax(max, l);
  }
  for (; i < n; ++i) {
    max = std::fmax(max, x[i]);
  }
  const __m256 mv = _mm256_set1_ps(max);
  each_8(x, n, x, [mv](__m256 v) { return exp_ps(_mm256_sub_ps(v, mv)); });
  double sum = 0.0;
  for (i = 0; i < n; ++i) {
    sum += x[i];
  }
  const float inv = softmax_inv(sum);
  for (i = 0; i < n; ++i) {
    x[i] *= inv;
  }
}

}  // namespace

void exp_avx2(const float* x, float* y, int64_t n) { each_8(x, n, y, exp_ps); }

void silu_mul_avx2(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  const auto silu = [](__m256 g) {
    const __m256 e = exp_ps(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
    return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  };
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu(_mm256_loadu_ps(gate + i)),
                                          _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    float s[8];
    each_8(gate + i, n - i, s, silu);
    for (int64_t j = 0; j < n - i; ++j) {
      y[i + j] = s[j] * up[i + j];
    }
  }
}

void attention_head_avx2(const float* q, const kv_view& k, const kv_view& v, int64_t kv_head,
                         int64_t n_kv, float scale, float* scratch, float* out) {
  const int64_t d = k.head_dim;
  if (d % 8 != 0 || d > 1024 || v.head_dim != d) {
    attention_head(q, k, v, kv_head, n_kv, scale, scratch, out);
    return;
  }
  const bool k16 = k.type == ggml_type::f16;
  const bool v16 = v.type == ggml_type::f16;
  alignas(32) float qv[1024];
  std::memcpy(qv, q, static_cast<size_t>(d) * sizeof(float));
  if (k16) {
    round_to_f16(qv, d);  // 8 at a time (a scalar loop here was 18 % of attention's time)
  }
  scores(qv, k, kv_head, n_kv, scale, k16, scratch);
  softmax_avx2(scratch, n_kv);
  if (v16) {
    round_to_f16(scratch, n_kv);
  }
  switch (d) {
    case 64:
      weighted_values<8>(scratch, v, kv_head, n_kv, v16, out);
      break;
    case 128:
      weighted_values<16>(scratch, v, kv_head, n_kv, v16, out);
      break;
    default:
      weighted_values<0>(scratch, v, kv_head, n_kv, v16, out);
  }
}

namespace {

/// The AVX2 steps of attention_group_steps (attention_steps.hpp).
struct avx2_steps {
  static void round_to_f16(float* x, int64_t n) { cpu::round_to_f16(x, n); }

  /// scores for g query heads sharing one KV head: scratch[j · n_kv + p] = (q_j · k_p) ×
  /// scale, each score exactly as scores() makes it (one 8-lane chain over the dimensions
  /// in order, then hsum): two keys at a time, each key's 8 dimensions converted once for
  /// the g heads.
  template <int G>
  static void scores(const float* const (&qv)[G], const kv_view& k, int64_t kv_head,
                     int64_t n_kv, float scale, bool k16, float* scratch) {
    const int64_t d = k.head_dim;
    kv_cursor rows(k, kv_head);
    int64_t p = 0;
    for (; p + 2 <= n_kv; p += 2) {
      const uint8_t* k0 = rows.next();
      const uint8_t* k1 = rows.next();
      __m256 acc[G][2];
      for (int j = 0; j < G; ++j) {
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
      }
      for (int64_t i = 0; i < d; i += 8) {
        const __m256 a = load8(k0, i, k16);
        const __m256 b = load8(k1, i, k16);
        for (int j = 0; j < G; ++j) {
          const __m256 qi = _mm256_load_ps(qv[j] + i);
          acc[j][0] = _mm256_fmadd_ps(qi, a, acc[j][0]);
          acc[j][1] = _mm256_fmadd_ps(qi, b, acc[j][1]);
        }
      }
      for (int j = 0; j < G; ++j) {
        scratch[j * n_kv + p] = hsum(acc[j][0]) * scale;
        scratch[j * n_kv + p + 1] = hsum(acc[j][1]) * scale;
      }
    }
    for (; p < n_kv; ++p) {
      const uint8_t* kr = rows.next();
      for (int j = 0; j < G; ++j) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < d; i += 8) {
          acc = _mm256_fmadd_ps(_mm256_load_ps(qv[j] + i), load8(kr, i, k16), acc);
        }
        scratch[j * n_kv + p] = hsum(acc) * scale;
      }
    }
  }

  template <int G>
  static void softmaxes(float* scratch, int64_t n_kv) {
    for (int j = 0; j < G; ++j) {
      softmax_avx2(scratch + j * n_kv, n_kv);
    }
  }

  /// out_j = Σ_p w_j[p] × v_p in key order for g heads sharing one KV head, each output
  /// exactly as weighted_values() makes it (each 8 dimensions one chain of FMAs over the
  /// keys in order): 16 dimensions at a time, each key's converted once for the g heads.
  template <int G>
  static void weighted_values(const float* w, const kv_view& v, int64_t kv_head, int64_t n_kv,
                              bool v16, float* const (&out)[G]) {
    for (int64_t i = 0; i < v.head_dim; i += 16) {
      __m256 o[G][2];
      for (int j = 0; j < G; ++j) {
        o[j][0] = o[j][1] = _mm256_setzero_ps();
      }
      kv_cursor rows(v, kv_head);
      for (int64_t p = 0; p < n_kv; ++p) {
        const uint8_t* vr = rows.next();
        const __m256 a = load8(vr, i, v16);
        const __m256 b = load8(vr, i + 8, v16);
        for (int j = 0; j < G; ++j) {
          const __m256 wp = _mm256_broadcast_ss(w + j * n_kv + p);
          o[j][0] = _mm256_fmadd_ps(wp, a, o[j][0]);
          o[j][1] = _mm256_fmadd_ps(wp, b, o[j][1]);
        }
      }
      for (int j = 0; j < G; ++j) {
        _mm256_storeu_ps(out[j] + i, o[j][0]);
        _mm256_storeu_ps(out[j] + i + 8, o[j][1]);
      }
    }
  }
};

}  // namespace

void attention_group_avx2(const float* q, int64_t n_q, const kv_view& k, const kv_view& v,
                          int64_t kv_head, int64_t n_kv, float scale, float* scratch,
                          float* out) {
  detail::attention_group_of<avx2_steps>(
      q, n_q, k, v, kv_head, n_kv, scale, scratch, out,
      [](const float* q1, int64_t n, const kv_view& k1, const kv_view& v1, int64_t h, int64_t n1,
         float s1, float* sc, float* o) {
        for (int64_t j = 0; j < n; ++j) {
          attention_head_avx2(q1 + j * k1.head_dim, k1, v1, h, n1, s1, sc, o + j * k1.head_dim);
        }
      });
}

}  // namespace baton::cpu
