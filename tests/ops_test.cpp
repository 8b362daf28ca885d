// kernels/cpu/ops: the float operations' reference behaviour, and the AVX2 attention
// twin against the scalar reference on random paged K/V (f16 and f32), odd lengths.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <random>
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

TEST(ops, attention_twin_matches_the_reference) {
  if (!isa_supported(isa::avx2)) {
    GTEST_SKIP() << "this CPU has no AVX2";
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto type : {ggml_type::f16, ggml_type::f32}) {
    for (int64_t n_kv : {1, 7, 16, 33, 130}) {
      const int64_t bs = 16, n_head_kv = 2, d = 64;
      const int64_t n_blocks = (n_kv + bs - 1) / bs;
      const size_t elem = type == ggml_type::f16 ? 2 : 4;
      std::vector<std::vector<uint8_t>> kb(n_blocks), vb(n_blocks);
      std::vector<const void*> kp, vp;
      for (int64_t b = 0; b < n_blocks; ++b) {
        for (auto* buf : {&kb[b], &vb[b]}) {
          buf->resize(bs * n_head_kv * d * elem);
          for (size_t i = 0; i < buf->size() / elem; ++i) {
            const float v = nd(rng);
            if (type == ggml_type::f16) {
              reinterpret_cast<uint16_t*>(buf->data())[i] = fp32_to_fp16(v);
            } else {
              reinterpret_cast<float*>(buf->data())[i] = v;
            }
          }
        }
        kp.push_back(kb[b].data());
        vp.push_back(vb[b].data());
      }
      const kv_view k{kp.data(), bs, n_head_kv, d, type};
      const kv_view v{vp.data(), bs, n_head_kv, d, type};
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

}  // namespace
}  // namespace baton::cpu
