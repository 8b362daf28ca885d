// nccl_channel.hpp.
#include "runtime/nccl_channel.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

namespace baton {

namespace {

result<void> check_nccl(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) {
    return make_error("%s failed: %s", call, ncclGetErrorString(r));
  }
  return {};
}

result<void> check_cuda(cudaError_t r, const char* call) {
  if (r != cudaSuccess) {
    return make_error("%s failed: %s", call, cudaGetErrorString(r));
  }
  return {};
}

ncclComm_t as_comm(void* p) { return static_cast<ncclComm_t>(p); }

}  // namespace

result<nccl_channel::unique_id> nccl_channel::make_id() {
  ncclUniqueId id;
  if (auto ok = check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); !ok) {
    return ok.err();
  }
  static_assert(sizeof(id.internal) == sizeof(unique_id));
  unique_id out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

result<std::unique_ptr<nccl_channel>> nccl_channel::create(const unique_id& id, int rank,
                                                           int world, int device) {
  if (auto ok = check_cuda(cudaSetDevice(device), "cudaSetDevice"); !ok) {
    return ok.err();
  }
  ncclUniqueId nid;
  std::memcpy(nid.internal, id.data(), id.size());
  ncclComm_t comm = nullptr;
  if (auto ok = check_nccl(ncclCommInitRank(&comm, world, nid, rank), "ncclCommInitRank"); !ok) {
    return ok.err();
  }
  std::unique_ptr<nccl_channel> ch(new nccl_channel());
  ch->comm_ = comm;
  ch->device_ = device;
  return ch;
}

nccl_channel::~nccl_channel() {
  if (comm_ != nullptr) {
    ncclCommDestroy(as_comm(comm_));
  }
}

result<void> nccl_channel::send(const float* data, size_t n, int peer, void* stream) {
  return check_nccl(ncclSend(data, n, ncclFloat32, peer, as_comm(comm_),
                             static_cast<cudaStream_t>(stream)),
                    "ncclSend");
}

result<void> nccl_channel::recv(float* data, size_t n, int peer, void* stream) {
  return check_nccl(ncclRecv(data, n, ncclFloat32, peer, as_comm(comm_),
                             static_cast<cudaStream_t>(stream)),
                    "ncclRecv");
}

result<void> nccl_channel::send_recv(const float* send_data, float* recv_data, size_t n,
                                     int send_peer, int recv_peer, void* stream) {
  if (auto ok = check_nccl(ncclGroupStart(), "ncclGroupStart"); !ok) {
    return ok;
  }
  auto s = send(send_data, n, send_peer, stream);
  auto r = recv(recv_data, n, recv_peer, stream);
  auto e = check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  if (!s) {
    return s;
  }
  if (!r) {
    return r;
  }
  return e;
}

}  // namespace baton
