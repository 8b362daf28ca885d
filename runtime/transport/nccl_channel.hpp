// NCCL between GPU stages: one communicator over the job's ranks (rank 0 makes the unique
// id, the launcher broadcasts it over MPI), and ncclSend / ncclRecv of device buffers on
// the stage's stream. NCCL cannot place two ranks on one GPU: stages of one process on
// one GPU hand activations over device to device instead, and on a one-GPU host a
// one-rank communicator sending to itself exercises this path (tests/nccl_test.cpp).
// Built only with BATON_CUDA and nccl.h found (BATON_HAVE_NCCL); libnccl.so.2 is opened
// when first needed. Every call is checked and comes back as an error naming the call
// and NCCL's or CUDA's message.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/transport/device_link.hpp"
#include "runtime/system/error.hpp"

namespace baton {

class nccl_channel {
 public:
  using unique_id = std::array<char, 128>;  // ncclUniqueId's bytes

  /// Whether libnccl can be loaded here (the error says why not).
  static result<void> available();
  /// A fresh id; rank 0 makes it, every rank passes the same one to create().
  static result<unique_id> make_id();
  /// Joins the communicator of `world` ranks as `rank`, on CUDA device `device`.
  static result<std::unique_ptr<nccl_channel>> create(const unique_id& id, int rank, int world,
                                                      int device);
  ~nccl_channel();

  /// Sends `n` floats at device pointer `data` to `peer` on `stream` (a cudaStream_t).
  result<void> send(const float* data, size_t n, int peer, void* stream);
  /// Receives `n` floats from `peer` into device pointer `data` on `stream`.
  result<void> recv(float* data, size_t n, int peer, void* stream);
  /// Ends the communicator without waiting for its pending operations (they fail).
  void abort();
  /// An error NCCL found asynchronously (a peer or the network failed), or nothing.
  result<void> async_error() const;
  /// A send and a receive as one NCCL group (needed when a rank talks to itself).
  result<void> send_recv(const float* send_data, float* recv_data, size_t n, int send_peer,
                         int recv_peer, void* stream);

 private:
  nccl_channel() = default;

  // -- member variables -------------------------------------------------------
  void* comm_ = nullptr;  // ncclComm_t
  int device_ = 0;
};

struct nccl_transfer;

/// device_link over NCCL: one communicator over the ranks that run GPU stages (`members`,
/// job ranks; their order is the communicator's), one stream on this rank's device, and
/// one event per transfer to poll it. Received floats land in fresh device memory from
/// the stream-ordered pool, freed when the consuming stage lets go.
class nccl_link final : public device_link {
 public:
  static result<std::unique_ptr<nccl_link>> create(const nccl_channel::unique_id& id,
                                                   std::vector<int32_t> members, int32_t rank,
                                                   int device);
  ~nccl_link() override;

  int device() const override { return device_; }
  bool reaches(int32_t rank) const override;
  result<std::unique_ptr<transfer>> send(std::shared_ptr<float> data, size_t n,
                                         int32_t peer) override;
  result<std::unique_ptr<transfer>> recv(size_t n, int32_t peer) override;
  void abort() override;

 private:
  nccl_link(std::unique_ptr<nccl_channel> ch, std::vector<int32_t> members, int device);
  int peer_index(int32_t rank) const;
  result<std::unique_ptr<nccl_transfer>> new_transfer();
  result<std::unique_ptr<transfer>> posted(std::unique_ptr<nccl_transfer> t,
                                           result<void> post);

  // -- member variables -------------------------------------------------------
  std::unique_ptr<nccl_channel> ch_;
  std::vector<int32_t> members_;
  int device_;
  void* stream_ = nullptr;  // cudaStream_t
  bool aborted_ = false;
};

}  // namespace baton
