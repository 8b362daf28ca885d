// kernels/cpu/matmul: every SIMD variant against the scalar reference, on random rows of
// odd sizes. Activation conversion and per-block integer dot products must be bit-exact;
// whole dot products may differ only by float summation order (bounded by normalized
// mean squared error, as llama.cpp's test-backend-ops bounds backends). That within one
// isa an element does not depend on n_tokens, the row range, the tile or the layout is
// matmul_invariance_test.cpp's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/ggml_type.hpp"
#include "tests/matmul_test_util.hpp"
#include "tests/random_weights.hpp"

namespace baton {

namespace {

using cpu::isa;

const ggml_type k_quant_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k,
                                   ggml_type::q6_k};

using test::k_all_types;
using test::matmul_cases;
using test::random_activations;
using test::random_floats;
using test::random_weights;
using test::simd;
using test::type_name;

double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return err / norm;
}

// -- the scalar reference itself --------------------------------------------------

/// ggml's quantize_row_q8_K_ref, transcribed independently of kernels/cpu.
void ggml_q8_k(const float* x, block_q8_k* y, int64_t k) {
  for (int64_t i = 0; i < k / 256; ++i, x += 256) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (!amax) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, 256);
      std::memset(y[i].bsums, 0, sizeof y[i].bsums);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; ++j) {
      const float val = iscale * x[j] + 12582912.f;
      int bits;
      std::memcpy(&bits, &val, 4);
      const int v = (bits & 0x007fffff) - 0x00400000;
      y[i].qs[j] = static_cast<int8_t>(std::min(127, v));
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) {
        sum += y[i].qs[16 * j + l];
      }
      y[i].bsums[j] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

/// Rows that exercise the quantizers' corners: exact halves after scaling (roundf rounds
/// them away from zero, nearest_int to even), equal magnitudes of both signs, zeros.
std::vector<float> corner_row(std::mt19937& rng, int64_t n) {
  auto x = random_floats(rng, n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float* xb = x.data() + 32 * b;
    switch (b % 5) {
      case 0:  // amax 127: d = 1, x·id is x itself
        for (int j = 0; j < 32; ++j) {
          xb[j] = static_cast<float>(static_cast<int>(rng() % 254) - 127) + 0.5f;
        }
        xb[5] = 127.0f;
        break;
      case 1:
        std::fill(xb, xb + 32, 0.0f);
        break;
      case 2:  // the largest magnitude twice, negative first
        xb[3] = -9.0f;
        xb[20] = 9.0f;
        break;
      case 3:
        xb[7] = -0.0f;
        break;
      default:
        break;
    }
  }
  return x;
}

TEST(matmul_scalar, q8_k_matches_ggml_reference) {
  std::mt19937 rng(11);
  for (int rep = 0; rep < 50; ++rep) {
    const int64_t n = 256 * 4;
    auto x = corner_row(rng, n);
    if (rep == 0) {
      std::fill(x.begin(), x.begin() + 256, 0.0f);  // a whole block of zeros
    }
    std::vector<block_q8_k> ours(n / 256), ref(n / 256);
    cpu::quantize_row_q8_k(x.data(), ours.data(), n);
    ggml_q8_k(x.data(), ref.data(), n);
    ASSERT_EQ(0, std::memcmp(ours.data(), ref.data(), ours.size() * sizeof(block_q8_k))) << rep;
  }
}

TEST(matmul_scalar, dot_products_match_dequantized_rows) {
  // the scalar dots against float dots of the decoded rows: checks the formats' reading
  std::mt19937 rng(12);
  for (ggml_type type : k_all_types) {
    const int64_t n_in = traits(type).block_size == 256 ? 768 : 224;
    const auto w = random_weights(rng, type, 1, n_in);
    const auto x = random_floats(rng, n_in);
    std::vector<uint8_t> xq(cpu::activation_row_bytes(type, n_in));
    cpu::quantize_activation_row(isa::scalar, type, x.data(), xq.data(), n_in);
    std::vector<float> wf(n_in), xf(n_in);
    cpu::dequantize_row(type, w.data(), wf.data(), n_in);
    if (cpu::activation_type(type) == ggml_type::q8_k) {
      const auto* b = reinterpret_cast<const block_q8_k*>(xq.data());
      for (int64_t i = 0; i < n_in; ++i) {
        xf[i] = b[i / 256].d * b[i / 256].qs[i % 256];
      }
    } else {
      cpu::dequantize_row(cpu::activation_type(type), xq.data(), xf.data(), n_in);
    }
    double ref = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n_in; ++i) {
      ref += static_cast<double>(wf[i]) * xf[i];
      mag += std::fabs(static_cast<double>(wf[i]) * xf[i]);
    }
    const float got = cpu::vec_dot(isa::scalar, type, w.data(), xq.data(), n_in);
    EXPECT_NEAR(got, ref, 1e-5 * mag) << type_name(type);
  }
}

TEST(isa, names_round_trip) {
  for (isa v : {isa::scalar, isa::avx2, isa::avx512}) {
    EXPECT_EQ(cpu::parse_isa(cpu::isa_name(v)), v);
  }
  EXPECT_FALSE(cpu::parse_isa("sse2").has_value());
  EXPECT_TRUE(cpu::isa_supported(isa::scalar));
  EXPECT_TRUE(cpu::isa_supported(cpu::best_isa()));
}

// -- each SIMD isa against the scalar reference ---------------------------------------

TEST_P(simd, activation_conversion_is_bit_exact) {
  std::mt19937 rng(21);
  for (ggml_type type : k_all_types) {
    for (int64_t n_in : {256, 768, 4096}) {
      for (int rep = 0; rep < 20; ++rep) {
        const auto x = rep % 2 ? corner_row(rng, n_in) : random_floats(rng, n_in);
        const size_t xs = cpu::activation_row_bytes(type, n_in);
        std::vector<uint8_t> ref(xs), got(xs, 0xee);
        cpu::quantize_activation_row(isa::scalar, type, x.data(), ref.data(), n_in);
        cpu::quantize_activation_row(GetParam(), type, x.data(), got.data(), n_in);
        ASSERT_EQ(0, std::memcmp(ref.data(), got.data(), xs))
            << type_name(type) << " n_in " << n_in << " rep " << rep;
      }
    }
  }
  // f16 / bf16 / f32 rows of any length
  for (ggml_type type : {ggml_type::f16, ggml_type::bf16, ggml_type::f32}) {
    const auto x = random_floats(rng, 37);
    const size_t xs = cpu::activation_row_bytes(type, 37);
    std::vector<uint8_t> ref(xs), got(xs);
    cpu::quantize_activation_row(isa::scalar, type, x.data(), ref.data(), 37);
    cpu::quantize_activation_row(GetParam(), type, x.data(), got.data(), 37);
    EXPECT_EQ(0, std::memcmp(ref.data(), got.data(), xs)) << type_name(type);
  }
}

TEST_P(simd, block_integer_dots_are_bit_exact) {
  std::mt19937 rng(22);
  for (ggml_type type : k_quant_types) {
    const int64_t bsz = traits(type).block_size;
    for (int64_t nb : {1, 3, 7, 64}) {
      const int64_t n_in = bsz * nb;
      for (int rep = 0; rep < 10; ++rep) {
        const auto w = random_weights(rng, type, 1, n_in);
        const auto xq = random_activations(rng, type, 1, n_in);
        const size_t n_ints = static_cast<size_t>(nb * cpu::block_dot_ints_per_block(type));
        std::vector<int32_t> ref(n_ints), got(n_ints, -1);
        cpu::block_dot_ints(isa::scalar, type, w.data(), xq.data(), n_in, ref.data());
        cpu::block_dot_ints(GetParam(), type, w.data(), xq.data(), n_in, got.data());
        ASSERT_EQ(ref, got) << type_name(type) << " n_in " << n_in << " rep " << rep;
      }
    }
  }
}

TEST_P(simd, matmul_matches_scalar_within_nmse) {
  std::mt19937 rng(23);
  for (auto [type, n_in] : matmul_cases()) {
    for (int64_t n_tokens : {1, 3, 7, 17}) {
      const int64_t n_out = 37;
      const auto w = random_weights(rng, type, n_out, n_in);
      const auto xq = random_activations(rng, type, n_tokens, n_in);
      std::vector<float> ref(n_out * n_tokens), got(n_out * n_tokens);
      cpu::matmul(isa::scalar, type, w.data(), xq.data(), ref.data(), n_in, n_tokens, n_out, 0,
                  n_out);
      cpu::matmul(GetParam(), type, w.data(), xq.data(), got.data(), n_in, n_tokens, n_out, 0,
                  n_out);
      // only the summation order of per-block float terms differs: a few ulps of the sum
      const double e = nmse(got, ref);
      EXPECT_LE(e, 1e-10) << type_name(type) << " n_in " << n_in << " n_tokens " << n_tokens;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(isa, simd, ::testing::Values(isa::avx2, isa::avx512),
                         [](const ::testing::TestParamInfo<isa>& i) {
                           return std::string(cpu::isa_name(i.param));
                         });

}  // namespace
}  // namespace baton
