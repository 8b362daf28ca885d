// signals.hpp.
#include "launch/signals.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <mutex>
#include <thread>

namespace baton::cli {

namespace {

std::atomic<bool> g_stop{false};
std::mutex g_mu;
std::function<void()> g_handler;

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void start_signal_thread() {
  sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) {
        continue;
      }
      const bool first = !g_stop.exchange(true);
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(g_mu);
        fn = g_handler;
      }
      if (!fn || !first) {
        std::_Exit(128 + sig);  // nothing to stop cleanly, or asked twice
      }
      fn();
    }
  }).detach();
}

void on_stop_signal(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_handler = std::move(fn);
}

const std::atomic<bool>& stop_requested() { return g_stop; }

}  // namespace baton::cli
