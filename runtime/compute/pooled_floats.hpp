// Device memory from the stream-ordered pool, owned by a shared_ptr: how activations left
// on a GPU travel to the next stage (cuda_stage, nccl_link). CUDA builds only.
#pragma once

#include "kernels/cuda/portability.cuh"

#include <cstddef>
#include <memory>

namespace baton {

/// out = `bytes` of device `device`'s memory, allocated on `stream`. The last owner to let
/// go frees it back to the pool from its own thread, once nothing uses it any more (the
/// consuming stage has synchronized its step).
inline cudaError_t pooled_floats(size_t bytes, int device, cudaStream_t stream,
                                 std::shared_ptr<float>& out) {
  void* p = nullptr;
  if (const cudaError_t e = cudaMallocAsync(&p, bytes, stream); e != cudaSuccess) {
    return e;
  }
  out = std::shared_ptr<float>(static_cast<float*>(p), [device](float* q) {
    int prev = 0;
    cudaGetDevice(&prev);
    cudaSetDevice(device);
    cudaFreeAsync(q, nullptr);
    cudaSetDevice(prev);
    cudaGetLastError();  // a failure here must not be blamed on the thread's next call
  });
  return cudaSuccess;
}

}  // namespace baton
