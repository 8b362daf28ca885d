// kernels/cuda against the CPU scalar reference: every decoder on random blocks must
// give bit-identical floats (both run kernels/blocks.hpp). Skips without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cuda/dequantize.cuh"

namespace baton {
namespace {

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << cudaGetErrorString(x)

TEST(cuda_dequantize, matches_cpu_reference_bit_for_bit) {
  std::string why;
  if (!cuda::device_available(&why)) {
    GTEST_SKIP() << why;
  }
  std::mt19937 rng(11);
  for (auto type : {ggml_type::f16, ggml_type::bf16, ggml_type::q8_0, ggml_type::q4_0,
                    ggml_type::q4_k, ggml_type::q6_k}) {
    const int64_t n = 256 * 37;
    const uint64_t bytes = row_bytes(type, n);
    std::vector<uint8_t> x(bytes);
    for (auto& b : x) {
      b = static_cast<uint8_t>(rng());
    }
    // f16 data: clear the exponent's top bit so values stay finite (NaN payloads differ)
    if (type == ggml_type::f16) {
      for (size_t i = 1; i < x.size(); i += 2) {
        x[i] &= 0xbf;
      }
    }
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    cpu::dequantize_row(type, x.data(), want.data(), n);
    void* dx = nullptr;
    float* dy = nullptr;
    CUDA_OK(cudaMalloc(&dx, bytes));
    CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&dy), n * sizeof(float)));
    CUDA_OK(cudaMemcpy(dx, x.data(), bytes, cudaMemcpyHostToDevice));
    CUDA_OK(cuda::dequantize_row(type, dx, dy, n, nullptr));
    CUDA_OK(cudaMemcpy(got.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaFree(dx));
    CUDA_OK(cudaFree(dy));
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(want[i])) {
        ASSERT_TRUE(std::isnan(got[i]));
        continue;
      }
      ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
          << traits(type).name << " element " << i << ": " << want[i] << " vs " << got[i];
    }
  }
}

}  // namespace
}  // namespace baton
