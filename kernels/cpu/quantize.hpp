// Reference quantizers from float rows to the block formats of kernels/blocks.hpp,
// written to give the bytes llama-quantize writes without an importance matrix:
// ggml's quantize_row_q4_0_ref, quantize_row_q4_K_ref (scale and min per 32-weight
// sub-block fitted by a weighted least-squares search) and quantize_row_q6_K_ref
// (per-16 scales by an rmse search). Q8_0 lives in dequantize.hpp. Compiled without
// FP contraction and in ggml's exact operation order, so every rounding is ggml's.
//
// The K-quants' reference changed between llama.cpp versions: the one node-llama-cpp
// 3.21.1 ships rounds every weight again against the 6- or 8-bit coded sub-block
// scale; c392e509 (the build that made ../shared's models) keeps the levels the scale
// search fitted. Both are here, the newer the default; tests/quantize_test.cpp checks
// each against the library that has it.
#pragma once

#include <cstdint>

#include "kernels/ggml_type.hpp"

namespace baton::cpu {

/// y = Q4_0 blocks of x[n]: d = max / −8 (max the element of largest magnitude),
/// q = min(15, trunc(x/d + 8.5)). n a multiple of 32.
void quantize_row_q4_0(const float* x, void* y, int64_t n);

/// How Q4_K and Q6_K pick each weight's level once the sub-block scales are coded.
enum class k_levels {
  keep_fitted,  ///< the levels found with the uncoded scale (llama.cpp c392e509)
  requantize,   ///< round(x / coded scale) again (ggml before it; node-llama-cpp 3.21.1)
};

/// y = Q4_K blocks of x[n]; n a multiple of 256.
void quantize_row_q4_k(const float* x, void* y, int64_t n,
                       k_levels levels = k_levels::keep_fitted);

/// y = Q6_K blocks of x[n]; n a multiple of 256.
void quantize_row_q6_k(const float* x, void* y, int64_t n,
                       k_levels levels = k_levels::keep_fitted);

/// Whether quantize_row can write `type`.
bool can_quantize(ggml_type type);

/// y = x[n] in `type`: f32 copied, f16/bf16 rounded to nearest even, the quantized
/// types by their reference quantizer. n a multiple of the block size; aborts on a
/// type can_quantize refuses.
void quantize_row(ggml_type type, const float* x, void* y, int64_t n);

/// Whether a row of `type` (n elements) decodes to finite numbers only: its f16
/// scales, or its values for f32/f16/bf16 (ggml_validate_row_data's check).
bool row_is_finite(ggml_type type, const void* y, int64_t n);

}  // namespace baton::cpu
