// Random inputs of the kernel tests (CPU and CUDA): activations with outliers, and weight
// rows of any type baton multiplies — random bytes with sane block scales for the
// quantized types, random floats for the float ones. Needs only kernels/.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/ggml_type.hpp"

namespace baton::test {

/// A block of random bytes (any value of every field).
template <class Block>
Block random_block(std::mt19937& rng) {
  Block b;
  auto* p = reinterpret_cast<uint8_t*>(&b);
  for (size_t i = 0; i < sizeof b; ++i) {
    p[i] = static_cast<uint8_t>(rng());
  }
  return b;
}

/// A random finite, moderate f16 value for a block scale.
inline uint16_t random_scale(std::mt19937& rng) {
  return fp32_to_fp16(
      std::ldexp(static_cast<float>(rng() % 1000 + 1) / 1000.0f, -static_cast<int>(rng() % 12)));
}

/// Unit normal values with an outlier (×30) now and then, as activations have.
inline std::vector<float> random_floats(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    v = nd(rng);
    if (rng() % 97 == 0) {
      v *= 30.0f;
    }
  }
  return x;
}

/// n_out rows of n_in random weights of `type`, row_bytes(type, n_in) apart.
inline std::vector<uint8_t> random_weights(std::mt19937& rng, ggml_type type, int64_t n_out,
                                           int64_t n_in) {
  const size_t rb = row_bytes(type, static_cast<uint64_t>(n_in));
  std::vector<uint8_t> w(rb * static_cast<size_t>(n_out));
  if (!traits(type).quantized) {
    const auto x = random_floats(rng, n_in * n_out);
    for (size_t i = 0; i < x.size(); ++i) {
      if (type == ggml_type::f32) {
        std::memcpy(w.data() + 4 * i, &x[i], 4);
      } else {
        const uint16_t h = type == ggml_type::f16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
        std::memcpy(w.data() + 2 * i, &h, 2);
      }
    }
    return w;
  }
  for (auto& b : w) {
    b = static_cast<uint8_t>(rng());
  }
  const size_t bs = traits(type).type_size;
  for (size_t off = 0; off < w.size(); off += bs) {
    uint8_t* b = w.data() + off;
    auto set = [&](size_t at) {
      const uint16_t s = random_scale(rng);
      std::memcpy(b + at, &s, 2);
    };
    switch (type) {
      case ggml_type::q4_0:
        set(offsetof(block_q4_0, d));
        break;
      case ggml_type::q8_0:
        set(offsetof(block_q8_0, d));
        break;
      case ggml_type::q4_k:
        set(offsetof(block_q4_k, d));
        set(offsetof(block_q4_k, dmin));
        break;
      case ggml_type::q6_k:
        set(offsetof(block_q6_k, d));
        break;
      default:
        break;
    }
  }
  return w;
}

}  // namespace baton::test
