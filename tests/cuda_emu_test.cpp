// The CPU emulation of CUDA (kernels/cuda/emu) itself: that __syncthreads is a real
// barrier across a block's threads, that warp shuffles exchange in lockstep, that 2-D
// grids and blocks get their indices, that launch-configuration errors come back from
// cudaGetLastError as on a device, and that device memory is counted. Built only into
// test_cuda_emu_kernels (label gpu-emu); the kernel tests that share that binary trust
// these.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/portability.cuh"

namespace {

constexpr int n_rev = 256;

/// out[blockIdx.x × n_rev + i] = in[… + n_rev − 1 − i], through shared memory: a thread
/// reads what another wrote, so without a real barrier it reads stale values.
__global__ void reverse_block(const int* in, int* out) {
  __shared__ __align__(16) int buf[n_rev];
  const int base = static_cast<int>(blockIdx.x) * n_rev;
  const int i = static_cast<int>(threadIdx.x + blockDim.x * threadIdx.y);
  buf[i] = in[base + i];
  __syncthreads();
  const int mine = buf[n_rev - 1 - i];
  __syncthreads();
  buf[i] = mine + 1;  // overwrite: a thread still reading the first values would see these
  __syncthreads();
  out[base + i] = buf[i] - 1;
}

/// Each lane's out = Σ of the warp's values by an xor butterfly in double.
__global__ void warp_sum_double(const double* in, double* out) {
  const int i = static_cast<int>(threadIdx.x);
  double v = in[i];
  for (int o = 16; o > 0; o >>= 1) {
    v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  out[i] = v;
}

__global__ void write_indices(int* out) {
  const int b = static_cast<int>(blockIdx.x + gridDim.x * blockIdx.y);
  const int t = static_cast<int>(threadIdx.x + blockDim.x * threadIdx.y);
  out[b * static_cast<int>(blockDim.x * blockDim.y) + t] = b * 1000 + t;
}

TEST(cuda_emu, syncthreads_is_a_barrier_in_1d_and_2d_blocks) {
  const int n_blocks = 3;
  std::vector<int> in(n_blocks * n_rev);
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<int>(i * 7 + 3);
  }
  int* d_in = nullptr;
  int* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_in), in.size() * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_out), in.size() * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(int), cudaMemcpyHostToDevice),
            cudaSuccess);
  for (const dim3 block : {dim3(n_rev), dim3(32, n_rev / 32)}) {
    ASSERT_EQ(cudaMemset(d_out, 0, in.size() * sizeof(int)), cudaSuccess);
    BATON_LAUNCH(n_blocks, block, 0, nullptr, reverse_block)(d_in, d_out);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    std::vector<int> out(in.size());
    ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(int), cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (int b = 0; b < n_blocks; ++b) {
      for (int i = 0; i < n_rev; ++i) {
        ASSERT_EQ(out[b * n_rev + i], in[b * n_rev + n_rev - 1 - i]) << "block " << b << " i " << i;
      }
    }
  }
  cudaFree(d_in);
  cudaFree(d_out);
}

TEST(cuda_emu, shuffles_exchange_in_lockstep) {
  std::vector<double> in(64);
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<double>(i) + 0.25;
  }
  double* d_in = nullptr;
  double* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_in), in.size() * sizeof(double)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_out), in.size() * sizeof(double)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_in, in.data(), in.size() * sizeof(double), cudaMemcpyHostToDevice),
            cudaSuccess);
  BATON_LAUNCH(1, 64, 0, nullptr, warp_sum_double)(d_in, d_out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<double> out(in.size());
  ASSERT_EQ(cudaMemcpy(out.data(), d_out, out.size() * sizeof(double), cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (int w = 0; w < 2; ++w) {
    double want = 0.0;
    for (int l = 0; l < 32; ++l) {
      want += in[static_cast<size_t>(w * 32 + l)];
    }
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(out[static_cast<size_t>(w * 32 + l)], want) << "warp " << w << " lane " << l;
    }
  }
  cudaFree(d_in);
  cudaFree(d_out);
}

TEST(cuda_emu, two_d_grids_and_blocks_get_their_indices) {
  const dim3 grid(3, 2);
  const dim3 block(8, 4);
  const int n = 6 * 32;
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(int)), cudaSuccess);
  BATON_LAUNCH(grid, block, 0, nullptr, write_indices)(d);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> out(n);
  ASSERT_EQ(cudaMemcpy(out.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < 6; ++b) {
    for (int t = 0; t < 32; ++t) {
      EXPECT_EQ(out[b * 32 + t], b * 1000 + t);
    }
  }
  cudaFree(d);
}

TEST(cuda_emu, bad_launch_configurations_are_errors_cleared_by_get_last_error) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d, 0, sizeof(int)), cudaSuccess);
  BATON_LAUNCH(1, 1025, 0, nullptr, write_indices)(d);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  BATON_LAUNCH(0, 32, 0, nullptr, write_indices)(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  BATON_LAUNCH(dim3(1, 65536), 32, 0, nullptr, write_indices)(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  int v = -1;
  ASSERT_EQ(cudaMemcpy(&v, d, sizeof v, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(v, 0) << "a rejected launch ran";
  cudaFree(d);
}

TEST(cuda_emu, one_device_whose_memory_is_counted) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 1);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_EQ(std::string(prop.name), "baton CUDA emulator");
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  size_t free0 = 0;
  size_t total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  EXPECT_EQ(total, prop.totalGlobalMem);
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 1 << 20), cudaSuccess);
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, size_t{1} << 20);
  void* too_big = nullptr;
  EXPECT_EQ(cudaMalloc(&too_big, total), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);  // not a live allocation any more
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
}

}  // namespace
