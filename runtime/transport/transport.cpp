// transport.hpp: the mailbox both transports deliver into, and the in-process handoff.
#include "runtime/transport/transport.hpp"

namespace baton {

void mailbox::deliver(activations a) {
  const uint64_t step = a.header.step;
  const int32_t stage = a.header.stage;
  std::function<void(uint64_t)> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    box_[{step, stage}] = std::move(a);
    auto it = listeners_.find(stage);
    if (it != listeners_.end()) {
      listener = it->second;
    }
  }
  cv_.notify_all();
  if (listener) {
    listener(step);
  }
}

std::optional<activations> mailbox::take(uint64_t step, int32_t stage) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = box_.find({step, stage});
  if (it == box_.end()) {
    return std::nullopt;
  }
  activations out = std::move(it->second);
  box_.erase(it);
  return out;
}

std::optional<activations> mailbox::wait(uint64_t step, int32_t stage,
                                         std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto key = std::make_pair(step, stage);
  if (!cv_.wait_for(lock, timeout, [&] { return box_.count(key) != 0; })) {
    return std::nullopt;
  }
  activations out = std::move(box_[key]);
  box_.erase(key);
  return out;
}

void mailbox::on_arrival(int32_t stage, std::function<void(uint64_t)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_[stage] = std::move(fn);
}

void local_transport::send(activations a) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    bytes_ += a.hidden.size() * sizeof(float);
  }
  box_.deliver(std::move(a));
}

uint64_t local_transport::bytes_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace baton
