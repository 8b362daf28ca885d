// The CPU emulation of CUDA (kernels/cuda/emu) itself: that __syncthreads is a real
// barrier across a block's threads, that warp shuffles exchange in lockstep, that 2-D
// grids and blocks get their indices, that launch-configuration errors come back from
// cudaGetLastError at the call as on a device, that device memory is counted, that the
// shuffle mode (BATON_CUDA_EMU_SHUFFLE) really changes the order blocks and threads run
// in, that streams run asynchronously with CUDA's ordering (events, host functions, the
// legacy default stream, stream-ordered frees), that a kernel fault is sticky, and that
// ASan catches an overrun of a __shared__ array. Built only into test_cuda_emu_kernels
// (label gpu-emu); the kernel tests that share that binary trust these. A test that
// would hang on a broken ordering waits with a timeout instead, and fails.
// Device asserts are under test in every build type.
#undef NDEBUG
#include <cassert>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
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

run_order record_run_order(int n_blocks, int n_threads, cudaStream_t stream = nullptr) {
  int* d = nullptr;
  const size_t n_ints = 1 + static_cast<size_t>(n_blocks) * (2 + n_threads);
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), n_ints * sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMemset(d, 0, n_ints * sizeof(int)), cudaSuccess);
  int* block_log = d + 1;
  int* n_threads_run = block_log + n_blocks;
  int* thread_log = n_threads_run + n_blocks;
  BATON_LAUNCH(n_blocks, n_threads, 0, stream, record_order)(d, block_log, n_threads_run,
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

  // A seed's orders are reproducible: two fresh streams, each counting its launches from
  // one, see the same orders.
  baton::cuda_emu::set_shuffle_seed(7);
  cudaStream_t streams[2];
  run_order runs[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(cudaStreamCreate(&streams[i]), cudaSuccess);
    runs[i] = record_run_order(n_blocks, n_threads, streams[i]);
    EXPECT_EQ(cudaStreamDestroy(streams[i]), cudaSuccess);
  }
  EXPECT_EQ(runs[0].blocks, runs[1].blocks);
  EXPECT_EQ(runs[0].threads, runs[1].threads);
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

// -- streams, events and faults -----------------------------------------------------------

using namespace std::chrono_literals;

/// A one-shot signal between host functions and the test: wait() returns false if it was
/// not opened within the timeout, so a broken ordering fails instead of hanging.
class gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return open_; });
  }
  bool is_open() {
    std::lock_guard lock(mu_);
    return open_;
  }
  /// Host functions that open the gate or wait at it (recording whether it opened).
  static void open_fn(void* g) { static_cast<gate*>(g)->open(); }
  static void wait_fn(void* g) {
    auto* self = static_cast<gate*>(g);
    self->opened_in_time_ = self->wait();
  }
  bool opened_in_time() {
    std::lock_guard lock(mu_);
    return opened_in_time_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  bool opened_in_time_ = false;
};

/// The order host functions ran in, each appending its name.
class order_log {
 public:
  struct entry {
    order_log* log;
    const char* name;
  };
  static void append_fn(void* e) {
    auto* en = static_cast<entry*>(e);
    std::lock_guard lock(en->log->mu_);
    en->log->names_.emplace_back(en->name);
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mu_);
    return names_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> names_;
};

/// Spins until *flag (host memory, which emulated device code can read) is set: a kernel
/// whose end the test decides.
__global__ void wait_for_host_flag(const int* flag, int* out) {
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 0) {
    std::this_thread::yield();
  }
  *out = 1;
}

__global__ void add_one(int* x) { *x += 1; }

TEST(cuda_emu, an_event_is_not_ready_until_its_stream_reaches_it) {
  int flag = 0;
  int* d_out = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_out), sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_out, 0, sizeof(int)), cudaSuccess);
  cudaStream_t s = nullptr;
  cudaEvent_t before = nullptr;
  cudaEvent_t after = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&before), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&after), cudaSuccess);
  // Should the launch run the kernel before returning, this sets the flag after a while,
  // and the queries below fail instead of the test hanging.
  gate kernel_queued;
  std::thread watchdog([&] {
    kernel_queued.wait();
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
  });
  EXPECT_EQ(cudaEventRecord(before, s), cudaSuccess);
  BATON_LAUNCH(1, 1, 0, s, wait_for_host_flag)(&flag, d_out);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(after, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(after), cudaErrorNotReady);
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, before, after), cudaErrorNotReady);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "not ready is not an error";

  kernel_queued.open();
  watchdog.join();
  EXPECT_EQ(cudaEventSynchronize(after), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(after), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, before, after), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  int out = 0;
  ASSERT_EQ(cudaMemcpy(&out, d_out, sizeof out, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(out, 1);
  EXPECT_EQ(cudaEventDestroy(before), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(after), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaFree(d_out), cudaSuccess);
}

TEST(cuda_emu, two_streams_run_concurrently) {
  cudaStream_t a = nullptr;
  cudaStream_t b = nullptr;
  ASSERT_EQ(cudaStreamCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&b), cudaSuccess);
  gate g;
  // a's host function blocks until b's runs: only concurrent streams get there.
  ASSERT_EQ(cudaLaunchHostFunc(a, gate::wait_fn, &g), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(b, gate::open_fn, &g), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_TRUE(g.opened_in_time()) << "stream a's host function blocked stream b";
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

TEST(cuda_emu, the_legacy_default_stream_and_blocking_streams_wait_for_each_other) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  gate g;
  order_log log;
  order_log::entry s1{&log, "s1"}, legacy{&log, "legacy"}, s2{&log, "s2"};
  ASSERT_EQ(cudaLaunchHostFunc(s, gate::wait_fn, &g), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(s, order_log::append_fn, &s1), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(nullptr, order_log::append_fn, &legacy), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(s, order_log::append_fn, &s2), cudaSuccess);
  // Time for wrongly unordered work to run; correctly ordered work cannot run yet.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(cudaStreamQuery(nullptr), cudaErrorNotReady);
  EXPECT_EQ(log.names(), std::vector<std::string>{});
  g.open();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(log.names(), (std::vector<std::string>{"s1", "legacy", "s2"}));
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST(cuda_emu, non_blocking_streams_do_not_order_with_the_legacy_default_stream) {
  cudaStream_t n = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&n, cudaStreamNonBlocking), cudaSuccess);
  gate n_blocked;
  gate legacy_ran;
  ASSERT_EQ(cudaLaunchHostFunc(n, gate::wait_fn, &n_blocked), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(nullptr, gate::open_fn, &legacy_ran), cudaSuccess);
  EXPECT_TRUE(legacy_ran.wait()) << "the legacy stream waited for a non-blocking stream";
  n_blocked.open();

  gate legacy_blocked;
  gate n_ran;
  ASSERT_EQ(cudaLaunchHostFunc(nullptr, gate::wait_fn, &legacy_blocked), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(n, gate::open_fn, &n_ran), cudaSuccess);
  EXPECT_TRUE(n_ran.wait()) << "a non-blocking stream waited for the legacy stream";
  legacy_blocked.open();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(n), cudaSuccess);
}

TEST(cuda_emu, host_functions_run_in_order_with_their_streams_other_work) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(int)), cudaSuccess);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  struct reading {
    const int* d;
    std::vector<int> seen;  // *d as each host function saw it
  } r{d, {}};
  // Device memory is host memory here, so a host function can read what ran before it.
  const auto read_fn = [](void* p) {
    auto* rp = static_cast<reading*>(p);
    rp->seen.push_back(*rp->d);
  };
  ASSERT_EQ(cudaMemsetAsync(d, 0, sizeof(int), s), cudaSuccess);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(cudaLaunchHostFunc(s, read_fn, &r), cudaSuccess);
    BATON_LAUNCH(1, 1, 0, s, add_one)(d);
  }
  ASSERT_EQ(cudaLaunchHostFunc(s, read_fn, &r), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(r.seen, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
}

TEST(cuda_emu, a_destroyed_streams_pending_work_still_runs) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  gate release;
  gate ran;
  ASSERT_EQ(cudaLaunchHostFunc(s, gate::wait_fn, &release), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(s, gate::open_fn, &ran), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorInvalidResourceHandle) << "a destroyed stream";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_FALSE(ran.is_open());
  release.open();
  EXPECT_TRUE(ran.wait());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(cuda_emu, a_stream_ordered_free_releases_memory_when_the_stream_reaches_it) {
  constexpr size_t n_bytes = size_t{1} << 20;
  size_t free0 = 0;
  size_t total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  gate g;
  ASSERT_EQ(cudaLaunchHostFunc(s, gate::wait_fn, &g), cudaSuccess);
  unsigned char* d = nullptr;
  ASSERT_EQ(cudaMallocAsync(reinterpret_cast<void**>(&d), n_bytes, s), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(d, 7, n_bytes, s), cudaSuccess);
  struct probe {
    const unsigned char* d;
    int last = -1;  // d[n_bytes - 1] as the stream saw it just before the free
  } p{d};
  const auto look = [](void* v) {
    auto* pp = static_cast<probe*>(v);
    pp->last = pp->d[n_bytes - 1];
  };
  ASSERT_EQ(cudaLaunchHostFunc(s, look, &p), cudaSuccess);
  ASSERT_EQ(cudaFreeAsync(d, s), cudaSuccess);
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, n_bytes) << "freed before the stream reached the free";
  EXPECT_EQ(cudaFreeAsync(d, s), cudaErrorInvalidValue) << "a second free of the same memory";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  g.open();
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(p.last, 7);
  size_t free2 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free2, &total), cudaSuccess);
  EXPECT_EQ(free2, free0);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST(cuda_emu, launch_configuration_errors_come_back_at_the_call_on_the_calling_thread) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d, 0, sizeof(int)), cudaSuccess);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  gate g;
  ASSERT_EQ(cudaLaunchHostFunc(s, gate::wait_fn, &g), cudaSuccess);
  // The stream is held up: an error seen now was found at the call.
  BATON_LAUNCH(1, 1025, 0, s, add_one)(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  BATON_LAUNCH(1, dim3(1, 1, 65), 0, s, add_one)(d);
  BATON_LAUNCH(1, 1, 0, s, add_one)(d);
  cudaError_t other_thread = cudaErrorUnknown;
  std::thread([&] { other_thread = cudaGetLastError(); }).join();
  EXPECT_EQ(other_thread, cudaSuccess) << "the last error is per host thread";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  g.open();
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  int v = -1;
  ASSERT_EQ(cudaMemcpy(&v, d, sizeof v, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(v, 1) << "only the valid launch runs";
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
}

/// Thread `bad` of the grid faults: by __trap, or by a failed device assert.
__global__ void fault_at(int bad, int use_assert, int* out) {
  const int i = static_cast<int>(threadIdx.x + blockDim.x * blockIdx.x);
  if (i == bad) {
    if (use_assert != 0) {
      assert(i != bad);
    }
    __trap();
  }
  out[i] = 1;
}

/// Runs a kernel that faults and checks the device is unusable after it; in a death
/// test's child (the context cannot be restored), so it exits 0 when every check held
/// and otherwise names the first that did not on stderr.
[[noreturn]] void fault_and_check_sticky_error(int use_assert) {
  const auto fail = [](const char* what, cudaError_t got) {
    std::fprintf(stderr, "check failed: %s returned %s\n", what, cudaGetErrorName(got));
    std::exit(1);
  };
  const auto expect_failure = [&](const char* what, cudaError_t got) {
    if (got != cudaErrorLaunchFailure) {
      fail(what, got);
    }
  };
  baton::cuda_emu::set_shuffle_seed(0);  // blocks in grid order: which ones ran is known
  const int n = 256;
  int* d = nullptr;
  cudaStream_t s = nullptr;
  if (cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(int)) != cudaSuccess ||
      cudaMemset(d, 0, n * sizeof(int)) != cudaSuccess || cudaStreamCreate(&s) != cudaSuccess) {
    fail("setup", cudaGetLastError());
  }
  // Held up until the checks of the calls made before the fault are done.
  gate g;
  if (cudaLaunchHostFunc(s, gate::wait_fn, &g) != cudaSuccess) {
    fail("cudaLaunchHostFunc", cudaGetLastError());
  }
  BATON_LAUNCH(n / 64, 64, 0, s, fault_at)(70, use_assert, d);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
    fail("the launch", e);
  }
  if (const cudaError_t e = cudaMemsetAsync(d, 0xff, n * sizeof(int), s); e != cudaSuccess) {
    fail("cudaMemsetAsync queued before the fault", e);  // queued, to be dropped
  }
  g.open();
  expect_failure("cudaStreamSynchronize", cudaStreamSynchronize(s));
  expect_failure("cudaGetLastError", cudaGetLastError());
  expect_failure("a second cudaGetLastError", cudaGetLastError());
  expect_failure("cudaPeekAtLastError", cudaPeekAtLastError());
  expect_failure("cudaStreamQuery", cudaStreamQuery(s));
  expect_failure("cudaDeviceSynchronize", cudaDeviceSynchronize());
  void* p = nullptr;
  expect_failure("cudaMalloc", cudaMalloc(&p, 64));
  int host[n];
  expect_failure("cudaMemcpy", cudaMemcpy(host, d, sizeof host, cudaMemcpyDeviceToHost));
  expect_failure("cudaMemsetAsync", cudaMemsetAsync(d, 0, sizeof(int), s));
  BATON_LAUNCH(1, 1, 0, s, add_one)(d);
  expect_failure("a launch", cudaGetLastError());
  expect_failure("cudaFree", cudaFree(d));
  if (std::string(cudaGetErrorString(cudaErrorLaunchFailure)) != "unspecified launch failure") {
    fail("cudaGetErrorString", cudaErrorLaunchFailure);
  }
  // Device memory is host memory: the block that faulted, and all after it, did not
  // finish, and the memset queued behind the fault was dropped.
  if (d[0] != 1 || d[63] != 1 || d[70] != 0 || d[200] != 0) {
    fail("what ran", cudaSuccess);
  }
  std::exit(0);
}

TEST(cuda_emu, a_trap_makes_the_device_unusable) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the parent has stream workers running
  EXPECT_EXIT(fault_and_check_sticky_error(0), testing::ExitedWithCode(0),
              "block \\(1, 0, 0\\) thread \\(6, 0, 0\\) trapped");
}

TEST(cuda_emu, a_failed_device_assert_traps) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(fault_and_check_sticky_error(1), testing::ExitedWithCode(0),
              "device assertion `i != bad' failed");
}

/// Each thread writes shared[threadIdx.x] of a 32-int array: with 33 threads, one past it.
/// UBSan is off here (its object-size check would report first): the test is that ASan's
/// red zones surround a __shared__ array.
[[maybe_unused]] __attribute__((no_sanitize("undefined"))) __global__ void write_shared(
    int* out) {
  __shared__ int buf[32];
  const int i = static_cast<int>(threadIdx.x);
  buf[i] = i;
  __syncthreads();
  out[i] = buf[i];
}

TEST(cuda_emu, a_shared_memory_overrun_is_an_asan_error) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 33 * sizeof(int)), cudaSuccess);
  BATON_LAUNCH(1, 32, 0, nullptr, write_shared)(d);  // in bounds: no report
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_DEATH(
      {
        BATON_LAUNCH(1, 33, 0, nullptr, write_shared)(d);
        cudaDeviceSynchronize();
      },
      "AddressSanitizer: global-buffer-overflow");
  EXPECT_EQ(cudaFree(d), cudaSuccess);
#else
  GTEST_SKIP() << "needs AddressSanitizer's red zones: runs in test_cuda_emu_kernels_asan";
#endif
}

}  // namespace
