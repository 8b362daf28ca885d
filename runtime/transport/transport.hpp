// The data plane between pipeline stages: activations [n_tokens, n_embd] go from stage i
// to stage i + 1 matched by (step, stage), never inside CAF messages. Every transfer
// carries a step header (step id, receiving stage, shapes, the rows of each sequence),
// serialized with cereal's binary archive where it crosses a process. Arrivals are
// announced through a callback, so a shard never blocks waiting for its input: it runs
// a step once both the router's descriptor and the activations are there.
// `local_transport` hands buffers over in memory between stages of one process;
// `mpi_transport` (mpi_transport.hpp) moves them between ranks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace baton {

/// What travels ahead of the floats; the receiving stage checks it against its step.
struct activation_header {
  uint64_t step = 0;
  int32_t stage = 0;                 ///< the receiving stage
  int32_t n_tokens = 0;
  int32_t n_embd = 0;
  std::vector<uint64_t> seq_ids;     ///< the step's sequences, in batch order
  std::vector<int32_t> seq_rows;     ///< tokens of each sequence
  /// The floats follow device to device (mpi_transport's device_link), not in this message.
  bool floats_on_device = false;
  /// Set when the floats cannot come (the device link broke): the step fails with it.
  std::string error;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(step, stage, n_tokens, n_embd, seq_ids, seq_rows, floats_on_device, error);
  }
};

struct activations {
  activation_header header;
  std::vector<float> hidden;         // [n_tokens, n_embd]
  /// Between GPU stages of one process: the same floats left on CUDA device `device`
  /// (hidden is then empty). Handed over in memory only; never serialized.
  std::shared_ptr<float> on_device;
  int32_t device = -1;
};

/// Arrived transfers keyed by (step, stage), with a listener per stage; thread-safe.
class mailbox {
 public:
  void deliver(activations a);
  /// The transfer for (step, stage) if it is here; never waits.
  std::optional<activations> take(uint64_t step, int32_t stage);
  /// Waits up to `timeout` for (step, stage).
  std::optional<activations> wait(uint64_t step, int32_t stage, std::chrono::milliseconds timeout);
  /// `fn(step)` runs on the delivering thread after each arrival for `stage`.
  void on_arrival(int32_t stage, std::function<void(uint64_t)> fn);

 private:
  // -- member variables -------------------------------------------------------
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<uint64_t, int32_t>, activations> box_;
  std::map<int32_t, std::function<void(uint64_t)>> listeners_;
};

class transport {
 public:
  virtual ~transport() = default;
  /// Hands `a` to stage `a.header.stage`.
  virtual void send(activations a) = 0;
  /// The transfer for (step, stage) if it has arrived; never waits.
  std::optional<activations> take(uint64_t step, int32_t stage) { return box_.take(step, stage); }
  /// Waits up to `timeout` for (step, stage) (tests; shards use on_arrival + take).
  std::optional<activations> recv(uint64_t step, int32_t stage, std::chrono::milliseconds timeout) {
    return box_.wait(step, stage, timeout);
  }
  /// `fn(step)` is called (on some transport thread) whenever input for `stage` arrives.
  void on_arrival(int32_t stage, std::function<void(uint64_t)> fn) {
    box_.on_arrival(stage, std::move(fn));
  }
  /// Input for `stage` is expected soon (a transport that polls may poll faster).
  virtual void expect(int32_t /*stage*/) {}
  /// The expected input turned out to be here already.
  virtual void expect_done(int32_t /*stage*/) {}
  /// Bytes of activations this process sent to another stage.
  virtual uint64_t bytes_sent() const = 0;

 protected:
  // -- member variables -------------------------------------------------------
  mailbox box_;
};

/// In-process handoff: the sender's buffer moves into the receiver's mailbox.
class local_transport final : public transport {
 public:
  void send(activations a) override;
  uint64_t bytes_sent() const override;

 private:
  // -- member variables -------------------------------------------------------
  mutable std::mutex mu_;
  uint64_t bytes_ = 0;
};

}  // namespace baton
