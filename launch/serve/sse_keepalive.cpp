// sse_keepalive.hpp.
#include "launch/serve/sse_keepalive.hpp"

namespace baton {

sse_keepalive::sse_keepalive(std::chrono::milliseconds silence)
    : silence_(silence), thread_([this] { loop(); }) {}

sse_keepalive::~sse_keepalive() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void sse_keepalive::add(uint64_t id, std::shared_ptr<http::response> res) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_[id] = entry{std::move(res), std::chrono::steady_clock::now()};
}

void sse_keepalive::sent(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = streams_.find(id); it != streams_.end()) {
    it->second.last = std::chrono::steady_clock::now();
  }
}

void sse_keepalive::remove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(id);
}

void sse_keepalive::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, silence_ / 4, [&] { return stop_; })) {
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, e] : streams_) {
      if (now - e.last >= silence_) {
        e.res->chunk(": keep-alive\n\n");  // posted to the io thread: never blocks here
        e.last = now;
      }
    }
  }
}

}  // namespace baton
