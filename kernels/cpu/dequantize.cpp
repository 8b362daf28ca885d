// Scalar reference conversions of dequantize.hpp, built on the per-block math of
// kernels/blocks.hpp that the CUDA kernels share.
#include "kernels/cpu/dequantize.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/blocks.hpp"

namespace baton::cpu {

namespace {

template <class Block, int N>
void dequantize_blocks(const void* x, float* y, int64_t n) {
  const auto* b = static_cast<const Block*>(x);
  for (int64_t i = 0; i < n / N; ++i) {
    Block blk;
    std::memcpy(&blk, b + i, sizeof blk);  // file data need not be aligned
    dequantize_block(blk, y + i * N);
  }
}

}  // namespace

bool can_dequantize(ggml_type type) { return traits(type).can_dequantize; }

void dequantize_row(ggml_type type, const void* x, float* y, int64_t n) {
  switch (type) {
    case ggml_type::f32:
      std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case ggml_type::f16: {
      const auto* h = static_cast<const uint8_t*>(x);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + 2 * i, 2);
        y[i] = fp16_to_fp32(v);
      }
      return;
    }
    case ggml_type::bf16: {
      const auto* h = static_cast<const uint8_t*>(x);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, h + 2 * i, 2);
        y[i] = bf16_to_fp32(v);
      }
      return;
    }
    case ggml_type::q4_0:
      return dequantize_blocks<block_q4_0, qk4_0>(x, y, n);
    case ggml_type::q8_0:
      return dequantize_blocks<block_q8_0, qk8_0>(x, y, n);
    case ggml_type::q4_k:
      return dequantize_blocks<block_q4_k, qk_k>(x, y, n);
    case ggml_type::q6_k:
      return dequantize_blocks<block_q6_k, qk_k>(x, y, n);
    default:
      std::abort();  // callers check can_dequantize first
  }
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  for (int64_t i = 0; i < n / qk8_0; ++i) {
    block_q8_0 b;
    quantize_block_q8_0(x + i * qk8_0, b);
    std::memcpy(out + i * sizeof(block_q8_0), &b, sizeof b);
  }
}

void convert_row_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = fp32_to_fp16(x[i]);
  }
}

void convert_row_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = fp32_to_bf16(x[i]);
  }
}

}  // namespace baton::cpu
