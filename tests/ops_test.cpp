// kernels/cpu/ops: the float operations' reference behaviour, and the AVX2 attention
// twin against the scalar reference on random paged K/V (f16 and f32), odd lengths.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <random>
#include <utility>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/ops.hpp"

namespace baton::cpu {
namespace {

/// F16C's float → f16 → float of v, as the AVX2 attention rounds its probabilities.
__attribute__((target("avx2,f16c"))) float f16c_round(float v) {
  const __m128i h = _mm_cvtps_ph(_mm_set_ss(v), _MM_FROUND_TO_NEAREST_INT);
  return _mm_cvtss_f32(_mm_cvtph_ps(h));
}

TEST(ops, f16c_rounds_as_fp32_to_fp16) {
  if (!__builtin_cpu_supports("f16c")) {
    GTEST_SKIP() << "this CPU has no F16C";
  }
  // every 97th bit pattern (both signs, every exponent: subnormal halves, ties,
  // overflow to inf), NaNs aside
  for (uint64_t b = 0; b <= 0xffffffffu; b += 97) {
    const float v = bits_float(static_cast<uint32_t>(b));
    if (std::isnan(v)) {
      continue;
    }
    const float want = fp16_to_fp32(fp32_to_fp16(v));
    ASSERT_EQ(float_bits(f16c_round(v)), float_bits(want)) << "bits " << std::hex << b;
  }
}

TEST(ops, rms_norm_normalizes_then_scales) {
  const float x[4] = {1.0f, -2.0f, 3.0f, -4.0f};
  const float w[4] = {1.0f, 1.0f, 2.0f, 0.5f};
  float y[4];
  rms_norm(x, w, y, 4, 0.0f);
  const float rms = std::sqrt((1.0f + 4.0f + 9.0f + 16.0f) / 4.0f);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(y[i], x[i] / rms * w[i]);
  }
}

TEST(ops, rope_rotates_pairs_and_keeps_their_length) {
  std::vector<float> cs(8);
  rope_cache(0, 8, 10000.0f, nullptr, cs.data());
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  rope_apply(x, 8, cs.data());
  EXPECT_EQ(x[0], 1.0f);  // position 0: identity
  EXPECT_EQ(x[7], 8.0f);
  rope_cache(5, 8, 10000.0f, nullptr, cs.data());
  float y[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  rope_apply(y, 8, cs.data());
  EXPECT_NEAR(y[0], std::cos(5.0f) * 1 - std::sin(5.0f) * 2, 1e-5);  // θ_0 = pos
  for (int i = 0; i < 8; i += 2) {
    const float before = x[i] * x[i] + x[i + 1] * x[i + 1];
    EXPECT_NEAR(y[i] * y[i] + y[i + 1] * y[i + 1], before, 1e-4f * before);
  }
  // frequency factors divide θ
  const float ff[4] = {2.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> cs2(8);
  rope_cache(6, 8, 10000.0f, ff, cs2.data());
  rope_cache(3, 8, 10000.0f, nullptr, cs.data());
  EXPECT_FLOAT_EQ(cs2[0], cs[0]);
}

TEST(ops, softmax_and_silu) {
  float x[3] = {1.0f, 2.0f, 3.0f};
  softmax(x, 3);
  EXPECT_NEAR(x[0] + x[1] + x[2], 1.0f, 1e-6f);
  EXPECT_NEAR(x[2] / x[1], std::exp(1.0f), 1e-5f);
  const float g[2] = {0.0f, 2.0f}, u[2] = {3.0f, 1.0f};
  float y[2];
  silu_mul(g, u, y, 2);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 2.0f / (1.0f + std::exp(-2.0f)), 1e-6f);
}

/// Units in the last place between a float and the exact value e (a double); an exact
/// zero must be met exactly (0 or infinity).
double ulps(float got, double e) {
  if (e == 0) {
    return got == 0 ? 0.0 : INFINITY;
  }
  const double ulp = std::max(std::ldexp(1.0, std::ilogb(static_cast<float>(e)) - 23),
                              std::ldexp(1.0, -149));  // a subnormal's ulp at least
  return std::fabs(static_cast<double>(got) - e) / ulp;
}

TEST(ops, exp_avx2_is_within_two_ulps_and_saturates) {
  if (!isa_supported(isa::avx2)) {
    GTEST_SKIP() << "this CPU has no AVX2";
  }
  std::vector<float> x;
  for (double v = -103.9; v < 88.72; v += 0.00097) {
    x.push_back(static_cast<float>(v));
  }
  x.insert(x.end(), {0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, -87.3f, -100.0f});
  std::vector<float> y(x.size());
  exp_avx2(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, ulps(y[i], e));
    ASSERT_LE(ulps(y[i], e), 2.0) << "e^" << x[i] << " = " << e << ", got " << y[i];
  }
  RecordProperty("worst_ulps", std::to_string(worst));
  const float special[] = {INFINITY, -INFINITY, NAN, 88.73f, 1000.0f, -104.0f, -1000.0f};
  float out[7];
  exp_avx2(special, out, 7);
  EXPECT_EQ(out[0], INFINITY);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], INFINITY);
  EXPECT_EQ(out[4], INFINITY);
  EXPECT_EQ(out[5], 0.0f);
  EXPECT_EQ(out[6], 0.0f);
}

TEST(ops, silu_mul_avx2_is_near_silu_mul_and_the_same_anywhere_in_a_row) {
  if (!isa_supported(isa::avx2)) {
    GTEST_SKIP() << "this CPU has no AVX2";
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-30.0f, 30.0f);
  const int64_t n = 1003;  // 125 vectors and a tail of 3
  std::vector<float> g(n), u(n), want(n), got(n);
  for (int64_t i = 0; i < n; ++i) {
    g[i] = d(rng);
    u[i] = d(rng);
  }
  g[0] = -200.0f;
  g[1] = 200.0f;
  g[2] = 0.0f;
  g[n - 1] = -95.0f;
  silu_mul(g.data(), u.data(), want.data(), n);
  silu_mul_avx2(g.data(), u.data(), got.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    // silu × up: the e^x error, then a division and a multiply
    EXPECT_LE(ulps(got[i], want[i]), 4.0) << "g " << g[i] << " u " << u[i];
  }
  // a row's tail and its middle: each element's bits whatever its place
  for (int64_t off : {1, 5, 8, 996}) {
    std::vector<float> part(static_cast<size_t>(n - off));
    silu_mul_avx2(g.data() + off, u.data() + off, part.data(), n - off);
    for (int64_t i = off; i < n; ++i) {
      ASSERT_EQ(float_bits(part[i - off]), float_bits(got[i])) << "offset " << off << " i " << i;
    }
  }
}

TEST(ops, silu_mul_avx512_gives_silu_mul_avx2_s_bits) {
  if (!isa_supported(isa::avx512)) {
    GTEST_SKIP() << "this CPU has no AVX-512";
  }
  // the 16-lane twin against the 8-lane one, element by element: random values over
  // exp's whole range, its clamps and specials, rows of every tail length (16 k + 0..15)
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> wide(-120.0f, 120.0f), narrow(-8.0f, 8.0f);
  const float specials[] = {0.0f, -0.0f, 88.72f, 88.73f, -103.97f, -103.98f, -87.3f,
                            1e-30f, -1e-30f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::denorm_min(), 3.4e38f, -3.4e38f};
  for (int64_t n : {1, 7, 15, 16, 17, 31, 33, 1000, 8192}) {
    std::vector<float> g(static_cast<size_t>(n)), u(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      g[static_cast<size_t>(i)] = i % 3 == 0 ? wide(rng) : narrow(rng);
      u[static_cast<size_t>(i)] = narrow(rng);
    }
    for (size_t s = 0; s < std::size(specials) && s < g.size(); ++s) {
      g[(s * 7) % g.size()] = specials[s];
    }
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n), -1.0f);
    silu_mul_avx2(g.data(), u.data(), want.data(), n);
    silu_mul_avx512(g.data(), u.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(float_bits(got[static_cast<size_t>(i)]), float_bits(want[static_cast<size_t>(i)]))
          << "n " << n << " i " << i << " g " << g[static_cast<size_t>(i)];
    }
  }
}

TEST(ops, kv_cursor_walks_the_rows_kv_row_addresses) {
  // three blocks of 5 positions, 3 KV heads of 8: f16 and f32 rows
  for (ggml_type type : {ggml_type::f16, ggml_type::f32}) {
    const int64_t bs = 5, n_head_kv = 3, d = 8;
    std::vector<std::vector<uint8_t>> blocks(3, std::vector<uint8_t>(bs * n_head_kv * d * 4));
    std::vector<const void*> table;
    for (const auto& b : blocks) {
      table.push_back(b.data());
    }
    const kv_view kv{table.data(), bs, n_head_kv, d, type};
    for (int64_t h = 0; h < n_head_kv; ++h) {
      kv_cursor rows(kv, h);
      for (int64_t p = 0; p < 3 * bs; ++p) {
        ASSERT_EQ(rows.next(), kv_row(kv, p, h))
            << traits(type).name << " head " << h << " position " << p;
      }
    }
  }
}

/// Random K and V of n_kv positions in blocks of 16, 2 KV heads of d, as `type` (f16 or
/// f32): what the attention kernels read from the paged cache.
struct paged_kv {
  static constexpr int64_t bs = 16, n_head_kv = 2;
  std::vector<std::vector<uint8_t>> kb, vb;
  std::vector<const void*> kp, vp;
  kv_view k{}, v{};  // into kp and vp: not copyable

  paged_kv(const paged_kv&) = delete;
  paged_kv& operator=(const paged_kv&) = delete;
  paged_kv(ggml_type type, int64_t n_kv, int64_t d, std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t n_blocks = (n_kv + bs - 1) / bs;
    const size_t elem = type == ggml_type::f16 ? 2 : 4;
    kb.resize(static_cast<size_t>(n_blocks));
    vb.resize(static_cast<size_t>(n_blocks));
    for (int64_t b = 0; b < n_blocks; ++b) {
      for (auto* buf : {&kb[static_cast<size_t>(b)], &vb[static_cast<size_t>(b)]}) {
        buf->resize(static_cast<size_t>(bs * n_head_kv * d) * elem);
        for (size_t i = 0; i < buf->size() / elem; ++i) {
          const float x = nd(rng);
          if (type == ggml_type::f16) {
            reinterpret_cast<uint16_t*>(buf->data())[i] = fp32_to_fp16(x);
          } else {
            reinterpret_cast<float*>(buf->data())[i] = x;
          }
        }
      }
      kp.push_back(kb[static_cast<size_t>(b)].data());
      vp.push_back(vb[static_cast<size_t>(b)].data());
    }
    k = {kp.data(), bs, n_head_kv, d, type};
    v = {vp.data(), bs, n_head_kv, d, type};
  }
};

TEST(ops, attention_twin_matches_the_reference) {
  if (!isa_supported(isa::avx2)) {
    GTEST_SKIP() << "this CPU has no AVX2";
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto type : {ggml_type::f16, ggml_type::f32}) {
    // heads of 64 and 128 (values summed in registers) and of 40 (any multiple of 8)
    for (auto [n_kv, d] : {std::pair<int64_t, int64_t>{1, 64}, {7, 64}, {16, 64}, {33, 64},
                           {130, 64}, {33, 128}, {130, 128}, {7, 40}, {33, 40}}) {
      const paged_kv kv(type, n_kv, d, rng);
      const kv_view& k = kv.k;
      const kv_view& v = kv.v;
      std::vector<float> q(d), scratch(n_kv), ref(d), got(d);
      for (auto& x : q) {
        x = nd(rng);
      }
      attention_head(q.data(), k, v, 1, n_kv, 0.125f, scratch.data(), ref.data());
      attention_head_avx2(q.data(), k, v, 1, n_kv, 0.125f, scratch.data(), got.data());
      double e = 0, n = 0;
      for (int64_t i = 0; i < d; ++i) {
        e += (got[i] - ref[i]) * (got[i] - ref[i]);
        n += ref[i] * ref[i];
      }
      // f16 probabilities may round differently after a reordered sum: ~1e-4 at worst
      EXPECT_LE(std::sqrt(e / n), type == ggml_type::f16 ? 1e-3 : 1e-5)
          << traits(type).name << " n_kv " << n_kv;
    }
  }
}

TEST(ops, attention_group_gives_each_head_attention_head_avx2_s_bits) {
  if (!isa_supported(isa::avx2)) {
    GTEST_SKIP() << "this CPU has no AVX2";
  }
  // groups of 1, 2, 3 (a head at a time), 4 and 8 query heads on KV head 1 of 2, f16 and
  // f32 caches, heads of 64 and 128 (and 40 and 272: a head at a time), odd key counts
  // across blocks of 16 (keys in pairs and a lone last one)
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto type : {ggml_type::f16, ggml_type::f32}) {
    for (auto [n_kv, d] : {std::pair<int64_t, int64_t>{1, 64}, {2, 64}, {17, 64}, {33, 64},
                           {130, 64}, {31, 128}, {7, 40}, {9, 272}}) {
      const paged_kv kv(type, n_kv, d, rng);
      const kv_view& k = kv.k;
      const kv_view& v = kv.v;
      for (int64_t n_q : {1, 2, 3, 4, 8}) {
        std::vector<float> q(n_q * d), scratch(n_q * n_kv), want(n_q * d), got(n_q * d, -1.0f);
        for (auto& x : q) {
          x = nd(rng) * 3.0f;
        }
        for (int64_t j = 0; j < n_q; ++j) {
          attention_head_avx2(q.data() + j * d, k, v, 1, n_kv, 0.125f, scratch.data(),
                              want.data() + j * d);
        }
        attention_group_avx2(q.data(), n_q, k, v, 1, n_kv, 0.125f, scratch.data(), got.data());
        for (int64_t i = 0; i < n_q * d; ++i) {
          ASSERT_EQ(float_bits(got[i]), float_bits(want[i]))
              << traits(type).name << " n_kv " << n_kv << " d " << d << " n_q " << n_q
              << " i " << i;
        }
      }
    }
  }
}

TEST(ops, attention_group_avx512_gives_attention_group_avx2_s_bits) {
  if (!isa_supported(isa::avx512)) {
    GTEST_SKIP() << "this CPU has no AVX-512";
  }
  // every key count mod 4 (keys four at a time) across blocks of 16, heads of 64 and 128
  // (64 dimensions of values a pass), 32 (32), 80 and 48 (16), 40 and 272 (a head at a
  // time in either), groups of 1 to 8, f16 and f32 caches; scores of both signs and large
  // enough that softmax's maximum matters
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto type : {ggml_type::f16, ggml_type::f32}) {
    for (auto [n_kv, d] : {std::pair<int64_t, int64_t>{1, 64}, {2, 64}, {3, 64}, {4, 64},
                           {5, 64}, {18, 64}, {35, 64}, {130, 64}, {31, 128}, {9, 32},
                           {33, 80}, {6, 48}, {7, 40}, {9, 272}}) {
      const paged_kv kv(type, n_kv, d, rng);
      for (int64_t n_q : {1, 2, 3, 4, 8}) {
        std::vector<float> q(n_q * d), scratch(n_q * n_kv), want(n_q * d), got(n_q * d, -1.0f);
        for (auto& x : q) {
          x = nd(rng) * 3.0f;
        }
        attention_group_avx2(q.data(), n_q, kv.k, kv.v, 1, n_kv, 0.125f, scratch.data(),
                             want.data());
        attention_group_avx512(q.data(), n_q, kv.k, kv.v, 1, n_kv, 0.125f, scratch.data(),
                               got.data());
        for (int64_t i = 0; i < n_q * d; ++i) {
          ASSERT_EQ(float_bits(got[i]), float_bits(want[i]))
              << traits(type).name << " n_kv " << n_kv << " d " << d << " n_q " << n_q
              << " i " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace baton::cpu
