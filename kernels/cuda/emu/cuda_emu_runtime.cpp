// The CPU emulation's runtime API (declared in cuda_emu.hpp), apart from the fiber
// scheduler and launcher in cuda_emu.cpp: devices, memory, streams, events and errors.
// Device memory is host memory, counted against an emulated capacity
// (BATON_CUDA_EMU_MEMORY_MIB, default 8192, never above the host's RAM) on each of
// BATON_CUDA_EMU_DEVICES devices (default 1). Streams and events are synchronous.
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

struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  unsigned flags = 0;
};
struct CUmemPoolHandle_st {
  int device = 0;
  uint64_t release_threshold = 0;
};

namespace {

using baton::cuda_emu::set_error;

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

thread_local int current_device = 0;

struct allocations {
  std::mutex mu;
  std::unordered_map<void*, std::pair<int, size_t>> live;  // pointer → (device, bytes)
  std::vector<size_t> used = std::vector<size_t>(8, 0);
  CUmemPoolHandle_st pools[8];
};

allocations& allocs() {
  static allocations a;
  return a;
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *count = device_count();
  return *count > 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count()) {
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
  if (device < 0 || device >= device_count()) {
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

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (free == nullptr || total == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  *total = device_capacity();
  *free = *total - std::min(*total, a.used[static_cast<size_t>(current_device)]);
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = baton::cuda_emu::last_error;
  baton::cuda_emu::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return baton::cuda_emu::last_error; }

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
  a.live.emplace(m, std::make_pair(current_device, rounded));
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (p == nullptr) {
    return cudaSuccess;
  }
  allocations& a = allocs();
  std::lock_guard lock(a.mu);
  const auto it = a.live.find(p);
  if (it == a.live.end()) {
    return set_error(cudaErrorInvalidValue);
  }
  a.used[static_cast<size_t>(it->second.first)] -= it->second.second;
  a.live.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  if (pool == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (device < 0 || device >= device_count()) {
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
  if (bytes > 0) {
    std::memmove(dst, src, bytes);
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t) {
  if (dst_device < 0 || dst_device >= device_count() || src_device < 0 ||
      src_device >= device_count()) {
    return set_error(cudaErrorInvalidDevice);
  }
  return cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes > 0 && p == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  if (bytes > 0) {
    std::memset(p, value, bytes);
  }
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *stream = new CUstream_st{flags};
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (event == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *event = new CUevent_st{flags};
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  return event != nullptr ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event != nullptr ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) { return cudaEventQuery(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  *ms = 0.0f;
  return cudaSuccess;
}
