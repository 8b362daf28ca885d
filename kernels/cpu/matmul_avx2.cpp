// The AVX2 (+FMA, F16C) twin of matmul, and the SIMD activation conversions every
// non-scalar isa uses. The conversions reproduce the scalar references bit for bit:
// roundf is rebuilt from truncation (half away from zero), ggml's nearest_int from the
// same float add, f16 from F16C's round-to-nearest-even, bf16 from the same integer
// rounding. The dot products use vpmaddubsw (unsigned × signed bytes): Q4_0 and K-quant
// nibbles are unsigned as stored (Q4_0's −8 comes back as −8·Σy from the prepared
// activations), Q8_0 uses the sign trick. Each output element owns its 8-lane float
// accumulators (two for Q4_0, Q8_0 and the float types, alternating), whose update
// sequence does not depend on the tile it is computed in.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/matmul_impl.hpp"

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

// -- shared pieces of the dot products --------------------------------------------

/// Σ of 8 lanes in a fixed tree.
inline float hsum(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline int32_t hsum_epi32(__m256i v) {
  alignas(32) int32_t l[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), v);
  int32_t s = 0;
  for (int32_t x : l) {
    s += x;
  }
  return s;
}

inline __m256i ones16() { return _mm256_set1_epi16(1); }

/// How far ahead of the weights being read they are prefetched (see avx512/common.hpp:
/// from DRAM the hardware prefetcher alone falls behind once activations fill L1).
constexpr int64_t prefetch_distance = 8192;

/// Prefetches the lines of [p, p + bytes) a prefetch distance ahead.
inline void prefetch_ahead(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + prefetch_distance + o), _MM_HINT_T0);
  }
}

/// 8 copies of an f16 scale as floats.
inline __m256 bcast_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// -- Q4_0 and Q8_0 with prepared activations ---------------------------------------

/// One prepared Q8_0 activation block: qs, the Q4_0 correction −8 · Σ of each 4 bytes,
/// and the scale in every lane.
struct q8_prep {
  int8_t qs[32];
  int32_t corr[8];
  float d[8];
};
static_assert(sizeof(q8_prep) == 96);

template <bool q4>
struct kernel_q8_blocks {
  static constexpr int max_rows_1 = 1;  // decode: one sequential stream reads fastest
  static constexpr int max_rows = 1;
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);

  size_t prep_bytes(int64_t n_in) const { return n_in / 32 * sizeof(q8_prep); }
  void prep(const uint8_t* xq, uint8_t* out, int64_t n_in) const {
    auto* o = reinterpret_cast<q8_prep*>(out);
    for (int64_t i = 0; i < n_in / 32; ++i) {
      const uint8_t* b = xq + i * sizeof(block_q8_0);
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o[i].qs), y);
      const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), y), ones16());
      _mm256_store_si256(reinterpret_cast<__m256i*>(o[i].corr),
                         _mm256_sub_epi32(_mm256_setzero_si256(), s4));
      _mm256_store_ps(o[i].d, bcast_half(b));
    }
  }

  /// The weights of block b made ready for vpmaddubsw: Q4_0 unsigned nibbles in order,
  /// Q8_0 |q| (its signs go onto the activations). s = the signs source for Q8_0.
  static void unpack(const uint8_t* b, __m256i& u, __m256i& s, __m256& d) {
    d = bcast_half(b);
    if constexpr (q4) {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
      s = u;
    } else {
      s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
      u = _mm256_abs_epi8(s);
    }
  }

  /// Exact lanes: Σ over each 4 bytes of w · y (Q4_0: (q − 8) · y).
  static __m256i lanes(__m256i u, __m256i s, const q8_prep& y) {
    const __m256i yq = _mm256_load_si256(reinterpret_cast<const __m256i*>(y.qs));
    if constexpr (q4) {
      (void)s;
      return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u, yq), ones16()),
                              _mm256_load_si256(reinterpret_cast<const __m256i*>(y.corr)));
    } else {
      return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(yq, s)), ones16());
    }
  }

  /// acc[r][t][i % 2] += lanes · (dx · dy) for block i: two accumulators per element, so
  /// a lone row (decode) is not bound by the latency of one chain of adds.
  template <int NR, int NT>
  void tile(const tile_args& a) const {
    __m256 acc[NR][NT][2];
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
      }
    }
    // j is a constant in every call, so the accumulators stay in registers
    auto step = [&]<int j>(int64_t i) {
      __m256i u[NR], s[NR];
      __m256 dx[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * block_bytes;
        prefetch_ahead(wp, block_bytes);
        unpack(wp, u[r], s[r], dx[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const auto& y = reinterpret_cast<const q8_prep*>(a.x + t * a.x_stride)[i];
        const __m256 dy = _mm256_load_ps(y.d);
        for (int r = 0; r < NR; ++r) {
          const __m256 sc = _mm256_mul_ps(dx[r], dy);
          acc[r][t][j] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes(u[r], s[r], y)), sc, acc[r][t][j]);
        }
      }
    };
    const int64_t nb = a.n_in / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
      step.template operator()<0>(i);
      step.template operator()<1>(i + 1);
    }
    if (i < nb) {
      step.template operator()<0>(i);
    }
    for (int t = 0; t < NT; ++t) {
      for (int r = 0; r < NR; ++r) {
        a.y[t * a.ldy + r] = hsum(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
      }
    }
  }

  void block_ints(const uint8_t* w, const uint8_t* x, int64_t n_in, int32_t* out) const {
    auto* p = reinterpret_cast<q8_prep*>(scratch(prep_bytes(n_in)));
    prep(x, reinterpret_cast<uint8_t*>(p), n_in);
    for (int64_t i = 0; i < n_in / 32; ++i) {
      __m256i u, s;
      __m256 d;
      unpack(w + i * block_bytes, u, s, d);
      out[i] = hsum_epi32(lanes(u, s, p[i]));
    }
  }
};

// -- Q4_K and Q6_K by Q8_K ---------------------------------------------------------

/// [sc0..sc7, m0..m7] from a Q4_K block's 12 packed bytes (ggml's utmp shuffle).
inline __m128i q4_k_scales_mins(const uint8_t* scales) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t utmp[4];
  std::memcpy(utmp, scales, 12);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(utmp));
}

/// i16 vector with byte `lo` of v in the low 8 lanes and byte `hi` in the high 8.
inline __m256i bcast_pair_i16(__m128i v8, int lo, int hi) {
  const __m128i sel = _mm_set_epi64x(0x0101010101010101LL * hi, 0x0101010101010101LL * lo);
  return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v8, sel));
}

struct q4_k_row {
  const uint8_t* qs;
  __m128i sm;    // sc0..sc7, m0..m7 (bytes, all < 64)
  __m256i mdup;  // each min twice, as i16
  float d, dmin;

  void load(const uint8_t* b) {
    sm = q4_k_scales_mins(b + offsetof(block_q4_k, scales));
    mdup = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(
        sm, _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)));
    d = half(b + offsetof(block_q4_k, d));
    dmin = half(b + offsetof(block_q4_k, dmin));
    qs = b + offsetof(block_q4_k, qs);
  }
  /// Group g (0..7) = elements 32g .. 32g + 31 as unsigned nibbles.
  __m256i group(int g) const {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (g / 2)));
    return _mm256_and_si256(g % 2 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0f));
  }
  __m256i scales(int g) const { return bcast_pair_i16(sm, g, g); }
};

struct q6_k_row {
  const uint8_t* ql;
  const uint8_t* qh;
  __m128i sc8;
  __m256i sc16;
  float d;

  void load(const uint8_t* b) {
    sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(block_q6_k, scales)));
    sc16 = _mm256_cvtepi8_epi16(sc8);
    d = half(b + offsetof(block_q6_k, d));
    ql = b + offsetof(block_q6_k, ql);
    qh = b + offsetof(block_q6_k, qh);
  }
  /// Group g (0..7) = elements 32g .. 32g + 31 as q + 32 (0..63).
  __m256i group(int g) const {
    const int n = g / 4, k = g % 4;
    const __m256i l =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * n + 32 * (k % 2)));
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * n));
    const __m256i lo =
        _mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), _mm256_set1_epi8(0x0f));
    // qh bits 2k, 2k + 1 to bits 4, 5
    __m256i hi;
    switch (k) {
      case 0:
        hi = _mm256_slli_epi16(h, 4);
        break;
      case 1:
        hi = _mm256_slli_epi16(h, 2);
        break;
      case 2:
        hi = h;
        break;
      default:
        hi = _mm256_srli_epi16(h, 2);
        break;
    }
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
  }
  __m256i scales(int g) const { return bcast_pair_i16(sc8, 2 * g, 2 * g + 1); }
};

template <class Row>
inline __m256i k_lanes_group(const Row& w, int g, __m256i u, const int8_t* yqs, __m256i acc) {
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yqs + 32 * g));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), w.scales(g)));
}

template <bool q6>
struct kernel_k {
  using row = std::conditional_t<q6, q6_k_row, q4_k_row>;
  static constexpr int max_rows_1 = 1;
  static constexpr int max_rows = 1;  // 16 registers: an int and a float sum per element
  static constexpr int max_tokens = 4;
  static constexpr size_t block_bytes = q6 ? sizeof(block_q6_k) : sizeof(block_q4_k);

  size_t prep_bytes(int64_t) const { return 0; }
  void prep(const uint8_t*, uint8_t*, int64_t) const {}

  static __m256i finish_q6(const q6_k_row& w, const block_q8_k& y, __m256i ia) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
    return _mm256_sub_epi32(ia, _mm256_slli_epi32(_mm256_madd_epi16(w.sc16, bs), 5));
  }
  static __m256i min_lanes(const q4_k_row& w, const block_q8_k& y) {
    return _mm256_madd_epi16(w.mdup, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums)));
  }

  template <int NR, int NT>
  void tile(const tile_args& a) const {
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        acc[r][t] = _mm256_setzero_ps();
      }
    }
    for (int64_t i = 0; i < a.n_in / qk_k; ++i) {
      row w[NR];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = a.w + r * a.w_stride + i * block_bytes;
        prefetch_ahead(wp, block_bytes);
        w[r].load(wp);
      }
      const block_q8_k* y[NT];
      for (int t = 0; t < NT; ++t) {
        y[t] = reinterpret_cast<const block_q8_k*>(a.x + t * a.x_stride) + i;
      }
      __m256i ia[NR][NT];
      for (int r = 0; r < NR; ++r) {
        for (int t = 0; t < NT; ++t) {
          ia[r][t] = _mm256_setzero_si256();
        }
      }
      for (int g = 0; g < 8; ++g) {
        for (int r = 0; r < NR; ++r) {
          const __m256i u = w[r].group(g);
          for (int t = 0; t < NT; ++t) {
            ia[r][t] = k_lanes_group(w[r], g, u, y[t]->qs, ia[r][t]);
          }
        }
      }
      for (int t = 0; t < NT; ++t) {
        for (int r = 0; r < NR; ++r) {
          if constexpr (q6) {
            const __m256 f = _mm256_cvtepi32_ps(finish_q6(w[r], *y[t], ia[r][t]));
            acc[r][t] = _mm256_fmadd_ps(f, _mm256_set1_ps(w[r].d * y[t]->d), acc[r][t]);
          } else {
            const __m256 f = _mm256_cvtepi32_ps(ia[r][t]);
            acc[r][t] = _mm256_fmadd_ps(f, _mm256_set1_ps(w[r].d * y[t]->d), acc[r][t]);
            const __m256 m = _mm256_cvtepi32_ps(min_lanes(w[r], *y[t]));
            acc[r][t] = _mm256_fnmadd_ps(m, _mm256_set1_ps(w[r].dmin * y[t]->d), acc[r][t]);
          }
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
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
      __m256i ia = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        ia = k_lanes_group(w, g, w.group(g), y->qs, ia);
      }
      if constexpr (q6) {
        out[i] = hsum_epi32(finish_q6(w, *y, ia));
      } else {
        out[2 * i] = hsum_epi32(ia);
        out[2 * i + 1] = hsum_epi32(min_lanes(w, *y));
      }
    }
  }
};

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
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
      }
    }
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

void quantize_activation_row_avx2(ggml_type weight, const float* x, void* xq, int64_t n_in) {
  auto* out = static_cast<uint8_t*>(xq);
  switch (activation_type(weight)) {
    case ggml_type::q8_0:
      return quantize_q8_0(x, out, n_in);
    case ggml_type::q8_k:
      return quantize_q8_k(x, out, n_in);
    case ggml_type::f16:
      return convert_f16(x, out, n_in);
    case ggml_type::bf16:
      return convert_bf16(x, out, n_in);
    default:
      std::memcpy(xq, x, static_cast<size_t>(n_in) * sizeof(float));
      return;
  }
}

namespace {

/// f(the kernel for `weight` weights).
template <class F>
decltype(auto) with_kernel(ggml_type weight, F&& f) {
  switch (weight) {
    case ggml_type::q4_0:
      return f(kernel_q8_blocks<true>{});
    case ggml_type::q8_0:
      return f(kernel_q8_blocks<false>{});
    case ggml_type::q4_k:
      return f(kernel_k<false>{});
    case ggml_type::q6_k:
      return f(kernel_k<true>{});
    case ggml_type::f16:
      return f(kernel_float<fkind::f16>{});
    case ggml_type::bf16:
      return f(kernel_float<fkind::bf16>{});
    case ggml_type::f32:
      return f(kernel_float<fkind::f32>{});
    default:
      std::abort();
  }
}

}  // namespace

void matmul_avx2(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                 int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1) {
  const size_t xs = activation_row_bytes(weight, n_in);
  with_kernel(weight, [&](const auto& k) {
    run_matmul(k, weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1, xs);
  });
}

size_t prepared_row_bytes_avx2(ggml_type weight, int64_t n_in, int64_t n_tokens) {
  return with_kernel(weight, [&](const auto& k) { return prepared_row_bytes(k, n_in, n_tokens); });
}

void prepare_row_avx2(ggml_type weight, const void* xq, void* out, int64_t n_in) {
  with_kernel(weight, [&](const auto& k) {
    if (k.prep_bytes(n_in) > 0) {
      k.prep(static_cast<const uint8_t*>(xq), static_cast<uint8_t*>(out), n_in);
    }
  });
}

void block_dot_ints_avx2(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                         int32_t* out) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* x = static_cast<const uint8_t*>(x_row);
  switch (weight) {
    case ggml_type::q4_0:
      return kernel_q8_blocks<true>{}.block_ints(w, x, n_in, out);
    case ggml_type::q8_0:
      return kernel_q8_blocks<false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q4_k:
      return kernel_k<false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q6_k:
      return kernel_k<true>{}.block_ints(w, x, n_in, out);
    default:
      std::abort();
  }
}

}  // namespace baton::cpu::detail
