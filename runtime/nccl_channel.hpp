// NCCL between GPU stages: one communicator over the job's ranks (rank 0 makes the unique
// id, the launcher broadcasts it over MPI), and ncclSend / ncclRecv of device buffers on
// the stage's stream. NCCL cannot place two ranks on one GPU: stages of one process on
// one GPU hand activations over device to device instead, and on a one-GPU host a
// one-rank communicator sending to itself exercises this path (tests/nccl_test.cpp).
// Built only with BATON_CUDA and NCCL found (BATON_HAVE_NCCL); every call is checked
// and comes back as an error naming the call and NCCL's or CUDA's message.
#pragma once

#include <array>
#include <cstddef>
#include <memory>

#include "runtime/error.hpp"

namespace baton {

class nccl_channel {
 public:
  using unique_id = std::array<char, 128>;  // ncclUniqueId's bytes

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
  /// A send and a receive as one NCCL group (needed when a rank talks to itself).
  result<void> send_recv(const float* send_data, float* recv_data, size_t n, int send_peer,
                         int recv_peer, void* stream);

 private:
  nccl_channel() = default;

  // -- member variables -------------------------------------------------------
  void* comm_ = nullptr;  // ncclComm_t
  int device_ = 0;
};

}  // namespace baton
