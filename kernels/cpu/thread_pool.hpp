// One persistent pool of worker threads for the CPU kernels. `run(n, fn)` calls
// fn(i, n) for every i in [0, n) across the workers and the calling thread and returns
// when all are done; i is the caller's share (callers split work by output rows, never
// along a reduced dimension, so results do not depend on the thread count). Workers
// spin briefly for the next job, then sleep on a futex (std::atomic::wait): an idle
// pool costs no CPU.
//
// The spin uses plain loads, no PAUSE: inside a VM a PAUSE loop can exit to the
// hypervisor, and a decode step has ~250 jobs, so every microsecond of wake-up counts.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace baton::cpu {

/// The most threads a pool may be asked for (a flag asking for more is refused).
inline constexpr int k_max_threads = 512;

class thread_pool {
 public:
  /// A pool of `n_threads` including the caller (n_threads - 1 workers).
  explicit thread_pool(int n_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int n_threads() const { return n_threads_; }

  /// fn(i, n_threads) for i in [0, n_threads); i == 0 runs on the caller.
  void run(const std::function<void(int, int)>& fn);

  /// Splits [0, n) into n_threads contiguous parts; part i of thread `ith`, aligned
  /// to `align` elements (the last part takes the rest).
  static std::pair<int64_t, int64_t> split(int64_t n, int ith, int n_threads, int64_t align = 1);

 private:
  void worker(int ith);

  // -- member variables -------------------------------------------------------
  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<int> generation_{0};  // int: atomic::wait is a plain futex on it
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace baton::cpu
