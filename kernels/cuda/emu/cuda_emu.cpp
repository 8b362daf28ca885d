// The CPU emulation's execution (declared in cuda_emu.hpp): the fiber scheduler that runs
// a block's threads, and the launcher (the runtime API is cuda_emu_runtime.cpp). Each block's threads are
// fibers (fiber_switch.hpp) on the launching OS thread, their stacks kept for the next launch;
// the scheduler runs every ready fiber in thread order until it waits at a barrier or
// returns, then releases a warp once all its live lanes wait at __syncwarp or a
// shuffle, and the block once all its live threads wait at __syncthreads. A wait that
// can never be released (a barrier inside divergent code) aborts with the block and
// thread. With BATON_CUDA_EMU_SHUFFLE=<seed> (not 0) the blocks of a launch, and the ready
// fibers of each round, run in a seeded random order instead.
#include "kernels/cuda/emu/cuda_emu.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/fiber_switch.hpp"

#if defined(__SANITIZE_ADDRESS__)
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

/// One per OS thread that launches: its fibers, the scheduler's context, the running
/// launch's body and the warps' shuffle slots.
struct executor {
  fiber_context sched;
  std::vector<std::unique_ptr<fiber>> fibers;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  int n_threads = 0;
  uint64_t slots[max_threads] = {};
  uint64_t n_launches = 0;
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
    ex.body(ex.ctx);
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

void ensure_fibers(executor& ex, int n) {
  while (static_cast<int>(ex.fibers.size()) < n) {
    auto f = std::make_unique<fiber>();
    f->stack = mmap(nullptr, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
    if (f->stack == MAP_FAILED) {
      std::fprintf(stderr, "cuda_emu: cannot map a %zu-byte fiber stack\n", stack_bytes);
      std::abort();
    }
    make_fiber_context(f->ctx, f->stack, stack_bytes, &fiber_main,
                       static_cast<int>(ex.fibers.size()));
    ex.fibers.push_back(std::move(f));
  }
}

fiber& running_fiber(executor& ex) {
  return *ex.fibers[static_cast<size_t>(current->linear)];
}

/// Runs one block to completion.
void run_block(executor& ex, const uint3& block_idx, const dim3& grid, const dim3& block) {
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
        n_done += f.st == fiber_state::done ? 1 : 0;
      }
    }
    if (n_done == n) {
      return;
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

void launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t /*stream*/, void (*body)(void*),
            void* ctx) {
  const uint64_t n_threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (n_threads == 0 || n_threads > max_threads || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
      grid.y > 65535 || grid.z > 65535 || shmem > 48 * 1024) {
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (current != nullptr) {
    std::fprintf(stderr, "cuda_emu: a kernel launched a kernel (dynamic parallelism)\n");
    std::abort();
  }
  executor& ex = this_executor();
  ensure_fibers(ex, static_cast<int>(n_threads));
  ex.body = body;
  ex.ctx = ctx;
  ex.n_threads = static_cast<int>(n_threads);
  ++ex.n_launches;
  const uint64_t seed = shuffle_seed_value.load(std::memory_order_relaxed);
  if (seed == 0) {
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned y = 0; y < grid.y; ++y) {
        for (unsigned x = 0; x < grid.x; ++x) {
          run_block(ex, uint3{x, y, z}, grid, block);
        }
      }
    }
    return;
  }
  // One seed per launch, from the mode's seed and the launch's number on this thread, so
  // a run is reproducible and two launches of one kernel do not share an order.
  ex.rng.seed(seed ^ (ex.n_launches * 0x9e3779b97f4a7c15ull));
  // block index = x + grid.x × (y + grid.y × z)
  std::vector<uint64_t> blocks(static_cast<size_t>(grid.x) * grid.y * grid.z);
  std::iota(blocks.begin(), blocks.end(), uint64_t{0});
  shuffle(ex.rng, blocks.data(), blocks.size());
  for (const uint64_t b : blocks) {
    const auto x = static_cast<unsigned>(b % grid.x);
    const auto y = static_cast<unsigned>(b / grid.x % grid.y);
    const auto z = static_cast<unsigned>(b / grid.x / grid.y);
    run_block(ex, uint3{x, y, z}, grid, block);
  }
}

uint64_t shuffle_seed() { return shuffle_seed_value.load(); }

void set_shuffle_seed(uint64_t seed) { shuffle_seed_value.store(seed); }

}  // namespace baton::cuda_emu
