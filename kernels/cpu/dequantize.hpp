// Scalar reference conversions between ggml formats and float: dequantize a row of
// any format baton computes with, and the reference quantizers. These follow the
// formats' definitions element by element (compiled without FP contraction, so
// d1 × q − m1 is two roundings, as the definition says).
#pragma once

#include <cstdint>

#include "kernels/ggml_type.hpp"

namespace baton::cpu {

/// Whether dequantize_row handles `type`.
bool can_dequantize(ggml_type type);

/// y[n] = decode(x); n a multiple of the type's block size. Aborts on other types.
void dequantize_row(ggml_type type, const void* x, float* y, int64_t n);

/// y = Q8_0 blocks of x[n] (ggml's reference: d = amax/127, q = round(x/d)).
void quantize_row_q8_0(const float* x, void* y, int64_t n);

/// y[n] = f16 of x[n], round to nearest even.
void convert_row_f16(const float* x, uint16_t* y, int64_t n);

/// y[n] = bf16 of x[n], round to nearest even.
void convert_row_bf16(const float* x, uint16_t* y, int64_t n);

}  // namespace baton::cpu
