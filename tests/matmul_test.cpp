// kernels/cpu/matmul: every SIMD variant against the scalar reference, on random rows of
// odd sizes. Activation conversion and per-block integer dot products must be bit-exact;
// whole dot products may differ only by float summation order (bounded by normalized
// mean squared error, as llama.cpp's test-backend-ops bounds backends); and within one
// isa an element must not depend on n_tokens, the row range or the tile it lands in.
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
#include "tests/random_weights.hpp"

namespace baton {

namespace cpu {
/// GoogleTest prints a failing case's isa by name.
void PrintTo(isa v, std::ostream* os) { *os << isa_name(v); }
}  // namespace cpu

namespace {

using cpu::isa;

const ggml_type k_quant_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k,
                                   ggml_type::q6_k};
const ggml_type k_all_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k,
                                 ggml_type::f16,  ggml_type::bf16, ggml_type::f32};

std::string type_name(ggml_type t) { return std::string(traits(t).name); }

using test::random_floats;
using test::random_weights;

/// n_tokens activation rows converted by the scalar reference.
std::vector<uint8_t> random_activations(std::mt19937& rng, ggml_type weight, int64_t n_tokens,
                                        int64_t n_in) {
  const size_t xs = cpu::activation_row_bytes(weight, n_in);
  std::vector<uint8_t> xq(xs * static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto x = random_floats(rng, n_in);
    cpu::quantize_activation_row(isa::scalar, weight, x.data(), xq.data() + t * xs, n_in);
  }
  return xq;
}

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

/// The AVX-512 Q4_0/Q8_0/Q4_K tile shapes a test runs under: both, whatever this core would
/// pick (a shape must change no bit); other isas have one.
std::vector<cpu::avx512_tiles> tile_shapes(isa v) {
  if (v != isa::avx512) {
    return {cpu::avx512_tiles::automatic};
  }
  return {cpu::avx512_tiles::wide, cpu::avx512_tiles::split};
}

/// Forces a tile shape for a scope, then gives the choice back to the core.
struct forced_tiles {
  explicit forced_tiles(cpu::avx512_tiles t) { cpu::force_avx512_tiles(t); }
  ~forced_tiles() { cpu::force_avx512_tiles(cpu::avx512_tiles::automatic); }
  forced_tiles(const forced_tiles&) = delete;
  forced_tiles& operator=(const forced_tiles&) = delete;
};

const char* tile_name(cpu::avx512_tiles t) {
  switch (t) {
    case cpu::avx512_tiles::wide:
      return "tiles 1 x 16";
    case cpu::avx512_tiles::split:
      return "tiles 2 x 6";
    default:
      return "tiles of this core";
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

class simd : public ::testing::TestWithParam<isa> {
 protected:
  void SetUp() override {
    if (!cpu::isa_supported(GetParam())) {
      GTEST_SKIP() << "this CPU cannot run the " << cpu::isa_name(GetParam()) << " kernels";
    }
  }
};

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

/// (type, n_in) cases with odd block counts and, for float types, odd lengths.
std::vector<std::pair<ggml_type, int64_t>> matmul_cases() {
  // Q4_0 past 2048 runs several tokens in slices of n_in (k_pass), the last one partial
  return {{ggml_type::q4_0, 32 * 7},  {ggml_type::q4_0, 2048},    {ggml_type::q4_0, 4096 + 32 * 3},
          {ggml_type::q8_0, 32 * 7},
          {ggml_type::q8_0, 2048},    {ggml_type::q4_k, 256 * 3}, {ggml_type::q4_k, 2048},
          {ggml_type::q6_k, 256 * 3}, {ggml_type::q6_k, 2048},    {ggml_type::f16, 229},
          {ggml_type::f16, 2048},     {ggml_type::bf16, 229},     {ggml_type::bf16, 2048},
          {ggml_type::f32, 229},      {ggml_type::f32, 1024}};
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

TEST_P(simd, elements_do_not_depend_on_tokens_rows_or_tiles) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    std::mt19937 rng(24);
    for (auto [type, n_in] : matmul_cases()) {
      const int64_t n_out = 37, n_tokens = 17, ldy = n_out + 3;
      const auto w = random_weights(rng, type, n_out, n_in);
      const auto xq = random_activations(rng, type, n_tokens, n_in);
      const size_t xs = cpu::activation_row_bytes(type, n_in);
      const size_t ws = row_bytes(type, static_cast<uint64_t>(n_in));
      const std::string what = type_name(type) + " n_in " + std::to_string(n_in);

      std::vector<float> all(ldy * n_tokens, NAN);
      cpu::matmul(GetParam(), type, w.data(), xq.data(), all.data(), n_in, n_tokens, ldy, 0, n_out);

      // rows split at random points, a call per range
      std::vector<float> split(ldy * n_tokens, NAN);
      for (int64_t r0 = 0; r0 < n_out;) {
        const int64_t r1 = std::min<int64_t>(n_out, r0 + 1 + rng() % 9);
        cpu::matmul(GetParam(), type, w.data(), xq.data(), split.data(), n_in, n_tokens, ldy, r0, r1);
        r0 = r1;
      }
      // token windows (first, count), so that every tile width up to 6 gets used
      const std::pair<int64_t, int64_t> windows[] = {{2, 5}, {9, 3}, {13, 2}, {0, 6}, {11, 4}};
      std::vector<std::vector<float>> window_y;
      for (auto [first, count] : windows) {
        window_y.emplace_back(ldy * count, NAN);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + first * xs, window_y.back().data(), n_in,
                    count, ldy, 0, n_out);
      }

      for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<float> one(n_out, NAN);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + t * xs, one.data(), n_in, 1, n_out, 0,
                    n_out);
        for (int64_t r = 0; r < n_out; ++r) {
          const float e = all[t * ldy + r];
          const float dot =
              cpu::vec_dot(GetParam(), type, w.data() + r * ws, xq.data() + t * xs, n_in);
          ASSERT_EQ(float_bits(e), float_bits(split[t * ldy + r]))
              << what << " t " << t << " r " << r;
          ASSERT_EQ(float_bits(e), float_bits(one[r])) << what << " t " << t << " r " << r;
          ASSERT_EQ(float_bits(e), float_bits(dot)) << what << " t " << t << " r " << r;
          for (size_t i = 0; i < std::size(windows); ++i) {
            const auto [first, count] = windows[i];
            if (t >= first && t < first + count) {
              ASSERT_EQ(float_bits(e), float_bits(window_y[i][(t - first) * ldy + r]))
                  << what << " t " << t << " window " << i;
            }
          }
        }
      }
      // nothing outside [0, n_out) of each ldy row is written
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = n_out; r < ldy; ++r) {
          ASSERT_TRUE(std::isnan(all[t * ldy + r])) << what;
        }
      }
    }
  }
}

TEST_P(simd, many_tokens_use_row_blocks_without_changing_elements) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    // enough tokens and rows that the driver blocks rows for L2 and, for AVX-512 Q4_0 and
    // Q8_0, runs n_in in slices (more than one token tile; 87 blocks: a partial last group
    // of 16); elements as alone
    std::mt19937 rng(25);
    const std::pair<ggml_type, int64_t> cases[] = {{ggml_type::q4_0, 4096},
                                                   {ggml_type::q4_0, 32 * 87},
                                                   {ggml_type::q8_0, 4096},
                                                   {ggml_type::q8_0, 32 * 87},
                                                   {ggml_type::q4_k, 4096},
                                                   {ggml_type::q4_k, 256 * 9},
                                                   {ggml_type::f16, 4096}};
    for (auto [type, n_in] : cases) {
      const int64_t n_out = 301, n_tokens = 19;
      const auto w = random_weights(rng, type, n_out, n_in);
      const auto xq = random_activations(rng, type, n_tokens, n_in);
      const size_t xs = cpu::activation_row_bytes(type, n_in);
      std::vector<float> all(n_out * n_tokens);
      cpu::matmul(GetParam(), type, w.data(), xq.data(), all.data(), n_in, n_tokens, n_out, 0, n_out);
      if (cpu::has_packed_layout(GetParam(), type)) {
        // several row blocks of packed rows (Q4_K: scales made once per block), rows from 5
        std::vector<uint8_t> packed(w.size());
        cpu::pack_rows(GetParam(), type, w.data(), packed.data(), n_in, n_out);
        std::vector<float> got(n_out * n_tokens, NAN);
        cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in, n_tokens, n_out,
                    5, n_out, cpu::weight_layout::packed);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r = 5; r < n_out; ++r) {
            ASSERT_EQ(float_bits(all[t * n_out + r]), float_bits(got[t * n_out + r]))
                << type_name(type) << " packed, t " << t << " r " << r;
          }
        }
      }
      for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<float> one(n_out);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + t * xs, one.data(), n_in, 1, n_out, 0,
                    n_out);
        for (int64_t r = 0; r < n_out; ++r) {
          ASSERT_EQ(float_bits(all[t * n_out + r]), float_bits(one[r])) << type_name(type);
        }
      }
    }
  }
}

TEST_P(simd, packed_weights_give_the_same_bits_as_ggml_s_layout) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    // pack_rows rearranges a row's bits; every element, any tile, any token count, the same
    // bits
    std::mt19937 rng(26);
    int n_packed = 0;
    for (ggml_type type : k_all_types) {
      if (!cpu::has_packed_layout(GetParam(), type)) {
        continue;
      }
      ++n_packed;
      // no whole group of 16 blocks (Q4_K: of two), one, 4 + a partial one, 5 + 7 blocks,
      // FFN down's; Q4_K: one lone block, a group and one, nine
      for (int64_t n_in :
           {32 * 7, 512, 2048, 4096 + 32 * 3, 32 * 87, 8192, 256, 256 * 3, 256 * 9}) {
        if (n_in % traits(type).block_size != 0) {
          continue;
        }
        const int64_t n_out = 41;
        const auto w = random_weights(rng, type, n_out, n_in);
        std::vector<uint8_t> packed(w.size());
        cpu::pack_rows(GetParam(), type, w.data(), packed.data(), n_in, n_out);
        if (n_in >= 512) {
          EXPECT_NE(0, std::memcmp(packed.data(), w.data(), w.size())) << "nothing moved";
        }
        for (int64_t n_tokens : {1, 3, 16, 19}) {
          const auto xq = random_activations(rng, type, n_tokens, n_in);
          std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens);
          cpu::matmul(GetParam(), type, w.data(), xq.data(), want.data(), n_in, n_tokens, n_out, 0,
                      n_out);
          // in two row ranges, as two threads take them
          cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in, n_tokens, n_out,
                      0, 16, cpu::weight_layout::packed);
          cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in, n_tokens,
                      n_out, 16, n_out, cpu::weight_layout::packed);
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                << type_name(type) << " n_in " << n_in << " n_tokens " << n_tokens << " element " << i;
          }
        }
      }
    }
    if (n_packed == 0) {
      GTEST_SKIP() << cpu::isa_name(GetParam()) << " has no packed layout";
    }
  }
}

TEST_P(simd, rows_prepared_once_give_the_same_bits) {
  // threads sharing a matmul prepare its activation rows once (prepare_row) and each
  // takes its rows from them: the same bits as a matmul that prepares them itself
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    std::mt19937 rng(27);
    int n_prepared = 0;
    for (ggml_type type : k_all_types) {
      for (int64_t n_in : {256 * 3, 2048, 4096 + 256}) {
        const int64_t n_out = 37;
        const auto w = random_weights(rng, type, n_out, n_in);
        for (int64_t n_tokens : {1, 2, 7, 19}) {
          const auto xq = random_activations(rng, type, n_tokens, n_in);
          const size_t xs = cpu::activation_row_bytes(type, n_in);
          const size_t pb = cpu::prepared_row_bytes(GetParam(), type, n_in, n_tokens);
          ASSERT_EQ(0u, pb % 64) << type_name(type);
          n_prepared += pb > 0 ? 1 : 0;
          // 64-byte aligned rows, filled with a pattern that no kernel may read past
          std::vector<uint8_t> buf(pb * static_cast<size_t>(n_tokens) + 64, 0xa5);
          uint8_t* prepared = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
          for (int64_t t = 0; t < n_tokens; ++t) {
            cpu::prepare_row(GetParam(), type, xq.data() + t * xs, prepared + t * pb, n_in,
                             n_tokens);
          }
          std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens, NAN);
          cpu::matmul(GetParam(), type, w.data(), xq.data(), want.data(), n_in, n_tokens, n_out, 0,
                      n_out);
          for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 16}, {16, 32}, {32, n_out}}) {
            cpu::matmul(GetParam(), type, w.data(), xq.data(), got.data(), n_in, n_tokens, n_out,
                        r0, r1, cpu::weight_layout::ggml, pb > 0 ? prepared : nullptr);
          }
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                << type_name(type) << " n_in " << n_in << " n_tokens " << n_tokens << " element "
                << i;
          }
        }
      }
    }
    EXPECT_GT(n_prepared, 0) << "no kernel of " << cpu::isa_name(GetParam()) << " prepares rows";
  }
}

INSTANTIATE_TEST_SUITE_P(isa, simd, ::testing::Values(isa::avx2, isa::avx512),
                         [](const ::testing::TestParamInfo<isa>& i) {
                           return std::string(cpu::isa_name(i.param));
                         });

}  // namespace
}  // namespace baton
