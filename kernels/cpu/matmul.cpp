// The scalar reference of matmul.hpp, and the dispatch to the SIMD twins. The scalar dot
// products follow ggml's generic C (ggml-cpu/quants.c, vec.cpp) operation by operation,
// float rounding order included, so the scalar variant computes what a build of
// llama.cpp without SIMD computes. Compiled without FP contraction.
#include "kernels/cpu/matmul.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu {

namespace {

template <class T>
T load(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // rows from a file need not be aligned
  return v;
}

/// ggml's nearest_int: round half to even through the float adder (|f| < 2^22).
int nearest_int(float f) {
  const float v = f + 12582912.0f;
  return static_cast<int>(float_bits(v) & 0x007fffffu) - 0x00400000;
}

/// Scales and mins of a Q4_K block, unpacked as ggml's utmp shuffle does.
void q4_k_scales_mins(const block_q4_k& b, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 8; ++j) {
    q4_k_scale_min(j, b.scales, sc + j, m + j);
  }
}

// -- per-block integer parts ------------------------------------------------------

int32_t dot_q4_0(const block_q4_0& x, const block_q8_0& y) {
  int sumi0 = 0;
  int sumi1 = 0;
  for (int j = 0; j < qk4_0 / 2; ++j) {
    sumi0 += ((x.qs[j] & 0x0f) - 8) * y.qs[j];
    sumi1 += ((x.qs[j] >> 4) - 8) * y.qs[j + qk4_0 / 2];
  }
  return sumi0 + sumi1;
}

int32_t dot_q8_0(const block_q8_0& x, const block_q8_0& y) {
  int sumi = 0;
  for (int j = 0; j < qk8_0; ++j) {
    sumi += x.qs[j] * y.qs[j];
  }
  return sumi;
}

/// aux32[8] = ggml's eight lane sums of Σ scale · q · y; returns Σ min · bsum.
int32_t dot_q4_k(const block_q4_k& x, const block_q8_k& y, int32_t* aux32) {
  int8_t a[qk_k];
  for (int j = 0; j < qk_k / 64; ++j) {
    for (int l = 0; l < 32; ++l) {
      a[64 * j + l] = static_cast<int8_t>(x.qs[32 * j + l] & 0x0f);
      a[64 * j + 32 + l] = static_cast<int8_t>(x.qs[32 * j + l] >> 4);
    }
  }
  uint8_t sc[8], m[8];
  q4_k_scales_mins(x, sc, m);
  int32_t sumi = 0;
  for (int j = 0; j < qk_k / 16; ++j) {
    sumi += y.bsums[j] * m[j / 2];
  }
  std::memset(aux32, 0, 8 * sizeof(int32_t));
  for (int j = 0; j < qk_k; j += 8) {
    const int32_t scale = sc[j / 32];
    for (int l = 0; l < 8; ++l) {
      aux32[l] += scale * static_cast<int16_t>(y.qs[j + l] * a[j + l]);
    }
  }
  return sumi;
}

/// aux32[8] = ggml's eight lane sums of Σ scale · (q − 32) · y.
void dot_q6_k(const block_q6_k& x, const block_q8_k& y, int32_t* aux32) {
  int8_t a[qk_k];
  for (int n = 0; n < qk_k / 128; ++n) {
    const uint8_t* ql = x.ql + 64 * n;
    const uint8_t* qh = x.qh + 32 * n;
    int8_t* an = a + 128 * n;
    for (int l = 0; l < 32; ++l) {
      an[l + 0] = static_cast<int8_t>(((ql[l + 0] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
      an[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
      an[l + 64] = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      an[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
  std::memset(aux32, 0, 8 * sizeof(int32_t));
  for (int j = 0; j < qk_k; j += 8) {
    const int32_t scale = x.scales[j / 16];
    for (int l = 0; l < 8; ++l) {
      aux32[l] += scale * static_cast<int16_t>(y.qs[j + l] * a[j + l]);
    }
  }
}

// -- scalar dot products (ggml generic order) -------------------------------------

float vec_dot_scalar(ggml_type weight, const uint8_t* w, const uint8_t* x, int64_t n) {
  switch (weight) {
    case ggml_type::f32: {
      double sumf = 0.0;  // ggml_float
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(load<float>(w + 4 * i) * load<float>(x + 4 * i));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::f16: {
      double sumf = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(fp16_to_fp32(load<uint16_t>(w + 2 * i)) *
                                    fp16_to_fp32(load<uint16_t>(x + 2 * i)));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::bf16: {
      double sumf = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(bf16_to_fp32(load<uint16_t>(w + 2 * i)) *
                                    bf16_to_fp32(load<uint16_t>(x + 2 * i)));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::q4_0: {
      float sumf = 0.0f;
      for (int64_t ib = 0; ib < n / qk4_0; ++ib) {
        const auto xb = load<block_q4_0>(w + ib * sizeof(block_q4_0));
        const auto yb = load<block_q8_0>(x + ib * sizeof(block_q8_0));
        const int sumi = dot_q4_0(xb, yb);
        sumf += static_cast<float>(sumi) * fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d);
      }
      return sumf;
    }
    case ggml_type::q8_0: {
      float sumf = 0.0f;
      for (int64_t ib = 0; ib < n / qk8_0; ++ib) {
        const auto xb = load<block_q8_0>(w + ib * sizeof(block_q8_0));
        const auto yb = load<block_q8_0>(x + ib * sizeof(block_q8_0));
        const int sumi = dot_q8_0(xb, yb);
        sumf += static_cast<float>(sumi) * (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d));
      }
      return sumf;
    }
    case ggml_type::q4_k: {
      float sums[8] = {};
      float sumf = 0.0f;
      for (int64_t i = 0; i < n / qk_k; ++i) {
        const auto xb = load<block_q4_k>(w + i * sizeof(block_q4_k));
        const auto yb = load<block_q8_k>(x + i * sizeof(block_q8_k));
        int32_t aux32[8];
        const int32_t sumi = dot_q4_k(xb, yb, aux32);
        const float d = fp16_to_fp32(xb.d) * yb.d;
        for (int l = 0; l < 8; ++l) {
          sums[l] += d * static_cast<float>(aux32[l]);
        }
        const float dmin = fp16_to_fp32(xb.dmin) * yb.d;
        sumf -= dmin * static_cast<float>(sumi);
      }
      for (int l = 0; l < 8; ++l) {
        sumf += sums[l];
      }
      return sumf;
    }
    case ggml_type::q6_k: {
      float sums[8] = {};
      float sumf = 0.0f;
      for (int64_t i = 0; i < n / qk_k; ++i) {
        const auto xb = load<block_q6_k>(w + i * sizeof(block_q6_k));
        const auto yb = load<block_q8_k>(x + i * sizeof(block_q8_k));
        int32_t aux32[8];
        dot_q6_k(xb, yb, aux32);
        const float d = fp16_to_fp32(xb.d) * yb.d;
        for (int l = 0; l < 8; ++l) {
          sums[l] += d * static_cast<float>(aux32[l]);
        }
      }
      for (int l = 0; l < 8; ++l) {
        sumf += sums[l];
      }
      return sumf;
    }
    default:
      std::abort();  // callers check has_matmul first
  }
}

void block_dot_ints_scalar(ggml_type weight, const uint8_t* w, const uint8_t* x, int64_t n,
                           int32_t* out) {
  switch (weight) {
    case ggml_type::q4_0:
      for (int64_t ib = 0; ib < n / qk4_0; ++ib) {
        out[ib] = dot_q4_0(load<block_q4_0>(w + ib * sizeof(block_q4_0)),
                           load<block_q8_0>(x + ib * sizeof(block_q8_0)));
      }
      return;
    case ggml_type::q8_0:
      for (int64_t ib = 0; ib < n / qk8_0; ++ib) {
        out[ib] = dot_q8_0(load<block_q8_0>(w + ib * sizeof(block_q8_0)),
                           load<block_q8_0>(x + ib * sizeof(block_q8_0)));
      }
      return;
    case ggml_type::q4_k:
      for (int64_t i = 0; i < n / qk_k; ++i) {
        int32_t aux32[8];
        out[2 * i + 1] = dot_q4_k(load<block_q4_k>(w + i * sizeof(block_q4_k)),
                                  load<block_q8_k>(x + i * sizeof(block_q8_k)), aux32);
        out[2 * i] = 0;
        for (int l = 0; l < 8; ++l) {
          out[2 * i] += aux32[l];
        }
      }
      return;
    case ggml_type::q6_k:
      for (int64_t i = 0; i < n / qk_k; ++i) {
        int32_t aux32[8];
        dot_q6_k(load<block_q6_k>(w + i * sizeof(block_q6_k)),
                 load<block_q8_k>(x + i * sizeof(block_q8_k)), aux32);
        out[i] = 0;
        for (int l = 0; l < 8; ++l) {
          out[i] += aux32[l];
        }
      }
      return;
    default:
      std::abort();
  }
}

void matmul_scalar(ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
                   int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1) {
  const size_t w_stride = row_bytes(weight, static_cast<uint64_t>(n_in));
  const size_t x_stride = activation_row_bytes(weight, n_in);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xq);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      y[t * ldy + r] = vec_dot_scalar(weight, wb + r * w_stride, xb + t * x_stride, n_in);
    }
  }
}

}  // namespace

bool has_matmul(ggml_type weight) {
  switch (weight) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16:
    case ggml_type::q4_0:
    case ggml_type::q8_0:
    case ggml_type::q4_k:
    case ggml_type::q6_k:
      return true;
    default:
      return false;
  }
}

ggml_type activation_type(ggml_type weight) {
  switch (weight) {
    case ggml_type::q4_0:
    case ggml_type::q8_0:
      return ggml_type::q8_0;
    case ggml_type::q4_k:
    case ggml_type::q6_k:
      return ggml_type::q8_k;
    case ggml_type::f16:
      return ggml_type::f16;
    case ggml_type::bf16:
      return ggml_type::bf16;
    case ggml_type::f32:
      return ggml_type::f32;
    default:
      std::abort();  // callers check has_matmul first
  }
}

size_t activation_row_bytes(ggml_type weight, int64_t n_in) {
  return row_bytes(activation_type(weight), static_cast<uint64_t>(n_in));
}

void quantize_row_q8_k(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  for (int64_t i = 0; i < n / qk_k; ++i, x += qk_k) {
    block_q8_k b;
    float max = 0.0f;
    float amax = 0.0f;
    for (int j = 0; j < qk_k; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&b, 0, sizeof b);  // ggml leaves bsums as they were; zero is their value
    } else {
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
    std::memcpy(out + i * sizeof b, &b, sizeof b);
  }
}

void quantize_activation_row(isa v, ggml_type weight, const float* x, void* xq, int64_t n_in) {
  if (v != isa::scalar) {
    // the AVX2 conversions are bit-identical to the scalar ones and not worth a third copy
    return detail::quantize_activation_row_avx2(weight, x, xq, n_in);
  }
  switch (activation_type(weight)) {
    case ggml_type::q8_0:
      return quantize_row_q8_0(x, xq, n_in);
    case ggml_type::q8_k:
      return quantize_row_q8_k(x, xq, n_in);
    case ggml_type::f16:
      return convert_row_f16(x, static_cast<uint16_t*>(xq), n_in);
    case ggml_type::bf16:
      return convert_row_bf16(x, static_cast<uint16_t*>(xq), n_in);
    default:
      std::memcpy(xq, x, static_cast<size_t>(n_in) * sizeof(float));
      return;
  }
}

float vec_dot(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in) {
  if (v == isa::scalar) {
    return vec_dot_scalar(weight, static_cast<const uint8_t*>(w_row),
                          static_cast<const uint8_t*>(x_row), n_in);
  }
  // the 1 × 1 tile of matmul: by construction what matmul gives this element
  float y = 0.0f;
  matmul(v, weight, w_row, x_row, &y, n_in, 1, 1, 0, 1);
  return y;
}

void matmul(isa v, ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
            int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1) {
  if (!has_matmul(weight) || n_in <= 0 || n_in % traits(weight).block_size != 0 || r0 > r1 ||
      n_tokens < 0) {
    std::abort();  // a caller's bug: shapes come from checked model files
  }
  if (r0 == r1 || n_tokens == 0) {
    return;
  }
  switch (v) {
    case isa::scalar:
      return matmul_scalar(weight, w, xq, y, n_in, n_tokens, ldy, r0, r1);
    case isa::avx2:
      return detail::matmul_avx2(weight, w, xq, y, n_in, n_tokens, ldy, r0, r1);
    case isa::avx512:
      return detail::matmul_avx512(weight, w, xq, y, n_in, n_tokens, ldy, r0, r1);
  }
}

int block_dot_ints_per_block(ggml_type weight) { return weight == ggml_type::q4_k ? 2 : 1; }

void block_dot_ints(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                    int32_t* out) {
  switch (v) {
    case isa::scalar:
      return block_dot_ints_scalar(weight, static_cast<const uint8_t*>(w_row),
                                   static_cast<const uint8_t*>(x_row), n_in, out);
    case isa::avx2:
      return detail::block_dot_ints_avx2(weight, w_row, x_row, n_in, out);
    case isa::avx512:
      return detail::block_dot_ints_avx512(weight, w_row, x_row, n_in, out);
  }
}

}  // namespace baton::cpu
