// signals.hpp: the signal thread, and the handler and the listeners it runs (each guarded by its
// own mutex); a second signal, or one with no handler installed, ends the process with 128 + it.
#include "launch/job/signals.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

namespace baton::cli {

namespace {

std::atomic<bool> g_stop{false};
std::mutex g_mu;
std::function<void()> g_handler;
std::function<void()> g_reload;  // under g_mu
std::mutex g_listeners_mu;  // held while listeners run: removal waits for them
std::map<int, std::function<void()>> g_listeners;
int g_next_listener = 1;

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
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
      if (sig == SIGHUP) {
        std::function<void()> reload;
        {
          std::lock_guard<std::mutex> lock(g_mu);
          reload = g_reload;
        }
        if (!reload) {
          std::_Exit(128 + sig);  // no reload here: SIGHUP's default, the end
        }
        reload();
        continue;
      }
      const bool first = !g_stop.exchange(true);
      if (first) {
        std::lock_guard<std::mutex> lock(g_listeners_mu);
        for (auto& [id, listener] : g_listeners) {
          listener();
        }
      }
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

void on_reload_signal(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_reload = std::move(fn);
}

int add_stop_listener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(g_listeners_mu);
  const int id = g_next_listener++;
  g_listeners.emplace(id, std::move(fn));
  return id;
}

void remove_stop_listener(int id) {
  std::lock_guard<std::mutex> lock(g_listeners_mu);
  g_listeners.erase(id);
}

const std::atomic<bool>& stop_requested() { return g_stop; }

}  // namespace baton::cli
