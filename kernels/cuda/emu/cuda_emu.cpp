// The CPU emulation's execution (declared in cuda_emu.hpp): the fiber scheduler that runs
// a block's threads, the launcher, and device faults (__trap, device asserts); streams
// are cuda_emu_streams.cpp, the rest of the runtime API cuda_emu_runtime.cpp. A launch is
// checked on the calling thread and queued on its stream; the stream's worker thread runs
// the grid, one block at a time under a process-wide lock, so `__shared__` (a plain
// static) is only ever the running block's. Each block's threads are fibers (fiber_switch.hpp)
// on that worker, their stacks kept for the worker's next launch; the scheduler runs every
// ready fiber in thread order until it waits at a barrier or returns, then releases a
// warp once all its live lanes wait at __syncwarp or a shuffle, and the block once all
// its live threads wait at __syncthreads. A wait that can never be released (a barrier
// inside divergent code) aborts with the block and thread. With
// BATON_CUDA_EMU_SHUFFLE=<seed> (not 0) the blocks of a launch, and the ready fibers of
// each round, run in a seeded random order instead.
#include "kernels/cuda/emu/cuda_emu.hpp"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/fiber_switch.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define BATON_EMU_ASAN 1
#endif

namespace baton::cuda_emu {

thread_local thread_state* current = nullptr;

namespace {

#if defined(BATON_EMU_ASAN)
constexpr size_t stack_bytes = 512 * 1024;
#else
constexpr size_t stack_bytes = 128 * 1024;
#endif
constexpr int max_threads = 1024;

enum class fiber_state { ready, wait_block, wait_warp, done };

struct fiber {
  fiber_context ctx;
  void* stack = nullptr;
  thread_state ts{};
  fiber_state st = fiber_state::done;
  void* fake_stack = nullptr;  // ASan's fake-stack handle while switched away

  fiber() = default;
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;
  ~fiber() {
    if (stack != nullptr) {
      munmap(stack, stack_bytes);
    }
  }
};

/// One per OS thread that runs grids (a stream's worker): its fibers, the scheduler's
/// context, the running launch's body and the warps' shuffle slots.
struct executor {
  fiber_context sched;
  std::vector<std::unique_ptr<fiber>> fibers;
  const std::function<void()>* body = nullptr;
  int n_threads = 0;
  bool trapped = false;  // a thread of the running block called trap()
  uint64_t slots[max_threads] = {};
  uint64_t n_launches = 0;  // on this thread, so on its stream: the shuffle seed's input
  std::mt19937_64 rng;           // the shuffle mode's, reseeded at each launch
  std::vector<int> fiber_order;  // [n_threads] the order of the round being run
#if defined(BATON_EMU_ASAN)
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  void* sched_fake_stack = nullptr;
#endif
};

thread_local executor* tl_exec = nullptr;

uint64_t seed_from_env() {
  const char* v = std::getenv("BATON_CUDA_EMU_SHUFFLE");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
}

std::atomic<uint64_t> shuffle_seed_value{seed_from_env()};

uint64_t fault_from_env() {
  const char* v = std::getenv("BATON_CUDA_EMU_FAULT_AT_LAUNCH");
  return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
}

/// Grids still to run before the injected fault (0: none injected).
std::atomic<uint64_t> launches_to_fault{fault_from_env()};

/// Whether the grid about to run is the one set_fault_at_launch chose.
bool injected_fault() {
  uint64_t n = launches_to_fault.load();
  while (n != 0 && !launches_to_fault.compare_exchange_weak(n, n - 1)) {
  }
  return n == 1;
}

/// A uniform draw in [0, n), the same on every platform for a seed (unlike
/// std::uniform_int_distribution); the modulo's bias does not matter here.
uint64_t draw(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

template <class T>
void shuffle(std::mt19937_64& rng, T* first, size_t n) {
  for (size_t i = n; i > 1; --i) {
    std::swap(first[i - 1], first[draw(rng, i)]);
  }
}

executor& this_executor() {
  static thread_local std::unique_ptr<executor> ex;
  if (!ex) {
    ex = std::make_unique<executor>();
    tl_exec = ex.get();
  }
  return *ex;
}

/// Called by a fiber to give control back to the scheduler; returns when resumed.
void switch_to_scheduler(executor& ex, fiber& f) {
#if defined(BATON_EMU_ASAN)
  __sanitizer_start_switch_fiber(&f.fake_stack, ex.sched_stack_bottom, ex.sched_stack_size);
#endif
  switch_fiber(f.ctx, ex.sched);
#if defined(BATON_EMU_ASAN)
  __sanitizer_finish_switch_fiber(f.fake_stack, &ex.sched_stack_bottom, &ex.sched_stack_size);
#endif
}

void fiber_main(int index) {
  executor& ex = *tl_exec;
  fiber& f = *ex.fibers[static_cast<size_t>(index)];
#if defined(BATON_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &ex.sched_stack_bottom, &ex.sched_stack_size);
#endif
  for (;;) {
    (*ex.body)();
    f.st = fiber_state::done;
    switch_to_scheduler(ex, f);
  }
}

void resume(executor& ex, fiber& f) {
  current = &f.ts;
#if defined(BATON_EMU_ASAN)
  __sanitizer_start_switch_fiber(&ex.sched_fake_stack, f.stack, stack_bytes);
#endif
  switch_fiber(ex.sched, f.ctx);
#if defined(BATON_EMU_ASAN)
  __sanitizer_finish_switch_fiber(ex.sched_fake_stack, nullptr, nullptr);
#endif
  current = nullptr;
}

/// (Re)starts fiber `index` at fiber_main on its own stack.
void start_fiber(executor& ex, int index) {
  fiber& f = *ex.fibers[static_cast<size_t>(index)];
  make_fiber_context(f.ctx, f.stack, stack_bytes, &fiber_main, index);
}

void ensure_fibers(executor& ex, int n) {
  while (static_cast<int>(ex.fibers.size()) < n) {
    auto f = std::make_unique<fiber>();
    f->stack = mmap(nullptr, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
    if (f->stack == MAP_FAILED) {
      std::fprintf(stderr, "cuda_emu: cannot map a %zu-byte fiber stack\n", stack_bytes);
      std::abort();
    }
    ex.fibers.push_back(std::move(f));
    start_fiber(ex, static_cast<int>(ex.fibers.size()) - 1);
  }
}

/// After a trap the block's fibers are abandoned mid-kernel: each starts afresh, its
/// stack's stale ASan poisoning (the abandoned frames' red zones) cleared.
void restart_fibers(executor& ex) {
  for (int i = 0; i < ex.n_threads; ++i) {
#if defined(BATON_EMU_ASAN)
    fiber& f = *ex.fibers[static_cast<size_t>(i)];
    ASAN_UNPOISON_MEMORY_REGION(f.stack, stack_bytes);
    f.fake_stack = nullptr;
#endif
    start_fiber(ex, i);
  }
  ex.trapped = false;
}

fiber& running_fiber(executor& ex) {
  return *ex.fibers[static_cast<size_t>(current->linear)];
}

/// Runs one block to completion; false when one of its threads trapped.
bool run_block(executor& ex, const uint3& block_idx, const dim3& grid, const dim3& block) {
  const int n = ex.n_threads;
  for (int i = 0; i < n; ++i) {
    fiber& f = *ex.fibers[static_cast<size_t>(i)];
    const auto u = static_cast<unsigned>(i);
    f.ts.thread_idx = {u % block.x, u / block.x % block.y, u / (block.x * block.y)};
    f.ts.block_idx = block_idx;
    f.ts.block_dim = block;
    f.ts.grid_dim = grid;
    f.ts.linear = i;
    f.st = fiber_state::ready;
  }
  const bool shuffled = shuffle_seed_value.load(std::memory_order_relaxed) != 0;
  ex.fiber_order.resize(static_cast<size_t>(n));
  std::iota(ex.fiber_order.begin(), ex.fiber_order.end(), 0);
  int n_done = 0;
  for (;;) {
    if (shuffled) {
      // Warps in a random order, each warp's lanes in a random order: every lane writes
      // its shuffle slot before the warp barrier and reads after it, so any order of a
      // round is one the lockstep design allows.
      const int n_warps = (n + warp_size - 1) / warp_size;
      int warps[max_threads / warp_size];
      std::iota(warps, warps + n_warps, 0);
      shuffle(ex.rng, warps, static_cast<size_t>(n_warps));
      size_t k = 0;
      for (int w = 0; w < n_warps; ++w) {
        const int w0 = warps[w] * warp_size;
        const int w1 = std::min(n, w0 + warp_size);
        int* lanes = ex.fiber_order.data() + k;
        for (int i = w0; i < w1; ++i) {
          ex.fiber_order[k++] = i;
        }
        shuffle(ex.rng, lanes, static_cast<size_t>(w1 - w0));
      }
    }
    for (const int i : ex.fiber_order) {
      fiber& f = *ex.fibers[static_cast<size_t>(i)];
      if (f.st == fiber_state::ready) {
        resume(ex, f);
        if (ex.trapped) {
          return false;
        }
        n_done += f.st == fiber_state::done ? 1 : 0;
      }
    }
    if (n_done == n) {
      return true;
    }
    // Nothing is ready: release the warps whose live lanes all wait at a warp barrier,
    // else the block if every live thread waits at __syncthreads.
    bool released = false;
    bool all_block = true;
    for (int w0 = 0; w0 < n; w0 += warp_size) {
      const int w1 = std::min(n, w0 + warp_size);
      int n_warp = 0;
      int n_live = 0;
      for (int i = w0; i < w1; ++i) {
        const fiber_state st = ex.fibers[static_cast<size_t>(i)]->st;
        n_warp += st == fiber_state::wait_warp ? 1 : 0;
        n_live += st != fiber_state::done ? 1 : 0;
      }
      if (n_warp > 0 && n_warp == n_live) {
        for (int i = w0; i < w1; ++i) {
          fiber& f = *ex.fibers[static_cast<size_t>(i)];
          if (f.st == fiber_state::wait_warp) {
            f.st = fiber_state::ready;
          }
        }
        released = true;
      }
      all_block = all_block && n_warp == 0;
    }
    if (!released && all_block) {
      for (int i = 0; i < n; ++i) {
        fiber& f = *ex.fibers[static_cast<size_t>(i)];
        if (f.st == fiber_state::wait_block) {
          f.st = fiber_state::ready;
        }
      }
      released = true;
    }
    if (!released) {
      std::fprintf(stderr,
                   "cuda_emu: deadlock in block (%u, %u, %u): some threads wait at "
                   "__syncthreads while others of the same warp wait at a warp barrier\n",
                   block_idx.x, block_idx.y, block_idx.z);
      std::abort();
    }
  }
}

/// One block at a time in the whole process: what makes a plain static `__shared__` the
/// running block's own, while two streams' grids still interleave block by block.
std::mutex block_mu;

bool valid_configuration(dim3 grid, dim3 block, size_t shmem) {
  const uint64_t n_threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  return n_threads > 0 && n_threads <= max_threads && block.x <= 1024 && block.y <= 1024 &&
         block.z <= 64 && grid.x > 0 && grid.y > 0 && grid.z > 0 && grid.x <= 0x7fffffffu &&
         grid.y <= 65535 && grid.z <= 65535 && shmem <= 48 * 1024;
}

/// The launch's blocks, each as x + grid.x × (y + grid.y × z), in the order they run:
/// empty for grid order, shuffled in the shuffle mode. One seed per launch, from the
/// mode's seed and the launch's number on this thread (its stream's worker), so a run is
/// reproducible and two launches of one kernel do not share an order.
std::vector<uint64_t> block_order(executor& ex, uint64_t n_blocks) {
  const uint64_t seed = shuffle_seed_value.load(std::memory_order_relaxed);
  if (seed == 0) {
    return {};
  }
  ex.rng.seed(seed ^ (ex.n_launches * 0x9e3779b97f4a7c15ull));
  std::vector<uint64_t> blocks(n_blocks);
  std::iota(blocks.begin(), blocks.end(), uint64_t{0});
  shuffle(ex.rng, blocks.data(), blocks.size());
  return blocks;
}

/// Runs the grid on this thread (a stream's worker); cudaErrorLaunchFailure when a thread
/// trapped, the rest of the grid then skipped.
cudaError_t run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  if (current != nullptr) {
    std::fprintf(stderr, "cuda_emu: a kernel launched a kernel (dynamic parallelism)\n");
    std::abort();
  }
  executor& ex = this_executor();
  const int n_threads = static_cast<int>(block.x * block.y * block.z);
  ensure_fibers(ex, n_threads);
  ex.body = &body;
  ex.n_threads = n_threads;
  ++ex.n_launches;
  if (injected_fault()) {
    std::fprintf(stderr, "cuda_emu: an injected fault (set_fault_at_launch): the device's "
                         "context is lost (unspecified launch failure)\n");
    return cudaErrorLaunchFailure;
  }
  const uint64_t n_blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  const std::vector<uint64_t> order = block_order(ex, n_blocks);
  for (uint64_t i = 0; i < n_blocks; ++i) {
    const uint64_t b = order.empty() ? i : order[i];
    const uint3 block_idx{static_cast<unsigned>(b % grid.x),
                          static_cast<unsigned>(b / grid.x % grid.y),
                          static_cast<unsigned>(b / grid.x / grid.y)};
    std::lock_guard lock(block_mu);
    if (!run_block(ex, block_idx, grid, block)) {
      restart_fibers(ex);
      return cudaErrorLaunchFailure;
    }
  }
  return cudaSuccess;
}

}  // namespace

thread_local cudaError_t last_error = cudaSuccess;

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) {
    last_error = e;
  }
  return e;
}

void sync_block() {
  executor& ex = *tl_exec;
  fiber& f = running_fiber(ex);
  f.st = fiber_state::wait_block;
  switch_to_scheduler(ex, f);
}

void sync_warp() {
  executor& ex = *tl_exec;
  fiber& f = running_fiber(ex);
  f.st = fiber_state::wait_warp;
  switch_to_scheduler(ex, f);
}

uint64_t* warp_slots() {
  return tl_exec->slots + current->linear / warp_size * warp_size;
}

void launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
            std::function<void()> body) {
  if (!valid_configuration(grid, block, shmem)) {
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  const cudaError_t e = enqueue(stream, [grid, block, body = std::move(body)] {
    return run_grid(grid, block, body);
  });
  set_error(e);
}

void trap() {
  if (current == nullptr) {
    std::fprintf(stderr, "cuda_emu: __trap() outside a kernel\n");
    std::abort();
  }
  executor& ex = *tl_exec;
  fiber& f = running_fiber(ex);
  const thread_state& ts = f.ts;
  std::fprintf(stderr,
               "cuda_emu: block (%u, %u, %u) thread (%u, %u, %u) trapped: the device's "
               "context is lost (unspecified launch failure)\n",
               ts.block_idx.x, ts.block_idx.y, ts.block_idx.z, ts.thread_idx.x, ts.thread_idx.y,
               ts.thread_idx.z);
  ex.trapped = true;
  switch_to_scheduler(ex, f);
  std::abort();  // never resumed: restart_fibers starts the fiber afresh
}

uint64_t shuffle_seed() { return shuffle_seed_value.load(); }

void set_shuffle_seed(uint64_t seed) { shuffle_seed_value.store(seed); }

void set_fault_at_launch(uint64_t n) { launches_to_fault.store(n); }

}  // namespace baton::cuda_emu

// A failed `assert` calls glibc's __assert_fail. Defined here, it traps when the caller is
// a CUDA thread, as a device assert does on a GPU, and is glibc's own (a message and
// abort) in host code.
extern "C" [[noreturn]] void __assert_fail(const char* assertion, const char* file,
                                           unsigned line, const char* function) noexcept {
  if (baton::cuda_emu::current != nullptr) {
    std::fprintf(stderr, "cuda_emu: %s:%u: %s: device assertion `%s' failed\n", file, line,
                 function, assertion);
    baton::cuda_emu::trap();
  }
  using assert_fn = void (*)(const char*, const char*, unsigned, const char*);
  const auto libc_assert = reinterpret_cast<assert_fn>(dlsym(RTLD_NEXT, "__assert_fail"));
  if (libc_assert != nullptr) {
    libc_assert(assertion, file, line, function);
  }
  std::fprintf(stderr, "%s:%u: %s: Assertion `%s' failed.\n", file, line, function, assertion);
  std::abort();
}
