// Block layouts of the quantized formats baton computes with, and the per-block math
// that decodes them. Every function here is `__host__ __device__` under nvcc, so the
// CPU scalar reference and the CUDA kernels run the very same arithmetic: the math the
// GPU runs is tested on every machine. Layouts follow GGUF/ggml exactly.
#pragma once

#include <math.h>  // fabsf, fmaxf, roundf: the same functions on the host and the device

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define BATON_HD __host__ __device__ inline
#else
#define BATON_HD inline
#endif

namespace baton {

constexpr int qk4_0 = 32;
constexpr int qk8_0 = 32;
constexpr int qk_k = 256;
constexpr int k_scale_size = 12;

/// Q4_0: 32 weights = d × (q − 8), q in 0..15; low nibbles are elements 0..15.
struct block_q4_0 {
  uint16_t d;              // f16 scale
  uint8_t qs[qk4_0 / 2];   // nibbles
};
static_assert(sizeof(block_q4_0) == 18);

/// Q8_0: 32 weights = d × q, q in −127..127.
struct block_q8_0 {
  uint16_t d;              // f16 scale
  int8_t qs[qk8_0];
};
static_assert(sizeof(block_q8_0) == 34);

/// Q4_K: 256 weights in 8 sub-blocks of 32, each with a 6-bit scale and min:
/// w = d × sc × q − dmin × m.
struct block_q4_k {
  uint16_t d;                     // f16 super-block scale for the scales
  uint16_t dmin;                  // f16 super-block scale for the mins
  uint8_t scales[k_scale_size];   // 8 scales and 8 mins, 6 bits each
  uint8_t qs[qk_k / 2];           // 4-bit quants
};
static_assert(sizeof(block_q4_k) == 144);

/// Q6_K: 256 weights in 16 sub-blocks of 16 with 8-bit scales: w = d × sc × (q − 32).
struct block_q6_k {
  uint8_t ql[qk_k / 2];       // low 4 bits
  uint8_t qh[qk_k / 4];       // high 2 bits
  int8_t scales[qk_k / 16];   // sub-block scales
  uint16_t d;                 // f16 super-block scale
};
static_assert(sizeof(block_q6_k) == 210);

/// Q8_K: the activation format for K-quant dot products (float scale, sums of 16).
struct block_q8_k {
  float d;
  int8_t qs[qk_k];
  int16_t bsums[qk_k / 16];
};
static_assert(sizeof(block_q8_k) == 292);

// -- scalar conversions -------------------------------------------------------

BATON_HD uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

BATON_HD float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// IEEE half to float; exact for every half, subnormals included.
BATON_HD float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant × 2^-24 is exact in float
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) {
    return bits_float(sign | 0x7f800000u | (mant << 13));
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// Float to IEEE half, round to nearest even (as F16C's _cvtss_sh with mode 0).
BATON_HD uint16_t fp32_to_fp16(float f) {
  uint32_t x = float_bits(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint32_t o;
  if (x >= 0x47800000u) {
    // >= 65536, inf or NaN: all exponent bits set
    o = x > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (x < 0x38800000u) {
    // the half is subnormal or zero: let the FPU round by adding 0.5
    const float t = bits_float(x) + 0.5f;
    o = float_bits(t) - 0x3f000000u;
  } else {
    const uint32_t mant_odd = (x >> 13) & 1u;
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;  // rebias, round half up
    x += mant_odd;                                          // ... to even
    o = x >> 13;
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

BATON_HD float bf16_to_fp32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

/// Float to bfloat16, round to nearest even; NaN stays NaN.
BATON_HD uint16_t fp32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 64u);
  }
  return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/// ggml's nearest_int: round half to even through the float adder (|f| < 2^22).
BATON_HD int nearest_int(float f) {
  const float v = f + 12582912.0f;
  return static_cast<int>(float_bits(v) & 0x007fffffu) - 0x00400000;
}

// -- per-block decoding ---------------------------------------------------------

/// y[32] = decoded block
BATON_HD void dequantize_block(const block_q4_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < qk4_0 / 2; ++j) {
    const int x0 = (b.qs[j] & 0x0f) - 8;
    const int x1 = (b.qs[j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + qk4_0 / 2] = static_cast<float>(x1) * d;
  }
}

/// y[32] = decoded block
BATON_HD void dequantize_block(const block_q8_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < qk8_0; ++j) {
    y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

/// Scale and min of Q4_K sub-block j (0..7), 6 bits each, packed in 12 bytes.
BATON_HD void q4_k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// y[256] = decoded block
BATON_HD void dequantize_block(const block_q4_k& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float min = fp16_to_fp32(b.dmin);
  const uint8_t* q = b.qs;
  int is = 0;
  for (int j = 0; j < qk_k; j += 64) {
    uint8_t sc, m;
    q4_k_scale_min(is + 0, b.scales, &sc, &m);
    const float d1 = d * sc;
    const float m1 = min * m;
    q4_k_scale_min(is + 1, b.scales, &sc, &m);
    const float d2 = d * sc;
    const float m2 = min * m;
    for (int l = 0; l < 32; ++l) {
      *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
    q += 32;
    is += 2;
  }
}

/// y[256] = decoded block
BATON_HD void dequantize_block(const block_q6_k& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int n = 0; n < qk_k; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = static_cast<int8_t>((ql[l + 0] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = static_cast<int8_t>((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// -- per-block activation quantizers (ggml's reference quantizers) -----------------

/// b = Q8_0 of x[32]: d = amax / 127, q = round-half-away(x / d) (quantize_row_q8_0_ref).
BATON_HD void quantize_block_q8_0(const float* x, block_q8_0& b) {
  float amax = 0.0f;
  for (int j = 0; j < qk8_0; ++j) {
    amax = fmaxf(amax, fabsf(x[j]));
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  for (int j = 0; j < qk8_0; ++j) {
    b.qs[j] = static_cast<int8_t>(roundf(x[j] * id));
  }
}

/// b = Q8_K of x[256] (quantize_row_q8_K_ref): d = max / −127 of the value largest in
/// magnitude (the first of equals), q = min(127, nearest_int(x / d)), bsums of 16. A block
/// of zeros gets d = 0 and zero sums (ggml leaves bsums as they were; zero is their value).
BATON_HD void quantize_block_q8_k(const float* x, block_q8_k& b) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int j = 0; j < qk_k; ++j) {
    const float ax = fabsf(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax == 0.0f) {
    b.d = 0.0f;
    for (int j = 0; j < qk_k; ++j) {
      b.qs[j] = 0;
    }
    for (int j = 0; j < qk_k / 16; ++j) {
      b.bsums[j] = 0;
    }
    return;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < qk_k; ++j) {
    const int v = nearest_int(iscale * x[j]);
    b.qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
  }
  for (int j = 0; j < qk_k / 16; ++j) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) {
      sum += b.qs[16 * j + l];
    }
    b.bsums[j] = static_cast<int16_t>(sum);
  }
  b.d = 1.0f / iscale;
}

// -- per-block integer dot products ------------------------------------------------
// Integer sums are exact, so any order of the same products gives the same value: the
// CPU's SIMD twins and the CUDA kernels may split them as they like and still match.

/// Σ (q − 8) · y over the block.
BATON_HD int32_t dot_q4_0(const block_q4_0& x, const block_q8_0& y) {
  int sumi0 = 0;
  int sumi1 = 0;
  for (int j = 0; j < qk4_0 / 2; ++j) {
    sumi0 += ((x.qs[j] & 0x0f) - 8) * y.qs[j];
    sumi1 += ((x.qs[j] >> 4) - 8) * y.qs[j + qk4_0 / 2];
  }
  return sumi0 + sumi1;
}

/// Σ q · y over the block.
BATON_HD int32_t dot_q8_0(const block_q8_0& x, const block_q8_0& y) {
  int sumi = 0;
  for (int j = 0; j < qk8_0; ++j) {
    sumi += x.qs[j] * y.qs[j];
  }
  return sumi;
}

/// Quant e (0..255) of a Q4_K block: elements 64j..64j+31 are the low nibbles of
/// qs[32j ..], 64j+32.. the high ones.
BATON_HD int q4_k_quant(const block_q4_k& x, int e) {
  const uint8_t b = x.qs[32 * (e / 64) + e % 32];
  return (e % 64) < 32 ? (b & 0x0f) : (b >> 4);
}

/// Quant e (0..255) of a Q6_K block, minus 32: per half of 128, element 32k + l takes
/// nibble k / 2 of ql[l + 32 (k % 2)] and bits 2k of qh[l].
BATON_HD int q6_k_quant(const block_q6_k& x, int e) {
  const int n = e / 128;
  const int k = (e % 128) / 32;
  const int l = e % 32;
  const uint8_t ql = x.ql[64 * n + l + 32 * (k % 2)];
  const int lo = k < 2 ? (ql & 0x0f) : (ql >> 4);
  const int hi = (x.qh[32 * n + l] >> (2 * k)) & 3;
  return (lo | (hi << 4)) - 32;
}

/// aux32[8] = ggml's eight lane sums of Σ scale · q · y (lane l: elements ≡ l mod 8);
/// returns Σ min · bsum.
BATON_HD int32_t dot_q4_k(const block_q4_k& x, const block_q8_k& y, int32_t* aux32) {
  uint8_t sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    q4_k_scale_min(j, x.scales, sc + j, m + j);
  }
  int32_t sumi = 0;
  for (int j = 0; j < qk_k / 16; ++j) {
    sumi += y.bsums[j] * m[j / 2];
  }
  for (int l = 0; l < 8; ++l) {
    aux32[l] = 0;
  }
  for (int j = 0; j < qk_k; j += 8) {
    const int32_t scale = sc[j / 32];
    for (int l = 0; l < 8; ++l) {
      aux32[l] += scale * static_cast<int16_t>(y.qs[j + l] * q4_k_quant(x, j + l));
    }
  }
  return sumi;
}

/// aux32[8] = ggml's eight lane sums of Σ scale · (q − 32) · y.
BATON_HD void dot_q6_k(const block_q6_k& x, const block_q8_k& y, int32_t* aux32) {
  for (int l = 0; l < 8; ++l) {
    aux32[l] = 0;
  }
  for (int j = 0; j < qk_k; j += 8) {
    const int32_t scale = x.scales[j / 16];
    for (int l = 0; l < 8; ++l) {
      aux32[l] += scale * static_cast<int16_t>(y.qs[j + l] * q6_k_quant(x, j + l));
    }
  }
}

}  // namespace baton
