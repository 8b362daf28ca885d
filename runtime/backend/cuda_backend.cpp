// cuda_backend.hpp over the CUDA runtime API: built once with nvcc's kernels and cudart
// (baton_cuda_backend) and once against the CPU emulation (baton_cuda_emu_backend, where
// BATON_CUDA_EMU is defined); the source is the same.
#include "runtime/backend/cuda_backend.hpp"

#include "kernels/cuda/dequantize.cuh"
#include "kernels/cuda/portability.cuh"
#include "runtime/compute/cuda_stage.hpp"

#if defined(BATON_HAVE_NCCL)
#include "runtime/transport/nccl_channel.hpp"
#endif

namespace baton::cuda_backend {

const char* name() {
#if defined(BATON_CUDA_EMU)
  return "cuda-emu";
#else
  return "cuda";
#endif
}

bool device_available(std::string* why) { return cuda::device_available(why); }

device_info query_device(int index) {
  device_info d;
  const std::string device = cuda_device_name(index);
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    d.source = std::string("no CUDA device: ") + cudaGetErrorString(e);
    return d;
  }
  if (index >= n) {
    d.source = "this host has " + std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s");
    return d;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    d.source = "cudaGetDeviceProperties failed for " + device;
    return d;
  }
  d.exists = true;
  d.memory_bytes = prop.totalGlobalMem;
  d.source = std::string(prop.name) + " total memory";
  d.threads = 1;
  // peak bandwidth: double data rate x clock x bus width
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, index) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index) == cudaSuccess) {
    d.bandwidth = 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
  }
  cudaGetLastError();  // the bandwidth only weighs "auto" placement
  return d;
}

result<std::unique_ptr<stage_compute>> make_stage(const stage_compute_options& o, int index) {
  auto s = cuda_stage::create(o, index);
  if (!s) {
    return s.err();
  }
  return std::unique_ptr<stage_compute>(std::move(*s));
}

#if defined(BATON_HAVE_NCCL)
result<void> nccl_ready(int device) {
  if (auto ok = nccl_channel::available(); !ok) {
    return ok;
  }
  if (cudaSetDevice(device) != cudaSuccess) {
    return make_error("cuda:%d: %s", device, cudaGetErrorString(cudaGetLastError()));
  }
  return {};
}

result<nccl_id> nccl_make_id() { return nccl_channel::make_id(); }

result<std::unique_ptr<device_link>> nccl_connect(const nccl_id& id, std::vector<int32_t> members,
                                                  int32_t rank, int device) {
  auto l = nccl_link::create(id, std::move(members), rank, device);
  if (!l) {
    return l.err();
  }
  return std::unique_ptr<device_link>(std::move(*l));
}
#else
namespace {
error no_nccl() {
  return make_error("this build of baton has no NCCL (nccl.h was not found when it was "
                    "configured)");
}
}  // namespace

result<void> nccl_ready(int) { return no_nccl(); }
result<nccl_id> nccl_make_id() { return no_nccl(); }
result<std::unique_ptr<device_link>> nccl_connect(const nccl_id&, std::vector<int32_t>, int32_t,
                                                  int) {
  return no_nccl();
}
#endif

}  // namespace baton::cuda_backend
