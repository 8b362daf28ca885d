// Block layouts of the quantized formats baton computes with, and the per-block math
// that decodes them. Every function here is `__host__ __device__` under nvcc, so the
// CPU scalar reference and the CUDA kernels run the very same arithmetic: the math the
// GPU runs is tested on every machine. Layouts follow GGUF/ggml exactly.
#pragma once

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

}  // namespace baton
