// Activations between MPI ranks: a dedicated progress thread posts non-blocking
// sends (MPI_Isend) and matched receives (MPI_Improbe + MPI_Imrecv) on a private
// duplicate of MPI_COMM_WORLD, so several micro-batches are in flight at once and no
// MPI call ever blocks on a peer (a blocking call toward a dead rank never returns).
// Each message is [u32 header length][cereal header][floats]. Transfers between stages
// of this rank skip MPI and go through the mailbox directly.
//
// No busy waiting: the thread polls every ~50 µs only while a transfer is pending or a
// stage expects input; idle, every 1 ms for a second, then every 100 ms (a send or an
// expectation wakes it at once). An idle `baton serve` rank used 0.1 % of a core; Open
// MPI's own blocking calls would spin on the core a neighbour needs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/transport/device_link.hpp"
#include "runtime/transport/transport.hpp"

namespace baton {

/// Counters for benchmarks and the control-plane test.
struct transport_stats {
  uint64_t sends = 0;              ///< transfers to another rank
  uint64_t device_sends = 0;       ///< of those, floats sent device to device (--nccl)
  uint64_t recvs = 0;              ///< transfers from another rank
  uint64_t bytes_sent = 0;         ///< activation bytes sent to other ranks
  uint64_t bytes_received = 0;
  uint64_t kv_bytes_sent = 0;      ///< a reshard's KV rows sent to other ranks
  uint64_t kv_bytes_received = 0;
  double send_us = 0;              ///< sum of send() to completion, over all sends
  double recv_us = 0;              ///< sum of first sight to delivery, over all receives
  uint64_t errors = 0;             ///< failed MPI calls (a peer died)
};

class mpi_transport final : public transport {
 public:
  /// Needs MPI initialized (MPI_THREAD_MULTIPLE or SERIALIZED: only the progress thread
  /// calls MPI while it runs). `stage_ranks[s]` is the rank that runs stage s in epoch 0
  /// (set_route gives later epochs theirs).
  explicit mpi_transport(std::vector<int32_t> stage_ranks);
  /// The same, with activations left on a GPU (activations::on_device) sent device to
  /// device over `link` to the ranks it reaches: MPI carries only the header then.
  mpi_transport(std::vector<int32_t> stage_ranks, std::shared_ptr<device_link> link);
  /// Stops the progress thread; call before MPI_Finalize.
  ~mpi_transport() override;

  void send(activations a) override;
  void set_route(uint64_t epoch, std::vector<int32_t> stage_ranks) override;
  void retire_before(uint64_t epoch) override;
  uint64_t bytes_sent() const override;
  /// Input for stage `stage` is expected soon: poll fast until it comes.
  void expect(int32_t stage) override;
  void expect_done(int32_t stage) override;
  /// Stops waiting on `rank` (it died): its pending transfers are abandoned.
  void forget_peer(int32_t rank) override;
  transport_stats stats() const;
  /// Ends the progress thread (the destructor does it too); pending transfers are
  /// cancelled or abandoned.
  void stop();
  /// stop() found transfers that could not finish: a peer is gone, do not finalize MPI.
  bool abandoned() const;
  int32_t rank() const override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace baton
