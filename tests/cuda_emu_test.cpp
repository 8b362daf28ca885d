// The CPU emulation of CUDA (kernels/cuda/emu) itself: that __syncthreads is a real
// barrier across a block's threads, that warp shuffles exchange in lockstep, that 2-D
// grids and blocks get their indices, that launch-configuration errors come back from
// cudaGetLastError as on a device, that device memory is counted, and that the shuffle
// mode (BATON_CUDA_EMU_SHUFFLE) really changes the order blocks and threads run in. Built only into
// test_cuda_emu_kernels (label gpu-emu); the kernel tests that share that binary trust
// these.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
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

/// Appends blockIdx.x to block_log and, in each block, threadIdx.x to the block's
/// thread_log [gridDim.x, blockDim.x] in the order they run; the counters are plain
/// because the emulator runs one fiber at a time.
__global__ void record_order(int* n_blocks_run, int* block_log, int* n_threads_run,
                             int* thread_log) {
  const int b = static_cast<int>(blockIdx.x);
  const int n_threads = static_cast<int>(blockDim.x);
  if (threadIdx.x == 0) {
    block_log[(*n_blocks_run)++] = b;
  }
  thread_log[b * n_threads + n_threads_run[b]++] = static_cast<int>(threadIdx.x);
  __syncthreads();
}

struct run_order {
  std::vector<int> blocks;   // [n_blocks] block indices as they ran
  std::vector<int> threads;  // [n_blocks, n_threads] thread indices as they ran
};

run_order record_run_order(int n_blocks, int n_threads) {
  int* d = nullptr;
  const size_t n_ints = 1 + static_cast<size_t>(n_blocks) * (2 + n_threads);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), n_ints * sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMemset(d, 0, n_ints * sizeof(int)), cudaSuccess);
  int* block_log = d + 1;
  int* n_threads_run = block_log + n_blocks;
  int* thread_log = n_threads_run + n_blocks;
  BATON_LAUNCH(n_blocks, n_threads, 0, nullptr, record_order)(d, block_log, n_threads_run,
                                                              thread_log);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> all(n_ints);
  EXPECT_EQ(cudaMemcpy(all.data(), d, n_ints * sizeof(int), cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(d);
  const auto at = [&](int* p) { return all.begin() + (p - d); };
  return {std::vector<int>(at(block_log), at(n_threads_run)),
          std::vector<int>(at(thread_log), all.end())};
}

TEST(cuda_emu, shuffle_mode_changes_block_and_thread_order_reproducibly) {
  const int n_blocks = 16;
  const int n_threads = 64;
  const uint64_t saved = baton::cuda_emu::shuffle_seed();
  std::vector<int> in_order(n_blocks);
  std::iota(in_order.begin(), in_order.end(), 0);
  std::vector<int> lanes_in_order(n_threads);
  std::iota(lanes_in_order.begin(), lanes_in_order.end(), 0);

  baton::cuda_emu::set_shuffle_seed(0);
  const run_order plain = record_run_order(n_blocks, n_threads);
  EXPECT_EQ(plain.blocks, in_order);
  for (int b = 0; b < n_blocks; ++b) {
    EXPECT_EQ(std::vector<int>(plain.threads.begin() + b * n_threads,
                               plain.threads.begin() + (b + 1) * n_threads),
              lanes_in_order)
        << "block " << b;
  }

  for (const uint64_t seed : {uint64_t{1}, uint64_t{12345}}) {
    baton::cuda_emu::set_shuffle_seed(seed);
    const run_order shuffled = record_run_order(n_blocks, n_threads);
    EXPECT_NE(shuffled.blocks, in_order) << "seed " << seed;
    std::vector<int> sorted = shuffled.blocks;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, in_order) << "seed " << seed << ": each block runs once";
    int n_blocks_reordered = 0;
    for (int b = 0; b < n_blocks; ++b) {
      std::vector<int> lanes(shuffled.threads.begin() + b * n_threads,
                             shuffled.threads.begin() + (b + 1) * n_threads);
      n_blocks_reordered += lanes != lanes_in_order ? 1 : 0;
      std::sort(lanes.begin(), lanes.end());
      EXPECT_EQ(lanes, lanes_in_order) << "seed " << seed << " block " << b;
    }
    EXPECT_EQ(n_blocks_reordered, n_blocks) << "seed " << seed;
    const run_order again = record_run_order(n_blocks, n_threads);
    EXPECT_NE(again.blocks, shuffled.blocks) << "two launches share one order";
  }

  // A seed's orders are reproducible: two fresh threads, each counting its launches from
  // one, see the same orders.
  baton::cuda_emu::set_shuffle_seed(7);
  run_order first;
  run_order second;
  std::thread([&] { first = record_run_order(n_blocks, n_threads); }).join();
  std::thread([&] { second = record_run_order(n_blocks, n_threads); }).join();
  EXPECT_EQ(first.blocks, second.blocks);
  EXPECT_EQ(first.threads, second.threads);
  baton::cuda_emu::set_shuffle_seed(saved);
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
