// The data plane between pipeline stages: activations [n_tokens, n_embd] go from stage i
// to stage i + 1 matched by (epoch, step, stage), never inside CAF messages. Every
// transfer carries a step header (the pipeline's epoch, step id, receiving stage, shapes,
// the rows of each sequence), serialized with cereal's binary archive where it crosses a
// process. A reshard's KV rows travel the same way as a second kind of message, addressed
// to a rank and keyed by (epoch, layer). The epoch numbers the pipeline's shapes: a
// stage index means another rank in another epoch, and what an older epoch left behind
// is dropped once the transport retires it. Arrivals are
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
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/system/huge_pages.hpp"

namespace baton {

/// What a message carries.
enum class payload_kind : uint8_t {
  activations = 0,  ///< a step's hidden rows for the next stage
  kv_rows = 1,      ///< one layer's KV rows for a reshard (activations::bytes)
};

/// What travels ahead of the floats; the receiving stage checks it against its step.
struct activation_header {
  uint64_t epoch = 0;                ///< the pipeline's shape the step belongs to
  payload_kind kind = payload_kind::activations;
  int32_t to_rank = -1;              ///< kv_rows: the receiving rank; else set by the transport
  /// kv_rows messages' `stage`: what a rank waiting for KV rows expect()s.
  static constexpr int32_t kv_stage = -1;
  int64_t layer = -1;                ///< kv_rows: the layer
  uint64_t n_bytes = 0;              ///< kv_rows: bytes that follow
  uint64_t step = 0;
  int32_t stage = 0;                 ///< the receiving stage
  int32_t n_tokens = 0;
  int32_t n_embd = 0;
  std::vector<uint64_t> seq_ids;     ///< the step's sequences, in batch order
  std::vector<int32_t> seq_rows;     ///< tokens of each sequence
  /// The floats follow device to device (mpi_transport's device_link), not in this message.
  bool floats_on_device = false;
  /// Set when the floats cannot come: the step fails with it. A stage that failed the
  /// step sends it on too, in the activations' place.
  std::string error;
  /// The error is the sender's device link failing: the receiver closes its end too.
  bool link_failed = false;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(epoch, kind, to_rank, layer, n_bytes, step, stage, n_tokens, n_embd, seq_ids, seq_rows,
       floats_on_device, error, link_failed);
  }
};

struct activations {
  activation_header header;
  std::vector<float> hidden;         // [n_tokens, n_embd]
  /// Between GPU stages of one process: the same floats left on CUDA device `device`
  /// (hidden is then empty). Handed over in memory only; never serialized.
  std::shared_ptr<float> on_device;
  int32_t device = -1;
  byte_buffer bytes;                 ///< kv_rows: the rows (stage_compute::export_kv's)
};

/// Arrived transfers keyed by (epoch, step, stage), with a listener per (epoch, stage),
/// and arrived KV rows keyed by (epoch, layer); thread-safe.
class mailbox {
 public:
  /// Keeps `a` for its taker; dropped when its epoch is retired.
  void deliver(activations a);
  /// The transfer for (epoch, step, stage) if it is here; never waits.
  std::optional<activations> take(uint64_t epoch, uint64_t step, int32_t stage);
  /// Waits up to `timeout` for (epoch, step, stage).
  std::optional<activations> wait(uint64_t epoch, uint64_t step, int32_t stage,
                                  std::chrono::milliseconds timeout);
  /// Waits up to `timeout` for the KV rows of (epoch, layer).
  std::optional<activations> wait_kv(uint64_t epoch, int64_t layer,
                                     std::chrono::milliseconds timeout);
  /// `fn(step)` runs on the delivering thread after each arrival for (epoch, stage).
  void on_arrival(uint64_t epoch, int32_t stage, std::function<void(uint64_t)> fn);
  /// Drops every transfer, KV message and listener of epochs before `epoch`, and any
  /// that arrive for them later.
  void retire_before(uint64_t epoch);

 private:
  using key = std::tuple<uint64_t, uint64_t, int32_t>;  // epoch, step, stage
  // -- member variables -------------------------------------------------------
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t oldest_ = 0;  ///< epochs before it are retired
  std::map<key, activations> box_;
  std::map<std::pair<uint64_t, int64_t>, activations> kv_;  // (epoch, layer)
  std::map<std::pair<uint64_t, int32_t>, std::function<void(uint64_t)>> listeners_;
};

class transport {
 public:
  virtual ~transport() = default;
  /// Hands `a` to stage `a.header.stage` of epoch `a.header.epoch`, or (kv_rows) to rank
  /// `a.header.to_rank`.
  virtual void send(activations a) = 0;
  /// Stage s of `epoch` runs on rank `stage_ranks[s]` (a transport within one process
  /// has nothing to route). Set before that epoch's first transfer.
  virtual void set_route(uint64_t /*epoch*/, std::vector<int32_t> /*stage_ranks*/) {}
  /// Forgets epochs before `epoch`: their routes, transfers and listeners.
  virtual void retire_before(uint64_t epoch) { box_.retire_before(epoch); }
  /// Rank `rank` is gone (dead, or fenced out of the job): what is under way with it is
  /// abandoned, and nothing is sent to it or taken from it again.
  virtual void forget_peer(int32_t /*rank*/) {}
  /// This process's rank (0 within one process).
  virtual int32_t rank() const { return 0; }
  /// The transfer for (epoch, step, stage) if it has arrived; never waits.
  std::optional<activations> take(uint64_t epoch, uint64_t step, int32_t stage) {
    return box_.take(epoch, step, stage);
  }
  /// Waits up to `timeout` for (step, stage) of epoch 0 (tests; shards use on_arrival +
  /// take).
  std::optional<activations> recv(uint64_t step, int32_t stage, std::chrono::milliseconds timeout) {
    return box_.wait(0, step, stage, timeout);
  }
  /// Waits up to `timeout` for the KV rows of `layer` in `epoch`.
  std::optional<activations> recv_kv(uint64_t epoch, int64_t layer,
                                     std::chrono::milliseconds timeout) {
    return box_.wait_kv(epoch, layer, timeout);
  }
  /// `fn(step)` is called (on some transport thread) whenever input for `stage` of
  /// `epoch` arrives.
  void on_arrival(uint64_t epoch, int32_t stage, std::function<void(uint64_t)> fn) {
    box_.on_arrival(epoch, stage, std::move(fn));
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
