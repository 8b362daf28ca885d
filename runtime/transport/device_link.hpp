// Moves activations between GPU stages of different ranks from device memory to device
// memory (NCCL; runtime/transport/nccl_channel), while mpi_transport carries the step header: the
// header says the floats travel apart, and the receiver posts the matching receive when
// the header arrives. Every call comes from mpi_transport's progress thread, in the order
// the headers go out and come in — the order NCCL matches a pair's sends and receives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/system/error.hpp"

namespace baton {

class device_link {
 public:
  /// One transfer under way; `data` lives (and stays valid for the receiver) until done.
  struct transfer {
    virtual ~transfer() = default;
    /// Whether it has completed; an error when the device or the peer failed.
    virtual result<bool> done() = 0;
    std::shared_ptr<float> data;  ///< device memory of device()
  };

  virtual ~device_link() = default;
  /// The CUDA device this rank's link lives on.
  virtual int device() const = 0;
  /// Whether job rank `rank` is part of the link (runs a GPU stage on it).
  virtual bool reaches(int32_t rank) const = 0;
  /// Starts sending `n` floats at `data` (device memory of device()) to job rank `peer`.
  virtual result<std::unique_ptr<transfer>> send(std::shared_ptr<float> data, size_t n,
                                                 int32_t peer) = 0;
  /// Starts receiving `n` floats from job rank `peer` into fresh device memory.
  virtual result<std::unique_ptr<transfer>> recv(size_t n, int32_t peer) = 0;
  /// Gives up on every transfer under way, without waiting for them (a transfer failed,
  /// so the pairing of sends and receives can no longer be trusted; or shutdown with
  /// transfers pending). The link takes no more transfers.
  virtual void abort() = 0;
};

}  // namespace baton
