// thread_pool.hpp: a generation counter announces each job; workers spin on it for a
// short while (a decode step issues hundreds of small jobs back to back) and then
// block in atomic::wait, so an idle pool sleeps.
#include "kernels/cpu/thread_pool.hpp"

#include <algorithm>


namespace baton::cpu {

namespace {

constexpr int spin_iterations = 1 << 20;  // ~1 ms of loads before sleeping

inline void cpu_relax() {
  // a compiler barrier only: see the header on PAUSE
  asm volatile("" ::: "memory");
}

}  // namespace

thread_pool::thread_pool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) {
    workers_.emplace_back([this, i] { worker(i); });
  }
}

thread_pool::~thread_pool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : workers_) {
    t.join();
  }
}

void thread_pool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  fn(0, n_threads_);
  while (pending_.load(std::memory_order_acquire) != 0) {
    cpu_relax();
  }
}

void thread_pool::worker(int ith) {
  int seen = 0;
  for (;;) {
    int g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < spin_iterations; ++spin) {
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) {
      return;
    }
    (*job_)(ith, n_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

std::pair<int64_t, int64_t> thread_pool::split(int64_t n, int ith, int n_threads, int64_t align) {
  const int64_t units = (n + align - 1) / align;
  const int64_t per = units / n_threads;
  const int64_t rest = units % n_threads;
  const int64_t b = ith * per + std::min<int64_t>(ith, rest);
  const int64_t e = b + per + (ith < rest ? 1 : 0);
  return {std::min(n, b * align), std::min(n, e * align)};
}

}  // namespace baton::cpu
