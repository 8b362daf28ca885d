// Per-element arithmetic of the float operations (rmsnorm, rope, SiLU-gated product,
// softmax, attention's f16 roundings), shared by the CPU scalar reference
// (kernels/cpu/ops.cpp) and the CUDA kernels (kernels/cuda): `__host__ __device__`
// under nvcc. Each function is the exact sequence of roundings the reference performs,
// so where the two differ it is only in how sums over a row are ordered, or in expf
// (the CUDA device expf may differ from the host's by an ulp or two).
#pragma once

#include <math.h>  // expf, sqrtf: the same functions on the host and the device

#include <cstdint>

#include "kernels/blocks.hpp"

namespace baton {

/// 1 / sqrt(mean + eps) from a row's sum of squares (summed in double, as ggml).
BATON_HD float rms_inv_scale(double sum_sq, int64_t n, float eps) {
  const float mean = static_cast<float>(sum_sq / static_cast<double>(n));
  return 1.0f / sqrtf(mean + eps);
}

/// The CPU's sum of squares of a row, in double (as ggml): element i into partial sum
/// i % 8, then the partials pairwise. One chain of adds waited on each add's latency
/// (Zen 4, Q4_K_M prefill: 1.3 % of the time in rms_norm).
inline double rms_sum_sq(const float* x, int64_t n) {
  double s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      s[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    s[j] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/// One normalized, weighted element: (x × scale) × w, two roundings in that order.
BATON_HD float rms_scaled(float x, float scale, float w) { return (x * scale) * w; }

/// Rotates the pair (x0, x1) by the angle whose cosine and sine are (c, s).
BATON_HD void rope_rotate(float& x0, float& x1, float c, float s) {
  const float a = x0;
  const float b = x1;
  x0 = a * c - b * s;
  x1 = a * s + b * c;
}

/// silu(g) × u = (g / (1 + e^−g)) × u
BATON_HD float silu_times(float g, float u) { return (g / (1.0f + expf(-g))) * u; }

/// A softmax numerator e^(x − max), in float as ggml computes it.
BATON_HD float softmax_exp(float x, float max) { return expf(x - max); }

/// The factor a softmax row is multiplied by, from its sum in double.
BATON_HD float softmax_inv(double sum) { return static_cast<float>(1.0 / sum); }

/// x rounded to f16 and back: llama.cpp's f16 K/V dot products see q and the
/// probabilities in f16.
BATON_HD float round_f16(float x) { return fp16_to_fp32(fp32_to_fp16(x)); }

}  // namespace baton
