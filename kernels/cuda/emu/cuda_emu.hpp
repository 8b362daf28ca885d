// A CPU emulation of the CUDA subset baton's kernels (kernels/cuda/*.cu) and their host
// code use, so those sources, compiled by the host compiler with BATON_CUDA_EMU, run and
// are tested on machines without a GPU. Device side: the execution-space keywords,
// dim3 and the built-in indices, __syncthreads, __syncwarp, __shfl_xor_sync, __ldg,
// __trap (device assert failures trap too) and static __shared__ arrays. Inside a block
// every CUDA thread is a fiber (cuda_emu.cpp), so __syncthreads is a real barrier and a
// warp's shuffles run in lockstep; one block runs at a time in the whole process. Host
// side: the runtime API calls the kernels, the tests and runtime/ use, declared here with
// cudart's names. Streams are asynchronous as on a device (cuda_emu_streams.cpp): each
// is a FIFO run by its own worker thread, with the legacy default stream's implicit
// ordering; memory and errors are cuda_emu_runtime.cpp. A kernel fault is sticky, as in
// CUDA. Test-only: never linked into the baton executable.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

// -- execution spaces and qualifiers -----------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One block runs at a time in the whole process (cuda_emu.cpp), so one static copy is
// exactly the running block's; and a static, unlike a thread_local, gets AddressSanitizer's
// red zones, so an overrun of a shared array is caught.
#define __shared__ static

// -- runtime API types -------------------------------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMemoryClockRate = 36,
  cudaDevAttrGlobalMemoryBusWidth = 37,
};

enum cudaMemPoolAttr {
  cudaMemPoolAttrReleaseThreshold = 4,
};

constexpr unsigned cudaStreamDefault = 0x0;
constexpr unsigned cudaStreamNonBlocking = 0x1;
constexpr unsigned cudaEventDefault = 0x0;
constexpr unsigned cudaEventDisableTiming = 0x2;

struct CUstream_st;
struct CUevent_st;
struct CUmemPoolHandle_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
using cudaMemPool_t = CUmemPoolHandle_st*;
using cudaHostFn_t = void (*)(void*);

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int memoryClockRate;  // kHz
  int memoryBusWidth;   // bits
  int multiProcessorCount;
  int major;
  int minor;
};

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMemGetInfo(size_t* free, size_t* total);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream);
// cudart's typed overloads (cuda_runtime.h's C++ API): any T** for the void** of the C API.
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <class T>
cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, stream);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
// C linkage, as cudart's: the emulation's NCCL shim (nccl_emu.cpp) finds it by name.
extern "C" cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn,
                                          void* user_data);

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// -- device side -------------------------------------------------------------------------

namespace baton::cuda_emu {

constexpr int warp_size = 32;

/// What one CUDA thread sees; the scheduler points `current` at the running fiber's.
struct thread_state {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  int linear;  // threadIdx.x + blockDim.x × (threadIdx.y + blockDim.y × threadIdx.z)
};

extern thread_local thread_state* current;

/// All threads of the block arrive before any leaves (threads that returned count as
/// arrived, as on sm_70+).
void sync_block();
/// All live lanes of the caller's warp arrive before any leaves.
void sync_warp();
/// The caller's warp's exchange slots, one 8-byte word per lane.
uint64_t* warp_slots();

template <class T>
T shfl_xor(T v, int lane_mask, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
  const int lane = current->linear % warp_size;
  uint64_t* slots = warp_slots();
  std::memcpy(&slots[lane], &v, sizeof(T));
  sync_warp();
  const int src = (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1));
  T r = v;
  if (src < warp_size) {
    std::memcpy(&r, &slots[src], sizeof(T));
  }
  sync_warp();  // the slot is read before any lane writes the next value
  return r;
}

/// Fault injection, for tests of what code does after a kernel fault: the `n`-th grid to
/// run from now (on any stream) faults before its first block, as if a thread trapped
/// (the device's context is lost; cudaErrorLaunchFailure from then on); 0 injects none.
/// Starts as BATON_CUDA_EMU_FAULT_AT_LAUNCH.
void set_fault_at_launch(uint64_t n);

/// The shuffle mode's seed: 0 runs blocks in grid order and a block's fibers in thread
/// order; any other value runs each launch's blocks, and at each barrier round the
/// block's warps and each warp's lanes, in an order drawn from the seed and the launch's
/// number on its stream, to expose order dependence. Starts as BATON_CUDA_EMU_SHUFFLE.
uint64_t shuffle_seed();
void set_shuffle_seed(uint64_t seed);

/// This OS thread's last runtime error (what cudaGetLastError returns and clears), and
/// set_error, which records `e` when it is an error and returns it: shared by the
/// launcher (configuration errors) and the runtime API (cuda_emu_runtime.cpp).
extern thread_local cudaError_t last_error;
cudaError_t set_error(cudaError_t e);

/// The device this OS thread's runtime calls address (cudaSetDevice).
extern thread_local int current_device;

// -- between the emulator's files: streams (cuda_emu_streams.cpp) ------------------------

/// A stream's unit of work, run on the stream's worker thread; an error it returns is a
/// device fault, sticky for the stream's device (cudaErrorLaunchFailure from then on).
using stream_work = std::function<cudaError_t()>;

/// Queues `work` on `stream` (nullptr: the current device's legacy default stream) and
/// returns at once: cudaErrorInvalidResourceHandle for a stream that is not live, the
/// sticky error once the device has faulted (the work is then dropped).
cudaError_t enqueue(cudaStream_t stream, stream_work work);
/// Queues `work` on the current device's legacy default stream and waits until it has
/// run: what CUDA's synchronous calls do (cudaMemcpy, cudaFree). Aborts when called from a
/// host function, which CUDA forbids to call the runtime (it would wait for itself).
cudaError_t run_synchronously(stream_work work);
/// cudaErrorLaunchFailure once a kernel on the current device has faulted, else
/// cudaSuccess.
cudaError_t sticky_error();

// -- the launcher (cuda_emu.cpp) ---------------------------------------------------------

/// Checks the configuration on the calling thread (a bad one sets the last error and
/// queues nothing, as cudaLaunchKernel reports it), then queues the grid on `stream`;
/// its worker runs `body` as every thread of the grid.
void launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream, std::function<void()> body);

/// Ends the calling CUDA thread's kernel with a fault: the rest of the grid does not run
/// and the device's context is lost (every later call returns cudaErrorLaunchFailure).
[[noreturn]] void trap();

template <class... P>
struct launcher {
  void (*kernel)(P...);
  dim3 grid;
  dim3 block;
  size_t shmem;
  cudaStream_t stream;

  /// Converts the arguments to the kernel's parameter types once, as cudaLaunchKernel
  /// copies them, and queues the grid; the stream keeps the copies until it has run.
  template <class... A>
  void operator()(A&&... a) const {
    launch(grid, block, shmem, stream,
           [k = kernel, args = std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)] {
             std::apply(k, args);
           });
  }
};

template <class... P>
launcher<P...> make_launcher(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                             void (*kernel)(P...)) {
  return launcher<P...>{kernel, grid, block, shmem, stream};
}

}  // namespace baton::cuda_emu

#define threadIdx (::baton::cuda_emu::current->thread_idx)
#define blockIdx (::baton::cuda_emu::current->block_idx)
#define blockDim (::baton::cuda_emu::current->block_dim)
#define gridDim (::baton::cuda_emu::current->grid_dim)

inline void __syncthreads() { ::baton::cuda_emu::sync_block(); }
inline void __syncwarp(unsigned /*mask*/ = 0xffffffffu) { ::baton::cuda_emu::sync_warp(); }

template <class T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask, int width = 32) {
  return ::baton::cuda_emu::shfl_xor(v, lane_mask, width);
}

template <class T>
T __ldg(const T* p) {
  return *p;
}

[[noreturn]] inline void __trap() { ::baton::cuda_emu::trap(); }
