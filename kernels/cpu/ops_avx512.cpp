// AVX-512 twins of silu_mul_avx2 and attention_group_avx2 (ops_avx2.cpp): the same
// operations on 16 lanes instead of 8, so every element comes out bit for bit as the AVX2
// function makes it (tests/ops_test.cpp). silu_mul: exp_avx2's rounding, polynomial,
// exponent split and clamps, then the division and the multiply. Attention: each score is
// one 8-lane chain of FMAs over the head's dimensions then the same tree of sums (two
// keys' chains share a register), each softmax the same maximum, exponentials and sum in
// double, each output dimension one chain of FMAs over the keys in order.
// Compiled for AVX-512; called only when the kernels are avx512.
// GCC 12's AVX-512 headers start results from _mm512_undefined_*() and warn on it
// (GCC bug 105593); the warning says nothing about this file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/blocks.hpp"

#include "kernels/cpu/attention_steps.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/ops_math.hpp"

namespace baton::cpu {

namespace {

/// exp_avx2's e^x (ops_avx2.cpp: its comments say why each step), 16 lanes.
inline __m512 exp_ps(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // max_ps / min_ps return their second operand where either is NaN, as the AVX2 ones do
  const __m512 nc = _mm512_min_ps(_mm512_max_ps(n, _mm512_set1_ps(-150.0f)),
                                  _mm512_set1_ps(129.0f));
  const __m512i ni = _mm512_cvtps_epi32(nc);
  const __m512i n1 = _mm512_srai_epi32(ni, 1);
  const __m512i n2 = _mm512_sub_epi32(ni, n1);
  const auto pow2 = [](__m512i k) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
  };
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, pow2(n1)), pow2(n2));
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(88.7228394f), _CMP_GT_OQ), y,
                           _mm512_set1_ps(INFINITY));
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-103.972084f), _CMP_LT_OQ), y,
                           _mm512_setzero_ps());
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

/// The first min(k, 16) lanes (k ≥ 1): a row's last, partial vector.
inline __mmask16 first_lanes(int64_t k) {
  return static_cast<__mmask16>(k >= 16 ? 0xffff : (1u << k) - 1);
}

// -- attention ------------------------------------------------------------------------

/// 16 elements of a cached row from element i.
inline __m512 load16(const uint8_t* row, int64_t i, bool f16) {
  if (f16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  }
  return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
}

/// Elements i .. i + 7 of row a in the low half, of row b in the high half.
inline __m512 load8_pair(const uint8_t* a, const uint8_t* b, int64_t i, bool f16) {
  if (f16) {
    const auto half = [i](const uint8_t* r) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * i));
    };
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(half(a)), half(b), 1));
  }
  const auto half = [i](const uint8_t* r) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(r) + i);
  };
  return _mm512_insertf32x8(_mm512_castps256_ps512(half(a)), half(b), 1);
}

/// Cached rows prefetched `lead` positions ahead of a kv_cursor's walk: elements [from, to)
/// of each row. A head's row is a few lines 1 KiB or more from the next position's
/// (kv_row), and the hardware prefetcher did not bring them in time: in 16-stream decode
/// (Q4_0, perf) 40 % of attention's samples sat on the first load of a key's row, 25 % on
/// a value's. Attention's share of the step, by lead: 4 6.2 %, 8 5.6 %, 16 5.3-5.7 %,
/// 32 5.3-5.7 %.
class rows_ahead {
 public:
  rows_ahead(const kv_view& kv, int64_t h, int64_t n, int64_t from, int64_t to)
      : rows_(kv, h), left_(n), from_(from * kv_elem_bytes(kv)), to_(to * kv_elem_bytes(kv)) {
    for (int i = 0; i < lead; ++i) {
      next();
    }
  }
  /// Prefetches the next position's row, if any.
  void next() {
    if (left_ > 0) {
      --left_;
      const uint8_t* r = rows_.next();
      for (int64_t o = from_; o < to_; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(r + o), _MM_HINT_T0);
      }
    }
  }

 private:
  static constexpr int lead = 16;
  kv_cursor rows_;
  int64_t left_;  // positions not yet prefetched
  int64_t from_, to_;
};

/// The sums of four 8-lane chains, keys 0 and 1 in the halves of a, 2 and 3 in b's: lane
/// 4c of the result is chain c's sum in hsum's tree (ops_avx2.cpp) — halves added, then
/// lanes 2 apart, then the last two — the same adds on the same values.
inline __m512 sums_of_four(__m512 a, __m512 b) {
  // 128-bit lane c: chain c's lanes 0-3 + its lanes 4-7
  const __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
}

/// weighted_values_group (ops_avx2.cpp) for G heads: out_j = Σ_p w_j[p] × v_p, each
/// dimension one chain of FMAs over the keys in order; 16 × NV dimensions a pass.
template <int G, int NV>
void weighted_values_group(const float* w, const kv_view& v, int64_t kv_head, int64_t n_kv,
                           bool v16, float* const (&out)[G]) {
  for (int64_t i = 0; i < v.head_dim; i += 16 * NV) {
    __m512 o[G][NV];
    for (int j = 0; j < G; ++j) {
      for (int c = 0; c < NV; ++c) {
        o[j][c] = _mm512_setzero_ps();
      }
    }
    kv_cursor rows(v, kv_head);
    rows_ahead ahead(v, kv_head, n_kv, i, i + 16 * NV);
    for (int64_t p = 0; p < n_kv; ++p) {
      const uint8_t* vr = rows.next();
      ahead.next();
      __m512 x[NV];
      for (int c = 0; c < NV; ++c) {
        x[c] = load16(vr, i + 16 * c, v16);
      }
      for (int j = 0; j < G; ++j) {
        const __m512 wp = _mm512_set1_ps(w[j * n_kv + p]);
        for (int c = 0; c < NV; ++c) {
          o[j][c] = _mm512_fmadd_ps(wp, x[c], o[j][c]);
        }
      }
    }
    for (int j = 0; j < G; ++j) {
      for (int c = 0; c < NV; ++c) {
        _mm512_storeu_ps(out[j] + i + 16 * c, o[j][c]);
      }
    }
  }
}

/// The AVX-512 steps of attention_group_steps (attention_steps.hpp).
struct avx512_steps {
  /// x[i] = round_f16(x[i]) for i < n, as round_to_f16 (ops_avx2.cpp) rounds it: F16C's
  /// conversion 16 then 8 at a time, the last few in software.
  static void round_to_f16(float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
      _mm512_storeu_ps(x + i, _mm512_cvtph_ps(h));
    }
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
      _mm256_storeu_ps(x + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; ++i) {
      x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
    }
  }

  /// scores_group (ops_avx2.cpp) for G heads: scratch[j · n_kv + p] = (q_j · k_p) × scale,
  /// four keys at a time, two to a register; the last keys with copies of the last key in
  /// the lanes past n_kv (not stored).
  template <int G>
  static void scores(const float* const (&qv)[G], const kv_view& k, int64_t kv_head,
                     int64_t n_kv, float scale, bool k16, float* scratch) {
    const int64_t d = k.head_dim;
    const __m512i every_fourth = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    kv_cursor rows(k, kv_head);
    rows_ahead ahead(k, kv_head, n_kv, 0, d);
    const uint8_t* last = nullptr;
    for (int64_t p = 0; p < n_kv; p += 4) {
      const uint8_t* kr[4];
      for (int c = 0; c < 4; ++c) {
        kr[c] = last = p + c < n_kv ? rows.next() : last;
        ahead.next();
      }
      __m512 acc[G][2];
      for (int j = 0; j < G; ++j) {
        acc[j][0] = acc[j][1] = _mm512_setzero_ps();
      }
      for (int64_t i = 0; i < d; i += 8) {
        const __m512 a = load8_pair(kr[0], kr[1], i, k16);
        const __m512 b = load8_pair(kr[2], kr[3], i, k16);
        for (int j = 0; j < G; ++j) {
          const __m512 qi = _mm512_broadcast_f32x8(_mm256_load_ps(qv[j] + i));
          acc[j][0] = _mm512_fmadd_ps(qi, a, acc[j][0]);
          acc[j][1] = _mm512_fmadd_ps(qi, b, acc[j][1]);
        }
      }
      const auto n = static_cast<__mmask8>((1u << std::min<int64_t>(4, n_kv - p)) - 1);
      for (int j = 0; j < G; ++j) {
        const __m512 s = _mm512_permutexvar_ps(every_fourth, sums_of_four(acc[j][0], acc[j][1]));
        _mm_mask_storeu_ps(scratch + j * n_kv + p, n,
                           _mm_mul_ps(_mm512_castps512_ps128(s), _mm_set1_ps(scale)));
      }
    }
  }

  /// softmax_avx2 (ops_avx2.cpp) on 16 lanes for G heads' scores (head j's n at x + j · n):
  /// each the same maximum (of its values that are not NaN), exponentials, sum in double in
  /// order and scaling. The G sums advance together, each a chain of its own (one head's
  /// chain waited on each add).
  template <int G>
  static void softmaxes(float* x, int64_t n) {
    double sum[G];
    for (int j = 0; j < G; ++j) {
      float* xj = x + j * n;
      __m512 m16 = _mm512_set1_ps(-INFINITY);
      int64_t i = 0;
      for (; i + 16 <= n; i += 16) {
        m16 = _mm512_max_ps(_mm512_loadu_ps(xj + i), m16);  // a NaN lane keeps m16's
      }
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, m16);
      float max = -INFINITY;
      for (float l : lanes) {
        max = std::fmax(max, l);
      }
      for (; i < n; ++i) {
        max = std::fmax(max, xj[i]);
      }
      const __m512 mv = _mm512_set1_ps(max);
      for (i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(xj + i, m,
                              exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xj + i), mv)));
      }
      sum[j] = 0.0;
    }
    for (int64_t i = 0; i < n; ++i) {
      #pragma GCC unroll 8
      for (int j = 0; j < G; ++j) {
        sum[j] += x[j * n + i];
      }
    }
    for (int j = 0; j < G; ++j) {
      const __m512 inv = _mm512_set1_ps(softmax_inv(sum[j]));
      float* xj = x + j * n;
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(xj + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xj + i), inv));
      }
    }
  }

  /// up to 64 dimensions a pass: G × 4 accumulators and 4 of a value row in registers
  template <int G>
  static void weighted_values(const float* w, const kv_view& v, int64_t kv_head, int64_t n_kv,
                              bool v16, float* const (&out)[G]) {
    if (v.head_dim % 64 == 0) {
      weighted_values_group<G, 4>(w, v, kv_head, n_kv, v16, out);
    } else if (v.head_dim % 32 == 0) {
      weighted_values_group<G, 2>(w, v, kv_head, n_kv, v16, out);
    } else {
      weighted_values_group<G, 1>(w, v, kv_head, n_kv, v16, out);
    }
  }
};

}  // namespace

void silu_mul_avx512(const float* gate, const float* up, float* y, int64_t n) {
  const auto silu_mul16 = [](__m512 g, __m512 u) {
    const __m512 e = exp_ps(_mm512_xor_ps(g, _mm512_set1_ps(-0.0f)));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, silu_mul16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    // the tail's lanes alone (the others are zeros, and are not stored)
    const __mmask16 m = first_lanes(n - i);
    _mm512_mask_storeu_ps(
        y + i, m, silu_mul16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

void attention_group_avx512(const float* q, int64_t n_q, const kv_view& k, const kv_view& v,
                            int64_t kv_head, int64_t n_kv, float scale, float* scratch,
                            float* out) {
  // what the groups do not take, attention_group_avx2 runs a head at a time
  detail::attention_group_of<avx512_steps>(q, n_q, k, v, kv_head, n_kv, scale, scratch, out,
                                           attention_group_avx2);
}

}  // namespace baton::cpu
