// The data plane between pipeline stages: activations [n_tokens, n_embd] go from stage i
// to stage i + 1 matched by (step, stage), never inside CAF messages. This is the
// interface; `local_transport` hands buffers over in memory between stages of one
// process (MPI and NCCL implementations come with the distributed pipeline).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace baton {

class transport {
 public:
  virtual ~transport() = default;
  /// Hands `hidden` to stage `to_stage` for step `step`.
  virtual void send(uint64_t step, int to_stage, std::vector<float> hidden) = 0;
  /// The activations for (step, stage); waits up to `timeout`, nothing if they did not come.
  virtual std::optional<std::vector<float>> recv(uint64_t step, int stage,
                                                 std::chrono::milliseconds timeout) = 0;
  /// Bytes handed over so far (data plane accounting).
  virtual uint64_t bytes_moved() const = 0;
};

/// In-process handoff: a mailbox keyed by (step, stage).
class local_transport final : public transport {
 public:
  void send(uint64_t step, int to_stage, std::vector<float> hidden) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes_ += hidden.size() * sizeof(float);
      box_[{step, to_stage}] = std::move(hidden);
    }
    cv_.notify_all();
  }

  std::optional<std::vector<float>> recv(uint64_t step, int stage,
                                         std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const auto key = std::make_pair(step, stage);
    if (!cv_.wait_for(lock, timeout, [&] { return box_.count(key) != 0; })) {
      return std::nullopt;
    }
    auto out = std::move(box_[key]);
    box_.erase(key);
    return out;
  }

  uint64_t bytes_moved() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }

 private:
  // -- member variables -------------------------------------------------------
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<uint64_t, int>, std::vector<float>> box_;
  uint64_t bytes_ = 0;
};

}  // namespace baton
