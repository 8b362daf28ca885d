// kernels/: type table, float conversions (checked against the CPU's own F16C
// instructions, exhaustively for half → float) and the per-block decoders (checked
// against an independent bit-by-bit reading of each format's definition).
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/ggml_type.hpp"
#include "tests/random_weights.hpp"

namespace baton {
namespace {

bool have_f16c() { return cpu::isa_supported(cpu::isa::avx2); }  // AVX2 twin needs F16C

__attribute__((target("f16c"))) float hw_half_to_float(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t hw_float_to_half(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

TEST(ggml_type, block_sizes_match_ggml) {
  struct {
    uint32_t id;
    uint32_t block, bytes;
  } expected[] = {{0, 1, 4},     {1, 1, 2},     {2, 32, 18},   {3, 32, 20},   {6, 32, 22},
                  {7, 32, 24},   {8, 32, 34},   {9, 32, 36},   {10, 256, 84}, {11, 256, 110},
                  {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {16, 256, 66},
                  {17, 256, 74}, {18, 256, 98},  {19, 256, 50},  {20, 32, 18},  {21, 256, 110},
                  {22, 256, 82}, {23, 256, 136}, {29, 256, 56},  {30, 1, 2},    {34, 256, 54},
                  {35, 256, 66}, {39, 32, 17}};
  for (const auto& e : expected) {
    auto t = type_traits(e.id);
    ASSERT_TRUE(t.has_value()) << e.id;
    EXPECT_EQ(t->block_size, e.block) << t->name;
    EXPECT_EQ(t->type_size, e.bytes) << t->name;
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 1000u}) {
    EXPECT_FALSE(type_traits(removed).has_value()) << removed;
  }
  EXPECT_EQ(row_bytes(ggml_type::q4_k, 4096), 16u * 144u);
  EXPECT_EQ(parse_type_name("Q4_K"), ggml_type::q4_k);
  EXPECT_EQ(parse_type_name("F16"), ggml_type::f16);
  EXPECT_FALSE(parse_type_name("q4_2").has_value());
}

TEST(fp16, half_to_float_exhaustive_against_f16c) {
  if (!have_f16c()) {
    GTEST_SKIP() << "this CPU has no F16C to compare with";
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ours = fp16_to_fp32(static_cast<uint16_t>(h));
    const float hw = hw_half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(ours)) << h;
    } else {
      ASSERT_EQ(float_bits(ours), float_bits(hw)) << "half 0x" << std::hex << h;
    }
  }
}

TEST(fp16, float_to_half_round_to_nearest_even_against_f16c) {
  if (!have_f16c()) {
    GTEST_SKIP() << "this CPU has no F16C to compare with";
  }
  std::mt19937 rng(7);
  std::vector<uint32_t> cases = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x477fe000,
                                 0x477ff000, 0x477fefff, 0x38800000, 0x387fffff, 0x33800000,
                                 0x33000000, 0x33000001, 0x3f800000, 0x3f801000, 0x3f803000};
  for (int i = 0; i < 2000000; ++i) {
    cases.push_back(rng());
  }
  // every half boundary region: values near each half, both sides
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const uint32_t f = float_bits(hw_half_to_float(static_cast<uint16_t>(h)));
    cases.push_back(f + 0x1000);
    cases.push_back(f + 0xfff);
    cases.push_back(f + 0x1001);
  }
  for (uint32_t bits : cases) {
    const float f = bits_float(bits);
    if (std::isnan(f)) {
      EXPECT_EQ(fp32_to_fp16(f) & 0x7c00, 0x7c00);
      EXPECT_NE(fp32_to_fp16(f) & 0x3ff, 0);
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), hw_float_to_half(f)) << "float bits 0x" << std::hex << bits;
  }
}

TEST(bf16, round_to_nearest_even) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3f808001)), 0x3f81);
  EXPECT_EQ(bf16_to_fp32(0xc000), -2.0f);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
}

// -- independent readings of the formats ------------------------------------------

/// Bit `i` of a little-endian byte array.
int bit(const uint8_t* p, int i) { return (p[i / 8] >> (i % 8)) & 1; }

/// Q4_0 element j: byte j%16, low nibble for j<16, high for j>=16.
float ref_q4_0(const block_q4_0& b, int j) {
  const int byte = b.qs[j % 16];
  const int q = j < 16 ? (byte & 15) : (byte >> 4);
  return static_cast<float>(q - 8) * fp16_to_fp32(b.d);
}

/// Q4_K: the 12 scale bytes hold 8 six-bit scales and 8 six-bit mins. Sub-blocks 0..3:
/// scale = bits 0..5 of byte j, min = bits 0..5 of byte j+4. Sub-blocks 4..7: low 4
/// bits from byte j+4 (scale: low nibble, min: high nibble), high 2 bits from the top
/// bits of byte j-4 (scale) and byte j (min). Element e of sub-block s sits in qs
/// byte 32*(s/2) + e, low nibble when s is even.
float ref_q4_k(const block_q4_k& b, int e_all) {
  const int s = e_all / 32;
  const int e = e_all % 32;
  int sc, m;
  if (s < 4) {
    sc = b.scales[s] & 0x3f;
    m = b.scales[s + 4] & 0x3f;
  } else {
    sc = (b.scales[s + 4] & 0xf) | ((b.scales[s - 4] >> 6) << 4);
    m = (b.scales[s + 4] >> 4) | ((b.scales[s] >> 6) << 4);
  }
  const int byte = b.qs[32 * (s / 2) + e];
  const int q = (s % 2 == 0) ? (byte & 15) : (byte >> 4);
  const float d1 = fp16_to_fp32(b.d) * static_cast<float>(sc);
  const float m1 = fp16_to_fp32(b.dmin) * static_cast<float>(m);
  return d1 * static_cast<float>(q) - m1;
}

/// Q6_K element e: in half h = e/128, position r = e%128, quarter g = r/32, l = r%32.
/// Low 4 bits: ql byte 64h + l + 32(g%2), low nibble for g<2; high 2 bits: qh byte
/// 32h + l, bits 2g..2g+1. Scale: scales[8h + l/16 + 2g].
float ref_q6_k(const block_q6_k& b, int e) {
  const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
  const int lo_byte = b.ql[64 * h + l + 32 * (g % 2)];
  const int lo = g < 2 ? (lo_byte & 15) : (lo_byte >> 4);
  const int hi = bit(&b.qh[32 * h + l], 2 * g) | (bit(&b.qh[32 * h + l], 2 * g + 1) << 1);
  const int q = (lo | (hi << 4)) - 32;
  const int sc = b.scales[8 * h + l / 16 + 2 * g];
  return fp16_to_fp32(b.d) * static_cast<float>(sc) * static_cast<float>(q);
}

using test::random_block;

using test::random_scale;

TEST(dequantize, q4_0_matches_definition) {
  std::mt19937 rng(1);
  for (int t = 0; t < 2000; ++t) {
    auto b = random_block<block_q4_0>(rng);
    b.d = random_scale(rng);
    float y[32];
    cpu::dequantize_row(ggml_type::q4_0, &b, y, 32);
    for (int j = 0; j < 32; ++j) {
      ASSERT_EQ(y[j], ref_q4_0(b, j)) << j;
    }
  }
}

TEST(dequantize, q8_0_is_d_times_q) {
  std::mt19937 rng(2);
  for (int t = 0; t < 2000; ++t) {
    auto b = random_block<block_q8_0>(rng);
    b.d = random_scale(rng);
    float y[32];
    cpu::dequantize_row(ggml_type::q8_0, &b, y, 32);
    for (int j = 0; j < 32; ++j) {
      ASSERT_EQ(y[j], static_cast<float>(b.qs[j]) * fp16_to_fp32(b.d));
    }
  }
}

TEST(dequantize, q4_k_matches_definition) {
  std::mt19937 rng(3);
  for (int t = 0; t < 2000; ++t) {
    auto b = random_block<block_q4_k>(rng);
    b.d = random_scale(rng);
    b.dmin = random_scale(rng);
    float y[256];
    cpu::dequantize_row(ggml_type::q4_k, &b, y, 256);
    for (int j = 0; j < 256; ++j) {
      ASSERT_EQ(y[j], ref_q4_k(b, j)) << j;
    }
  }
}

TEST(dequantize, q6_k_matches_definition) {
  std::mt19937 rng(4);
  for (int t = 0; t < 2000; ++t) {
    auto b = random_block<block_q6_k>(rng);
    b.d = random_scale(rng);
    float y[256];
    cpu::dequantize_row(ggml_type::q6_k, &b, y, 256);
    for (int j = 0; j < 256; ++j) {
      ASSERT_EQ(y[j], ref_q6_k(b, j)) << j;
    }
  }
}

TEST(dequantize, f16_and_bf16_rows) {
  const float x[5] = {1.0f, -2.5f, 65504.0f, 1e-7f, 0.333333f};
  uint16_t h[5], bh[5];
  cpu::convert_row_f16(x, h, 5);
  cpu::convert_row_bf16(x, bh, 5);
  float y[5], z[5];
  cpu::dequantize_row(ggml_type::f16, h, y, 5);
  cpu::dequantize_row(ggml_type::bf16, bh, z, 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(y[i], fp16_to_fp32(fp32_to_fp16(x[i])));
    EXPECT_NEAR(z[i], x[i], std::fabs(x[i]) / 128.0f);
  }
}

TEST(quantize, q8_0_reference_round_trip) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(32 * 64);
  for (auto& v : x) {
    v = nd(rng);
  }
  std::fill(x.begin(), x.begin() + 32, 0.0f);  // an all-zero block has d = 0
  std::vector<block_q8_0> q(64);
  cpu::quantize_row_q8_0(x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  cpu::dequantize_row(ggml_type::q8_0, q.data(), y.data(), static_cast<int64_t>(y.size()));
  for (size_t ib = 0; ib < q.size(); ++ib) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) {
      amax = std::fmax(amax, std::fabs(x[ib * 32 + j]));
    }
    EXPECT_EQ(q[ib].d, fp32_to_fp16(amax / 127.0f));
    const float d = fp16_to_fp32(q[ib].d);
    for (int j = 0; j < 32; ++j) {
      EXPECT_LE(std::fabs(y[ib * 32 + j] - x[ib * 32 + j]), 0.5f * d + amax * 1e-3f);
    }
  }
}

}  // namespace
}  // namespace baton
