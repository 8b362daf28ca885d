// transport.hpp: the mailbox both transports deliver into, and the in-process handoff.
#include "runtime/transport/transport.hpp"

#include <algorithm>

namespace baton {

void mailbox::deliver(activations a) {
  const uint64_t epoch = a.header.epoch;
  const uint64_t step = a.header.step;
  const int32_t stage = a.header.stage;
  std::function<void(uint64_t)> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (epoch < oldest_) {
      return;  // a straggler of a pipeline that is gone
    }
    if (a.header.kind == payload_kind::kv_rows) {
      kv_[{epoch, a.header.layer}] = std::move(a);
    } else {
      box_[key{epoch, step, stage}] = std::move(a);
      auto it = listeners_.find({epoch, stage});
      if (it != listeners_.end()) {
        listener = it->second;
      }
    }
  }
  cv_.notify_all();
  if (listener) {
    listener(step);
  }
}

std::optional<activations> mailbox::take(uint64_t epoch, uint64_t step, int32_t stage) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = box_.find(key{epoch, step, stage});
  if (it == box_.end()) {
    return std::nullopt;
  }
  activations out = std::move(it->second);
  box_.erase(it);
  return out;
}

std::optional<activations> mailbox::wait(uint64_t epoch, uint64_t step, int32_t stage,
                                         std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const key k{epoch, step, stage};
  if (!cv_.wait_for(lock, timeout, [&] { return box_.count(k) != 0; })) {
    return std::nullopt;
  }
  activations out = std::move(box_[k]);
  box_.erase(k);
  return out;
}

std::optional<activations> mailbox::wait_kv(uint64_t epoch, int64_t layer,
                                            std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto k = std::make_pair(epoch, layer);
  if (!cv_.wait_for(lock, timeout, [&] { return kv_.count(k) != 0; })) {
    return std::nullopt;
  }
  activations out = std::move(kv_[k]);
  kv_.erase(k);
  return out;
}

void mailbox::on_arrival(uint64_t epoch, int32_t stage, std::function<void(uint64_t)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_[{epoch, stage}] = std::move(fn);
}

void mailbox::retire_before(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  oldest_ = std::max(oldest_, epoch);
  std::erase_if(box_, [&](const auto& e) { return std::get<0>(e.first) < oldest_; });
  std::erase_if(kv_, [&](const auto& e) { return e.first.first < oldest_; });
  std::erase_if(listeners_, [&](const auto& e) { return e.first.first < oldest_; });
}

void local_transport::send(activations a) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    bytes_ += a.hidden.size() * sizeof(float) + a.bytes.size();
  }
  box_.deliver(std::move(a));
}

uint64_t local_transport::bytes_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace baton
