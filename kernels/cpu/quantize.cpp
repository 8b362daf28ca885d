// quantize.hpp: the reference quantizers. Every expression keeps the operand order and
// the float/int conversions of ggml's reference code (ggml-quants.c), and the file is
// compiled with -ffp-contract=off, so the results are bit-identical to llama-quantize's
// (tests/quantize_test.cpp compares them with ggml's own functions where llama.cpp's
// prebuilt library is installed).
#include "kernels/cpu/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"

namespace baton::cpu {

namespace {

/// Below this a group counts as all zeros (ggml's GROUP_MAX_EPS).
constexpr float group_max_eps = 1e-15f;

/// Round to nearest, ties to even, through the float adder: adding 1.5 × 2^23 leaves
/// the integer in the low mantissa bits. Valid for |x| < 2^22.
int nearest_int(float x) {
  const float v = x + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

/// Symmetric quantization of x[n] to L[n] in 0..2·nmax−1 (value = scale × (L − nmax)),
/// weighting errors by x²: start from the scale that maps the largest-magnitude
/// element to −nmax, then try 18 nearby scales and keep the least-squares best.
/// Returns the scale (0 for an all-zero group). ggml: make_qx_quants, rmse_type 1.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  // Fits the levels for `iscale`; sumlx = Σ w·x·l, suml2 = Σ w·l², w = x².
  auto fit = [&](float iscale, float* sumlx, float* suml2, int8_t* out) {
    *sumlx = 0.0f;
    *suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
      if (out) {
        out[i] = static_cast<int8_t>(l + nmax);
      }
      const float w = x[i] * x[i];
      const float fl = static_cast<float>(l);
      *sumlx += w * x[i] * fl;
      *suml2 += w * fl * fl;
    }
  };
  float sumlx, suml2;
  fit(-fnmax / max, &sumlx, &suml2, L);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) {
      continue;
    }
    const float iscale = -(fnmax + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, &sumlx, &suml2, nullptr);
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      fit(iscale, &sumlx, &suml2, L);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// Asymmetric quantization of x[n] to L[n] in 0..nmax (value = scale × L − min),
/// minimizing Σ weights·err²: the max−min grid, then nstep+1 grids of
/// (nmax + rmin + rdelta·is) steps, each followed by the weighted least-squares scale
/// and min for its levels. Returns the scale; *the_min gets min (≥ 0).
/// ggml: make_qkx2_quants with use_mad false.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) {
      min = x[i];
    }
    if (x[i] > max) {
      max = x[i];
    }
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) {
    min = 0.0f;
  }
  if (max == min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *the_min = -min;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sum_l = 0.0f;
    float sum_l2 = 0.0f;
    float sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::memcpy(L, Laux, static_cast<size_t>(n));
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

void quantize_block_q4_0(const float* x, block_q4_0& b) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < qk4_0; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  for (int j = 0; j < qk4_0 / 2; ++j) {
    // (int8_t)(v + 8.5f) in ggml: truncation toward zero; v is within [-8, 8]
    const int x0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
    const int x1 = std::min(15, static_cast<int>(x[j + qk4_0 / 2] * id + 8.5f));
    b.qs[j] = static_cast<uint8_t>(x0 | (x1 << 4));
  }
}

void quantize_block_q4_k(const float* x, block_q4_k& b, k_levels levels) {
  uint8_t L[qk_k];
  uint8_t Laux[32];
  float weights[32];
  float mins[qk_k / 32];
  float scales[qk_k / 32];

  // sub-block scales and mins (both ≥ 0), each later coded in 6 bits of its maximum
  float max_scale = 0.0f;
  float max_min = 0.0f;
  for (int j = 0; j < qk_k / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) {
      sum_x2 += xs[l] * xs[l];
    }
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) {
      weights[l] = av_x + std::fabs(xs[l]);
    }
    scales[j] = make_qkx2_quants(32, 15, xs, weights, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }

  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  std::memset(b.scales, 0, sizeof b.scales);
  for (int j = 0; j < qk_k / 32; ++j) {
    // uint8_t conversion as ggml's, then clamp to 6 bits
    const uint8_t ls =
        std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    // scales[0..3]: sc 0..3 (+ high bits of sc 4..7); scales[4..7]: m 0..3 (+ high bits of
    // m 4..7); scales[8..11]: low nibbles of sc 4..7 | m 4..7 (see q4_k_scale_min)
    if (j < 4) {
      b.scales[j] = ls;
      b.scales[j + 4] = lm;
    } else {
      b.scales[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      b.scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      b.scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  b.d = fp32_to_fp16(max_scale / 63.0f);
  b.dmin = fp32_to_fp16(max_min / 63.0f);

  // the older reference rounds every weight again against the coded scales
  for (int j = 0; j < qk_k / 32 && levels == k_levels::requantize; ++j) {
    uint8_t sc, m;
    q4_k_scale_min(j, b.scales, &sc, &m);
    const float d = fp16_to_fp32(b.d) * static_cast<float>(sc);
    if (d == 0.0f) {
      continue;
    }
    const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
    }
  }
  // qs[32·k + l]: low nibble element 64k + l, high nibble element 64k + 32 + l
  uint8_t* q = b.qs;
  for (int j = 0; j < qk_k; j += 64) {
    for (int l = 0; l < 32; ++l) {
      q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
    q += 32;
  }
}

void quantize_block_q6_k(const float* x, block_q6_k& b, k_levels levels) {
  int8_t L[qk_k];
  float scales[qk_k / 16];

  float max_scale = 0.0f;  // the signed scale of largest magnitude
  float max_abs_scale = 0.0f;
  for (int ib = 0; ib < qk_k / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < group_max_eps) {
    std::memset(&b, 0, sizeof b);
    b.d = fp32_to_fp16(0.0f);
    return;
  }

  // 8-bit signed sub-block scales; the largest maps to −128
  const float iscale = -128.0f / max_scale;
  b.d = fp32_to_fp16(1.0f / iscale);
  for (int ib = 0; ib < qk_k / 16; ++ib) {
    b.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  }
  // the older reference rounds every weight again against the coded scales
  for (int j = 0; j < qk_k / 16 && levels == k_levels::requantize; ++j) {
    const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[j]);
    if (d == 0.0f) {
      continue;
    }
    for (int ii = 0; ii < 16; ++ii) {
      const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d)));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  // per 128 weights: ql[l] = low nibbles of elements l | l+64, ql[l+32] of l+32 | l+96;
  // qh[l] = the four high 2-bit pairs of elements l, l+32, l+64, l+96
  uint8_t* ql = b.ql;
  uint8_t* qh = b.qh;
  for (int j = 0; j < qk_k; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l + 0];
      const int q2 = L[j + l + 32];
      const int q3 = L[j + l + 64];
      const int q4 = L[j + l + 96];
      ql[l + 0] = static_cast<uint8_t>((q1 & 0x0f) | ((q3 & 0x0f) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0x0f) | ((q4 & 0x0f) << 4));
      qh[l] =
          static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

/// Quantizes x[n] block by block with quantize_block(x, b, args...); `out` need not be
/// aligned.
template <class Block, int N, class... Args>
void quantize_blocks(const float* x, void* y, int64_t n,
                     void (*quantize_block)(const float*, Block&, Args...), Args... args) {
  auto* out = static_cast<std::byte*>(y);
  for (int64_t i = 0; i < n / N; ++i) {
    Block b;
    quantize_block(x + i * N, b, args...);
    std::memcpy(out + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof b);
  }
}

bool finite_half(const std::byte* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return (h & 0x7c00u) != 0x7c00u;
}

/// Checks the f16 fields at `offsets` of each block.
template <class Block, int N>
bool blocks_finite(const void* y, int64_t n, std::initializer_list<size_t> offsets) {
  const auto* p = static_cast<const std::byte*>(y);
  for (int64_t i = 0; i < n / N; ++i) {
    for (size_t off : offsets) {
      if (!finite_half(p + i * static_cast<int64_t>(sizeof(Block)) + static_cast<int64_t>(off))) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

void quantize_row_q4_0(const float* x, void* y, int64_t n) {
  quantize_blocks<block_q4_0, qk4_0>(x, y, n, quantize_block_q4_0);
}

void quantize_row_q4_k(const float* x, void* y, int64_t n, k_levels levels) {
  quantize_blocks<block_q4_k, qk_k>(x, y, n, quantize_block_q4_k, levels);
}

void quantize_row_q6_k(const float* x, void* y, int64_t n, k_levels levels) {
  quantize_blocks<block_q6_k, qk_k>(x, y, n, quantize_block_q6_k, levels);
}

bool can_quantize(ggml_type type) {
  switch (type) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16:
    case ggml_type::q8_0:
    case ggml_type::q4_0:
    case ggml_type::q4_k:
    case ggml_type::q6_k:
      return true;
    default:
      return false;
  }
}

void quantize_row(ggml_type type, const float* x, void* y, int64_t n) {
  switch (type) {
    case ggml_type::f32:
      std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case ggml_type::f16:
    case ggml_type::bf16: {
      // through a small buffer: `y` need not be 2-byte aligned
      uint16_t buf[256];
      auto* out = static_cast<std::byte*>(y);
      for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = std::min<int64_t>(256, n - i);
        if (type == ggml_type::f16) {
          convert_row_f16(x + i, buf, m);
        } else {
          convert_row_bf16(x + i, buf, m);
        }
        std::memcpy(out + 2 * i, buf, static_cast<size_t>(m) * 2);
      }
      return;
    }
    case ggml_type::q8_0:
      return quantize_row_q8_0(x, y, n);
    case ggml_type::q4_0:
      return quantize_row_q4_0(x, y, n);
    case ggml_type::q4_k:
      return quantize_row_q4_k(x, y, n);
    case ggml_type::q6_k:
      return quantize_row_q6_k(x, y, n);
    default:
      std::abort();  // callers check can_quantize first
  }
}

bool row_is_finite(ggml_type type, const void* y, int64_t n) {
  const auto* p = static_cast<const std::byte*>(y);
  switch (type) {
    case ggml_type::f32:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, p + 4 * i, sizeof u);
        if ((u & 0x7f800000u) == 0x7f800000u) {
          return false;
        }
      }
      return true;
    case ggml_type::f16:
      for (int64_t i = 0; i < n; ++i) {
        if (!finite_half(p + 2 * i)) {
          return false;
        }
      }
      return true;
    case ggml_type::bf16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, sizeof h);
        if ((h & 0x7f80u) == 0x7f80u) {
          return false;
        }
      }
      return true;
    case ggml_type::q8_0:
      return blocks_finite<block_q8_0, qk8_0>(y, n, {offsetof(block_q8_0, d)});
    case ggml_type::q4_0:
      return blocks_finite<block_q4_0, qk4_0>(y, n, {offsetof(block_q4_0, d)});
    case ggml_type::q4_k:
      return blocks_finite<block_q4_k, qk_k>(y, n,
                                             {offsetof(block_q4_k, d), offsetof(block_q4_k, dmin)});
    case ggml_type::q6_k:
      return blocks_finite<block_q6_k, qk_k>(y, n, {offsetof(block_q6_k, d)});
    default:
      std::abort();  // callers check can_quantize first
  }
}

}  // namespace baton::cpu
