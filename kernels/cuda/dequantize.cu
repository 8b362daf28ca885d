// dequantize.cuh: one thread per block of the format; the block math is shared with
// the CPU reference (kernels/blocks.hpp, compiled here as __host__ __device__).
#include "kernels/blocks.hpp"
#include "kernels/cuda/dequantize.cuh"

namespace baton::cuda {

namespace {

template <class Block, int N>
__global__ void dequantize_blocks(const uint8_t* x, float* y, int64_t n_blocks) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_blocks) {
    return;
  }
  Block b;
  memcpy(&b, x + i * sizeof(Block), sizeof(Block));  // file data need not be aligned
  dequantize_block(b, y + i * N);
}

__global__ void convert_f16(const uint16_t* x, float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    y[i] = fp16_to_fp32(x[i]);
  }
}

__global__ void convert_bf16(const uint16_t* x, float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    y[i] = bf16_to_fp32(x[i]);
  }
}

constexpr int threads = 256;

unsigned grid_for(int64_t n) { return static_cast<unsigned>((n + threads - 1) / threads); }

template <class Block, int N>
cudaError_t launch_blocks(const void* x, float* y, int64_t n, cudaStream_t stream) {
  const int64_t n_blocks = n / N;
  if (n_blocks == 0) {
    return cudaSuccess;
  }
  BATON_LAUNCH(grid_for(n_blocks), threads, 0, stream, dequantize_blocks<Block, N>)(
      static_cast<const uint8_t*>(x), y, n_blocks);
  return cudaGetLastError();
}

}  // namespace

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) {
      *why = std::string("no CUDA device: ") + cudaGetErrorString(e);
    }
    return false;
  }
  if (n == 0) {
    if (why) {
      *why = "no CUDA device found";
    }
    return false;
  }
  return true;
}

cudaError_t dequantize_row(ggml_type type, const void* x, float* y, int64_t n,
                           cudaStream_t stream) {
  switch (type) {
    case ggml_type::f32:
      return cudaMemcpyAsync(y, x, static_cast<size_t>(n) * sizeof(float),
                             cudaMemcpyDeviceToDevice, stream);
    case ggml_type::f16:
      if (n > 0) {
        BATON_LAUNCH(grid_for(n), threads, 0, stream, convert_f16)(
            static_cast<const uint16_t*>(x), y, n);
      }
      return cudaGetLastError();
    case ggml_type::bf16:
      if (n > 0) {
        BATON_LAUNCH(grid_for(n), threads, 0, stream, convert_bf16)(
            static_cast<const uint16_t*>(x), y, n);
      }
      return cudaGetLastError();
    case ggml_type::q4_0:
      return launch_blocks<block_q4_0, qk4_0>(x, y, n, stream);
    case ggml_type::q8_0:
      return launch_blocks<block_q8_0, qk8_0>(x, y, n, stream);
    case ggml_type::q4_k:
      return launch_blocks<block_q4_k, qk_k>(x, y, n, stream);
    case ggml_type::q6_k:
      return launch_blocks<block_q6_k, qk_k>(x, y, n, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace baton::cuda
