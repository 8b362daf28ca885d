// The CPU emulation's runtime API (declared in cuda_emu.hpp), apart from the fiber
// scheduler and launcher (cuda_emu.cpp) and the streams and events
// (cuda_emu_streams.cpp): devices, memory, copies and errors. Device memory is host
// memory, counted against an emulated capacity (BATON_CUDA_EMU_MEMORY_MIB, default 8192,
// never above the host's RAM) on each of BATON_CUDA_EMU_DEVICES devices (default 1).
// Async copies, memsets and frees run when their stream reaches them; host memory counts
// as pinned, so an async copy reads or writes it then, never at the call. The synchronous
// cudaMemcpy and cudaFree run on the legacy default stream and wait for it: so they wait
// for the device's blocking streams, not its non-blocking ones (a conservative reading
// of CUDA's implicit synchronisation, which catches a free racing a non-blocking stream).
// cudaMemset queues on the legacy stream and returns, as CUDA's does. Once a kernel has
// faulted, every call on its device returns the sticky cudaErrorLaunchFailure.
#include "kernels/cuda/emu/cuda_emu.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

// -- runtime API -----------------------------------------------------------------------

struct CUmemPoolHandle_st {
  int device = 0;
  uint64_t release_threshold = 0;
};

namespace {

using baton::cuda_emu::current_device;
using baton::cuda_emu::enqueue;
using baton::cuda_emu::run_synchronously;
using baton::cuda_emu::set_error;
using baton::cuda_emu::sticky_error;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

int device_count() { return std::clamp(env_int("BATON_CUDA_EMU_DEVICES", 1), 0, 8); }

size_t device_capacity() {
  const size_t want = static_cast<size_t>(std::max(env_int("BATON_CUDA_EMU_MEMORY_MIB", 8192), 1))
                      << 20;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  const size_t host = pages > 0 && page > 0 ? static_cast<size_t>(pages) * page : want;
  return std::min(want, host);
}

struct allocation {
  int device = 0;
  size_t bytes = 0;
  bool freeing = false;  // a stream-ordered free is queued
};

struct allocations {
  std::mutex mu;
  std::unordered_map<void*, allocation> live;
  std::vector<size_t> used = std::vector<size_t>(8, 0);
  CUmemPoolHandle_st pools[8];
};

/// Never destroyed: a stream's worker may release memory while the process exits.
allocations& allocs() {
  static allocations& a = *new allocations;
  return a;
}

/// Marks a live allocation as being freed; cudaErrorInvalidValue for a pointer that is not
/// one, or whose free is already queued.
cudaError_t claim_for_free(void* p) {
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  const auto it = a.live.find(p);
  if (it == a.live.end() || it->second.freeing) {
    return cudaErrorInvalidValue;
  }
  it->second.freeing = true;
  return cudaSuccess;
}

/// Returns a claimed allocation's memory to its device and the host.
cudaError_t release(void* p) {
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  const auto it = a.live.find(p);
  a.used[static_cast<size_t>(it->second.device)] -= it->second.bytes;
  a.live.erase(it);
  std::free(p);
  return cudaSuccess;
}

bool valid_device(int device) { return device >= 0 && device < device_count(); }

}  // namespace

namespace baton::cuda_emu {

thread_local int current_device = 0;

}  // namespace baton::cuda_emu

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *count = device_count();
  return *count > 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (!valid_device(device)) {
    return set_error(cudaErrorInvalidDevice);
  }
  current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *device = current_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (!valid_device(device)) {
    return set_error(cudaErrorInvalidDevice);
  }
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "baton CUDA emulator");
  prop->totalGlobalMem = device_capacity();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = baton::cuda_emu::warp_size;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->memoryClockRate = 1'593'000;  // an A100's figures, so bandwidth estimates are finite
  prop->memoryBusWidth = 5120;
  prop->multiProcessorCount = 1;
  prop->major = 8;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (value == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (const cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) {
    return e;
  }
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      return cudaSuccess;
    case cudaDevAttrMemoryClockRate:
      *value = p.memoryClockRate;
      return cudaSuccess;
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = p.memoryBusWidth;
      return cudaSuccess;
  }
  return set_error(cudaErrorInvalidValue);
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) {
    return set_error(e);
  }
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  *total = device_capacity();
  *free = *total - std::min(*total, a.used[static_cast<size_t>(current_device)]);
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) {
    return e;  // sticky: not cleared
  }
  const cudaError_t e = baton::cuda_emu::last_error;
  baton::cuda_emu::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  const cudaError_t e = sticky_error();
  return e != cudaSuccess ? e : baton::cuda_emu::last_error;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorUnknown:
      return "cudaErrorUnknown";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return "unknown error";
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (p == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) {
    return set_error(e);
  }
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  size_t& used = a.used[static_cast<size_t>(current_device)];
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  if (rounded > device_capacity() - std::min(device_capacity(), used)) {
    *p = nullptr;
    return set_error(cudaErrorMemoryAllocation);
  }
  void* m = std::aligned_alloc(256, rounded);
  if (m == nullptr) {
    *p = nullptr;
    return set_error(cudaErrorMemoryAllocation);
  }
  used += rounded;
  a.live.emplace(m, allocation{current_device, rounded, false});
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) {
    return set_error(e);
  }
  if (p == nullptr) {
    return cudaSuccess;
  }
  if (const cudaError_t e = claim_for_free(p); e != cudaSuccess) {
    return set_error(e);
  }
  return set_error(run_synchronously([p] { return release(p); }));
}

/// The memory is taken at the call, so the pointer is valid for work queued after it on
/// any stream (stricter than CUDA's pool, which makes it usable only in stream order).
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }

cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (const cudaError_t e = sticky_error(); e != cudaSuccess) {
    return set_error(e);
  }
  if (p == nullptr) {
    return cudaSuccess;
  }
  if (const cudaError_t e = claim_for_free(p); e != cudaSuccess) {
    return set_error(e);
  }
  return set_error(enqueue(stream, [p] { return release(p); }));
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (pool == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (!valid_device(device)) {
    return set_error(cudaErrorInvalidDevice);
  }
  *pool = &allocs().pools[device];
  (*pool)->device = device;
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (pool == nullptr || value == nullptr || attr != cudaMemPoolAttrReleaseThreshold) {
    return set_error(cudaErrorInvalidValue);
  }
  std::memcpy(&pool->release_threshold, value, sizeof pool->release_threshold);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0 && (dst == nullptr || src == nullptr)) {
    return set_error(cudaErrorInvalidValue);
  }
  return set_error(run_synchronously([=] {
    if (bytes > 0) {
      std::memmove(dst, src, bytes);
    }
    return cudaSuccess;
  }));
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t stream) {
  if (bytes > 0 && (dst == nullptr || src == nullptr)) {
    return set_error(cudaErrorInvalidValue);
  }
  return set_error(enqueue(stream, [=] {
    if (bytes > 0) {
      std::memmove(dst, src, bytes);
    }
    return cudaSuccess;
  }));
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream) {
  if (!valid_device(dst_device) || !valid_device(src_device)) {
    return set_error(cudaErrorInvalidDevice);
  }
  return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  return cudaMemsetAsync(p, value, bytes, nullptr);
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (bytes > 0 && p == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  return set_error(enqueue(stream, [=] {
    if (bytes > 0) {
      std::memset(p, value, bytes);
    }
    return cudaSuccess;
  }));
}
