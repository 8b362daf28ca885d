// CUDA twins of kernels/cpu/dequantize: rows of F32, F16, BF16, Q8_0, Q4_0, Q4_K and
// Q6_K decoded on the device by the same per-block functions (kernels/blocks.hpp)
// that the CPU scalar reference calls.
#pragma once

#include "kernels/cuda/portability.cuh"

#include <cstdint>
#include <string>

#include "kernels/ggml_type.hpp"

namespace baton::cuda {

/// Whether a CUDA device can be used; `why` says why not.
bool device_available(std::string* why);

/// y[n] = decode(x[n]) on `stream`; x and y are device pointers, n a multiple of the
/// type's block size. Returns the launch's error (cudaErrorInvalidValue for a type
/// without a decoder).
cudaError_t dequantize_row(ggml_type type, const void* x, float* y, int64_t n,
                           cudaStream_t stream);

}  // namespace baton::cuda
