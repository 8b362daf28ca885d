// The shared __host__ __device__ math (kernels/blocks.hpp, kernels/ops_math.hpp) that the
// CUDA kernels run: each function against an independent transcription of ggml's
// reference C, and the CPU scalar reference shown to compute exactly these functions.
// Runs on every machine, so the arithmetic the GPU runs is tested without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/ops_math.hpp"
#include "tests/random_weights.hpp"

namespace baton {
namespace {

using test::random_block;

/// Activation blocks as the quantizer makes them (q in −127..127, bsums consistent).
block_q8_k random_q8_k(std::mt19937& rng) {
  block_q8_k y = random_block<block_q8_k>(rng);
  for (int j = 0; j < qk_k; ++j) {
    y.qs[j] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  }
  for (int j = 0; j < qk_k / 16; ++j) {
    int s = 0;
    for (int l = 0; l < 16; ++l) {
      s += y.qs[16 * j + l];
    }
    y.bsums[j] = static_cast<int16_t>(s);
  }
  return y;
}

block_q8_0 random_q8_0(std::mt19937& rng) {
  block_q8_0 y = random_block<block_q8_0>(rng);
  for (auto& q : y.qs) {
    q = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  }
  return y;
}

/// Floats with exact halves after scaling, zeros, ties of magnitude and outliers.
std::vector<float> corner_floats(std::mt19937& rng, int n) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    v = nd(rng);
    switch (rng() % 11) {
      case 0:
        v = std::round(v * 8.0f) + 0.5f;
        break;
      case 1:
        v = 0.0f;
        break;
      case 2:
        v *= 50.0f;
        break;
      default:
        break;
    }
  }
  return x;
}

// -- ggml's reference C, transcribed independently --------------------------------

/// ggml's q4_K scale/min unpacking through the utmp word shuffle.
void ggml_q4_k_scales(const block_q4_k& b, uint8_t* scales, uint8_t* mins) {
  const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t utmp[4];
  std::memcpy(utmp, b.scales, 12);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
  std::memcpy(scales, &utmp[0], 8);
  std::memcpy(mins, &utmp[2], 8);
}

/// (Σ scale·q·y, Σ min·bsum) of ggml_vec_dot_q4_K_q8_K's generic loop.
std::pair<int64_t, int64_t> ggml_q4_k_ints(const block_q4_k& x, const block_q8_k& y) {
  int8_t a[qk_k];
  const uint8_t* q4 = x.qs;
  for (int j = 0; j < qk_k / 64; ++j) {
    for (int l = 0; l < 32; ++l) {
      a[64 * j + l] = static_cast<int8_t>(q4[l] & 0xf);
      a[64 * j + 32 + l] = static_cast<int8_t>(q4[l] >> 4);
    }
    q4 += 32;
  }
  uint8_t scales[8], mins[8];
  ggml_q4_k_scales(x, scales, mins);
  int64_t sum = 0, sum_min = 0;
  for (int e = 0; e < qk_k; ++e) {
    sum += scales[e / 32] * a[e] * y.qs[e];
  }
  for (int j = 0; j < qk_k / 16; ++j) {
    sum_min += y.bsums[j] * mins[j / 2];
  }
  return {sum, sum_min};
}

/// ggml_vec_dot_q6_K_q8_K's generic unpacking; Σ scale·(q − 32)·y.
int64_t ggml_q6_k_int(const block_q6_k& x, const block_q8_k& y, int8_t* a) {
  const uint8_t* q4 = x.ql;
  const uint8_t* qh = x.qh;
  int8_t* ap = a;
  for (int j = 0; j < qk_k; j += 128) {
    for (int l = 0; l < 32; ++l) {
      ap[l + 0] = static_cast<int8_t>((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      ap[l + 32] = static_cast<int8_t>((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      ap[l + 64] = static_cast<int8_t>((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      ap[l + 96] = static_cast<int8_t>((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
    }
    ap += 128;
    q4 += 64;
    qh += 32;
  }
  int64_t sum = 0;
  for (int e = 0; e < qk_k; ++e) {
    sum += x.scales[e / 16] * a[e] * y.qs[e];
  }
  return sum;
}

/// quantize_row_q8_0_ref for one block.
block_q8_0 ggml_q8_0(const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < qk8_0; ++j) {
    const float v = std::fabs(x[j]);
    amax = amax > v ? amax : v;
  }
  const float d = amax / ((1 << 7) - 1);
  const float id = d ? 1.0f / d : 0.0f;
  block_q8_0 y;
  y.d = fp32_to_fp16(d);
  for (int j = 0; j < qk8_0; ++j) {
    y.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
  return y;
}

// -- blocks.hpp ----------------------------------------------------------------------

TEST(blocks_hd, nearest_int_rounds_half_to_even) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> ud(-4.0e6f, 4.0e6f);
  for (int i = 0; i < 20000; ++i) {
    float f = ud(rng);
    if (i % 3 == 0) {
      f = std::round(f / 1000.0f) + 0.5f;  // exact halves
    }
    ASSERT_EQ(nearest_int(f), static_cast<int>(std::nearbyint(f))) << f;
  }
  EXPECT_EQ(nearest_int(2.5f), 2);
  EXPECT_EQ(nearest_int(-2.5f), -2);
  EXPECT_EQ(nearest_int(3.5f), 4);
}

TEST(blocks_hd, q4_0_and_q8_0_dots_match_the_definition) {
  std::mt19937 rng(2);
  for (int rep = 0; rep < 2000; ++rep) {
    const auto w4 = random_block<block_q4_0>(rng);
    const auto w8 = random_q8_0(rng);
    const auto y = random_q8_0(rng);
    int want4 = 0, want8 = 0;
    for (int j = 0; j < 16; ++j) {  // element j is the low nibble, j + 16 the high one
      want4 += ((w4.qs[j] & 0xf) - 8) * y.qs[j] + ((w4.qs[j] >> 4) - 8) * y.qs[j + 16];
    }
    for (int j = 0; j < 32; ++j) {
      want8 += w8.qs[j] * y.qs[j];
    }
    ASSERT_EQ(dot_q4_0(w4, y), want4);
    ASSERT_EQ(dot_q8_0(w8, y), want8);
  }
}

TEST(blocks_hd, q4_k_dot_matches_ggml) {
  std::mt19937 rng(3);
  for (int rep = 0; rep < 500; ++rep) {
    const auto x = random_block<block_q4_k>(rng);
    const auto y = random_q8_k(rng);
    int32_t aux32[8];
    const int32_t sum_min = dot_q4_k(x, y, aux32);
    int64_t sum = 0;
    for (int l = 0; l < 8; ++l) {
      sum += aux32[l];
    }
    const auto want = ggml_q4_k_ints(x, y);
    ASSERT_EQ(sum, want.first);
    ASSERT_EQ(sum_min, want.second);
    // the lanes are ggml's: lane l sums elements ≡ l (mod 8)
    uint8_t scales[8], mins[8];
    ggml_q4_k_scales(x, scales, mins);
    for (int l = 0; l < 8; ++l) {
      int64_t lane = 0;
      for (int e = l; e < qk_k; e += 8) {
        lane += scales[e / 32] * static_cast<int16_t>(q4_k_quant(x, e) * y.qs[e]);
      }
      ASSERT_EQ(aux32[l], lane);
    }
  }
}

TEST(blocks_hd, q6_k_dot_matches_ggml) {
  std::mt19937 rng(4);
  for (int rep = 0; rep < 500; ++rep) {
    const auto x = random_block<block_q6_k>(rng);
    const auto y = random_q8_k(rng);
    int32_t aux32[8];
    dot_q6_k(x, y, aux32);
    int64_t sum = 0;
    for (int l = 0; l < 8; ++l) {
      sum += aux32[l];
    }
    int8_t a[qk_k];
    ASSERT_EQ(sum, ggml_q6_k_int(x, y, a));
    for (int e = 0; e < qk_k; ++e) {
      ASSERT_EQ(q6_k_quant(x, e), a[e]) << e;
    }
  }
}

TEST(blocks_hd, q8_0_quantizer_matches_ggml) {
  std::mt19937 rng(5);
  for (int rep = 0; rep < 2000; ++rep) {
    auto x = corner_floats(rng, qk8_0);
    if (rep % 7 == 0) {
      std::fill(x.begin(), x.end(), 0.0f);
    }
    block_q8_0 got;
    quantize_block_q8_0(x.data(), got);
    const block_q8_0 want = ggml_q8_0(x.data());
    ASSERT_EQ(0, std::memcmp(&got, &want, sizeof got)) << rep;
  }
}

TEST(blocks_hd, scalar_reference_runs_the_shared_block_functions) {
  std::mt19937 rng(6);
  const int64_t n = 4 * qk_k;
  for (int rep = 0; rep < 20; ++rep) {
    const auto x = corner_floats(rng, static_cast<int>(n));
    // activation rows: the cpu reference's bytes are the per-block quantizers'
    std::vector<block_q8_0> q8(n / qk8_0), q8_blocks(n / qk8_0);
    std::vector<block_q8_k> qk(n / qk_k), qk_blocks(n / qk_k);
    cpu::quantize_activation_row(cpu::isa::scalar, ggml_type::q8_0, x.data(), q8.data(), n);
    cpu::quantize_activation_row(cpu::isa::scalar, ggml_type::q4_k, x.data(), qk.data(), n);
    for (int64_t b = 0; b < n / qk8_0; ++b) {
      quantize_block_q8_0(x.data() + b * qk8_0, q8_blocks[b]);
    }
    for (int64_t b = 0; b < n / qk_k; ++b) {
      quantize_block_q8_k(x.data() + b * qk_k, qk_blocks[b]);
    }
    ASSERT_EQ(0, std::memcmp(q8.data(), q8_blocks.data(), q8.size() * sizeof(block_q8_0)));
    ASSERT_EQ(0, std::memcmp(qk.data(), qk_blocks.data(), qk.size() * sizeof(block_q8_k)));

    // block_dot_ints(scalar) is the block dots, q4_K as (Σaux, Σmin)
    std::vector<block_q4_k> w4k(n / qk_k);
    std::vector<block_q6_k> w6k(n / qk_k);
    for (auto& b : w4k) {
      b = random_block<block_q4_k>(rng);
    }
    for (auto& b : w6k) {
      b = random_block<block_q6_k>(rng);
    }
    std::vector<int32_t> got(2 * n / qk_k);
    cpu::block_dot_ints(cpu::isa::scalar, ggml_type::q4_k, w4k.data(), qk.data(), n, got.data());
    for (int64_t b = 0; b < n / qk_k; ++b) {
      const auto want = ggml_q4_k_ints(w4k[b], qk[b]);
      ASSERT_EQ(got[2 * b], want.first);
      ASSERT_EQ(got[2 * b + 1], want.second);
    }
    cpu::block_dot_ints(cpu::isa::scalar, ggml_type::q6_k, w6k.data(), qk.data(), n, got.data());
    for (int64_t b = 0; b < n / qk_k; ++b) {
      int8_t a[qk_k];
      ASSERT_EQ(got[b], ggml_q6_k_int(w6k[b], qk[b], a));
    }
  }
}

// -- ops_math.hpp ----------------------------------------------------------------------

TEST(ops_math, scalar_reference_is_the_shared_per_element_math) {
  std::mt19937 rng(7);
  const int n = 999;
  const auto x = corner_floats(rng, n);
  const auto w = corner_floats(rng, n);
  std::vector<float> y(n);

  cpu::rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
  double sum = 0.0;
  for (float v : x) {
    sum += static_cast<double>(v) * v;
  }
  // the CPU's order of the sum: within a few double ulps of one chain of adds
  EXPECT_NEAR(rms_sum_sq(x.data(), n), sum, 1e-14 * sum);
  const float scale = rms_inv_scale(rms_sum_sq(x.data(), n), n, 1e-5f);
  EXPECT_NEAR(scale, 1.0 / std::sqrt(sum / n + 1e-5), 1e-6 * scale);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(float_bits(y[i]), float_bits(rms_scaled(x[i], scale, w[i]))) << i;
  }

  cpu::silu_mul(x.data(), w.data(), y.data(), n);
  for (int i = 0; i < n; ++i) {
    const float want = silu_times(x[i], w[i]);
    ASSERT_EQ(float_bits(y[i]), float_bits(want)) << i;
    const double exact = x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))) * w[i];
    ASSERT_NEAR(want, exact, 1e-5 * (std::fabs(exact) + 1e-30) + 1e-35) << i;
  }

  std::vector<float> cs(128), r(x.begin(), x.begin() + 128);
  cpu::rope_cache(1234, 128, 500000.0f, nullptr, cs.data());
  cpu::rope_apply(r.data(), 128, cs.data());
  for (int i = 0; i < 128; i += 2) {
    float a = x[i], b = x[i + 1];
    rope_rotate(a, b, cs[i], cs[i + 1]);
    ASSERT_EQ(float_bits(r[i]), float_bits(a));
    ASSERT_EQ(float_bits(r[i + 1]), float_bits(b));
  }

  std::vector<float> s(x.begin(), x.begin() + 100);
  cpu::softmax(s.data(), 100);
  float max = -INFINITY;
  for (int i = 0; i < 100; ++i) {
    max = std::fmax(max, x[i]);
  }
  double total = 0.0;
  for (int i = 0; i < 100; ++i) {
    total += softmax_exp(x[i], max);
  }
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(float_bits(s[i]), float_bits(softmax_exp(x[i], max) * softmax_inv(total)));
  }
}

TEST(ops_math, round_f16_is_the_nearest_half) {
  std::mt19937 rng(8);
  const auto x = corner_floats(rng, 5000);
  for (float v : x) {
    const float r = round_f16(v);
    ASSERT_EQ(round_f16(r), r);  // halves are fixed points
    // no half lies strictly closer: check both neighbours of r
    const uint16_t h = fp32_to_fp16(r);
    for (int step : {-1, 1}) {
      const uint16_t mag = static_cast<uint16_t>(h & 0x7fff);
      if ((step < 0 && mag == 0) || mag >= 0x7bff) {
        continue;
      }
      const float other = fp16_to_fp32(static_cast<uint16_t>(h + step));
      ASSERT_LE(std::fabs(v - r), std::fabs(v - other)) << v;
    }
  }
}

}  // namespace
}  // namespace baton
