// NCCL on a GPU machine: a one-rank communicator sends a buffer to itself (NCCL cannot
// place two ranks on one GPU, so this is how a one-GPU host tests the path), and the
// floats arrive bit for bit. Skips, saying why, without a CUDA device.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/dequantize.cuh"
#include "kernels/cuda/portability.cuh"
#include "runtime/transport/nccl_channel.hpp"

namespace baton {
namespace {

TEST(nccl, a_one_rank_communicator_sends_to_itself) {
  std::string why;
  if (!cuda::device_available(&why)) {
    GTEST_SKIP() << why;
  }
  auto id = nccl_channel::make_id();
  ASSERT_TRUE(id) << id.err().message;
  auto ch = nccl_channel::create(*id, 0, 1, 0);
  ASSERT_TRUE(ch) << ch.err().message;
  const size_t n = 2048 * 16;  // 16 tokens of a 2048-wide hidden state
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) {
    host[i] = static_cast<float>(i) * 0.25f - 7.0f;
  }
  float* a = nullptr;
  float* b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  auto ok = (*ch)->send_recv(a, b, n, 0, 0, stream);
  ASSERT_TRUE(ok) << ok.err().message;
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  std::vector<float> back(n);
  ASSERT_EQ(cudaMemcpy(back.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host);
  cudaStreamDestroy(stream);
  cudaFree(a);
  cudaFree(b);
}

}  // namespace
}  // namespace baton
