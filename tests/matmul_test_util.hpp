// What the CPU matmul tests share (matmul_test.cpp: each isa against the scalar
// reference; matmul_invariance_test.cpp: an element's bits within one isa): random
// activations, the AVX-512 tile shapes a test runs under, the (type, n_in) cases, and the
// `simd` suite (one per SIMD isa, skipped where this CPU cannot run it).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/ggml_type.hpp"
#include "tests/random_weights.hpp"

namespace baton {

namespace cpu {
/// GoogleTest prints a failing case's isa by name.
inline void PrintTo(isa v, std::ostream* os) { *os << isa_name(v); }
}  // namespace cpu

namespace test {

using cpu::isa;

inline const ggml_type k_all_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k,
                                        ggml_type::q6_k, ggml_type::f16,  ggml_type::bf16,
                                        ggml_type::f32};

inline std::string type_name(ggml_type t) { return std::string(traits(t).name); }

/// n_tokens activation rows converted by the scalar reference.
inline std::vector<uint8_t> random_activations(std::mt19937& rng, ggml_type weight,
                                               int64_t n_tokens, int64_t n_in) {
  const size_t xs = cpu::activation_row_bytes(weight, n_in);
  std::vector<uint8_t> xq(xs * static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto x = random_floats(rng, n_in);
    cpu::quantize_activation_row(isa::scalar, weight, x.data(), xq.data() + t * xs, n_in);
  }
  return xq;
}

/// The AVX-512 Q4_0/Q8_0/Q4_K tile shapes a test runs under: both, whatever this core would
/// pick (a shape must change no bit); other isas have one.
inline std::vector<cpu::avx512_tiles> tile_shapes(isa v) {
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

inline const char* tile_name(cpu::avx512_tiles t) {
  switch (t) {
    case cpu::avx512_tiles::wide:
      return "tiles 1 x 16";
    case cpu::avx512_tiles::split:
      return "tiles 2 x 6";
    default:
      return "tiles of this core";
  }
}

/// (type, n_in) cases with odd block counts and, for float types, odd lengths.
inline std::vector<std::pair<ggml_type, int64_t>> matmul_cases() {
  // Q4_0 past 2048 runs several tokens in slices of n_in (k_pass), the last one partial
  return {{ggml_type::q4_0, 32 * 7},  {ggml_type::q4_0, 2048},    {ggml_type::q4_0, 4096 + 32 * 3},
          {ggml_type::q8_0, 32 * 7},
          {ggml_type::q8_0, 2048},    {ggml_type::q4_k, 256 * 3}, {ggml_type::q4_k, 2048},
          {ggml_type::q6_k, 256 * 3}, {ggml_type::q6_k, 2048},    {ggml_type::f16, 229},
          {ggml_type::f16, 2048},     {ggml_type::bf16, 229},     {ggml_type::bf16, 2048},
          {ggml_type::f32, 229},      {ggml_type::f32, 1024}};
}

/// One SIMD isa's run of a test, skipped where this CPU cannot run it (instantiated for
/// avx2 and avx512 in matmul_test.cpp).
class simd : public ::testing::TestWithParam<isa> {
 protected:
  void SetUp() override {
    if (!cpu::isa_supported(GetParam())) {
      GTEST_SKIP() << "this CPU cannot run the " << cpu::isa_name(GetParam()) << " kernels";
    }
  }
};

}  // namespace test
}  // namespace baton
