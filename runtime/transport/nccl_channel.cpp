// nccl_channel.hpp. libnccl is opened at run time (dlopen), not linked: the binary runs
// on hosts without NCCL (CPU-only jobs, one-process GPU jobs), and only a job that asks
// for NCCL needs it, with an error naming the library when it is missing.
#include "runtime/transport/nccl_channel.hpp"

#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "kernels/cuda/portability.cuh"
#include "runtime/compute/pooled_floats.hpp"

namespace baton {

namespace {

/// The NCCL entry points baton calls, resolved once from libnccl.so.2.
struct nccl_api {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  decltype(&ncclCommAbort) comm_abort = nullptr;
  decltype(&ncclCommGetAsyncError) async_error = nullptr;
};

/// The API, or the reason it cannot be had ($BATON_NCCL_LIBRARY, else libnccl.so.2 on
/// the loader's path).
result<const nccl_api*> api() {
  static std::once_flag once;
  static nccl_api a;
  static std::string why;
  std::call_once(once, [] {
    const char* env = std::getenv("BATON_NCCL_LIBRARY");
    const std::string name = env && *env ? env : "libnccl.so.2";
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* e = dlerror();
      why = "NCCL is not available: " + std::string(e ? e : name) +
            " (install NCCL or set BATON_NCCL_LIBRARY to libnccl.so.2)";
      return;
    }
    auto sym = [&](auto& fn, const char* s) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, s));
      if (fn == nullptr && why.empty()) {
        why = name + ": no symbol " + s;
      }
    };
    sym(a.get_unique_id, "ncclGetUniqueId");
    sym(a.comm_init_rank, "ncclCommInitRank");
    sym(a.comm_destroy, "ncclCommDestroy");
    sym(a.send, "ncclSend");
    sym(a.recv, "ncclRecv");
    sym(a.group_start, "ncclGroupStart");
    sym(a.group_end, "ncclGroupEnd");
    sym(a.error_string, "ncclGetErrorString");
    sym(a.comm_abort, "ncclCommAbort");
    sym(a.async_error, "ncclCommGetAsyncError");
  });
  if (!why.empty()) {
    return make_error("%s", why.c_str());
  }
  return &a;
}

result<void> check_nccl(const nccl_api& a, ncclResult_t r, const char* call) {
  if (r != ncclSuccess) {
    return make_error("%s failed: %s", call, a.error_string(r));
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

result<void> nccl_channel::available() {
  auto a = api();
  if (!a) {
    return a.err();
  }
  return {};
}

result<nccl_channel::unique_id> nccl_channel::make_id() {
  auto a = api();
  if (!a) {
    return a.err();
  }
  ncclUniqueId id;
  if (auto ok = check_nccl(**a, (*a)->get_unique_id(&id), "ncclGetUniqueId"); !ok) {
    return ok.err();
  }
  static_assert(sizeof(id.internal) == sizeof(unique_id));
  unique_id out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

result<std::unique_ptr<nccl_channel>> nccl_channel::create(const unique_id& id, int rank,
                                                           int world, int device) {
  auto a = api();
  if (!a) {
    return a.err();
  }
  if (auto ok = check_cuda(cudaSetDevice(device), "cudaSetDevice"); !ok) {
    return ok.err();
  }
  ncclUniqueId nid;
  std::memcpy(nid.internal, id.data(), id.size());
  ncclComm_t comm = nullptr;
  if (auto ok = check_nccl(**a, (*a)->comm_init_rank(&comm, world, nid, rank), "ncclCommInitRank");
      !ok) {
    return ok.err();
  }
  std::unique_ptr<nccl_channel> ch(new nccl_channel());
  ch->comm_ = comm;
  ch->device_ = device;
  return ch;
}

nccl_channel::~nccl_channel() {
  if (comm_ != nullptr) {
    (*api())->comm_destroy(as_comm(comm_));  // a channel exists only where api() worked
  }
}

void nccl_channel::abort() {
  if (comm_ != nullptr) {
    (*api())->comm_abort(as_comm(comm_));  // ends pending operations; does not wait
    comm_ = nullptr;
  }
}

result<void> nccl_channel::async_error() const {
  if (comm_ == nullptr) {
    return make_error("the NCCL communicator was aborted");
  }
  const nccl_api& a = **api();
  ncclResult_t r = ncclSuccess;
  if (auto ok = check_nccl(a, a.async_error(as_comm(comm_), &r), "ncclCommGetAsyncError"); !ok) {
    return ok;
  }
  if (r != ncclSuccess && r != ncclInProgress) {
    return make_error("NCCL: %s", a.error_string(r));
  }
  return {};
}

result<void> nccl_channel::send(const float* data, size_t n, int peer, void* stream) {
  const nccl_api& a = **api();
  return check_nccl(a, a.send(data, n, ncclFloat32, peer, as_comm(comm_),
                              static_cast<cudaStream_t>(stream)),
                    "ncclSend");
}

result<void> nccl_channel::recv(float* data, size_t n, int peer, void* stream) {
  const nccl_api& a = **api();
  return check_nccl(a, a.recv(data, n, ncclFloat32, peer, as_comm(comm_),
                              static_cast<cudaStream_t>(stream)),
                    "ncclRecv");
}

result<void> nccl_channel::send_recv(const float* send_data, float* recv_data, size_t n,
                                     int send_peer, int recv_peer, void* stream) {
  const nccl_api& a = **api();
  if (auto ok = check_nccl(a, a.group_start(), "ncclGroupStart"); !ok) {
    return ok;
  }
  auto s = send(send_data, n, send_peer, stream);
  auto r = recv(recv_data, n, recv_peer, stream);
  auto e = check_nccl(a, a.group_end(), "ncclGroupEnd");
  if (!s) {
    return s;
  }
  if (!r) {
    return r;
  }
  return e;
}

// -- nccl_link ----------------------------------------------------------------------

/// A transfer on the link's stream: done when the event recorded after it has passed.
struct nccl_transfer final : device_link::transfer {
  cudaEvent_t event = nullptr;
  int device = 0;
  const nccl_channel* channel = nullptr;  // the link's; it outlives its transfers
  ~nccl_transfer() override {
    if (event != nullptr) {
      cudaEventDestroy(event);
    }
  }
  result<bool> done() override {
    cudaSetDevice(device);
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaErrorNotReady) {
      // a peer or network failure shows here, never in the event: without this check
      // the transfer would wait forever
      if (auto ok = channel->async_error(); !ok) {
        return ok.err();
      }
      return false;
    }
    if (auto ok = check_cuda(e, "an NCCL transfer"); !ok) {
      return ok.err();
    }
    return true;
  }
};

nccl_link::nccl_link(std::unique_ptr<nccl_channel> ch, std::vector<int32_t> members, int device)
    : ch_(std::move(ch)), members_(std::move(members)), device_(device) {}

nccl_link::~nccl_link() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) {
    if (!aborted_) {
      cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    }
    cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  }
  cudaGetLastError();
}

void nccl_link::abort() {
  aborted_ = true;
  ch_->abort();
}

result<std::unique_ptr<nccl_link>> nccl_link::create(const nccl_channel::unique_id& id,
                                                     std::vector<int32_t> members,
                                                     int32_t rank, int device) {
  int index = -1;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == rank) {
      index = static_cast<int>(i);
    }
  }
  if (index < 0) {
    return make_error("rank %d is not a member of the NCCL link", rank);
  }
  auto ch = nccl_channel::create(id, index, static_cast<int>(members.size()), device);
  if (!ch) {
    return ch.err();
  }
  std::unique_ptr<nccl_link> l(new nccl_link(std::move(*ch), std::move(members), device));
  cudaStream_t s = nullptr;
  if (auto ok = check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
                           "cudaStreamCreate");
      !ok) {
    return ok.err();
  }
  l->stream_ = s;
  // NCCL connects a pair on its first transfer, blocking the caller until the peer joins
  // and allocating buffers then: do it now, in a chain over the members (each receives
  // from the one before, sends to the one after, as one group), before the stages take
  // the device's memory and before the transport's thread would block on it
  void* one = nullptr;
  if (auto ok = check_cuda(cudaMalloc(&one, 2 * sizeof(float)), "cudaMalloc"); !ok) {
    return ok.err();
  }
  // zeroed on the link's own stream: a non-blocking stream is not ordered after the
  // default stream's cudaMemset
  cudaMemsetAsync(one, 0, 2 * sizeof(float), s);
  const int world = static_cast<int>(l->members_.size());
  const nccl_api& a = **api();
  auto warm = [&]() -> result<void> {
    if (auto ok = check_nccl(a, a.group_start(), "ncclGroupStart"); !ok) {
      return ok;
    }
    result<void> posted;
    if (index + 1 < world) {
      posted = l->ch_->send(static_cast<float*>(one), 1, index + 1, s);
    }
    if (posted && index > 0) {
      posted = l->ch_->recv(static_cast<float*>(one) + 1, 1, index - 1, s);
    }
    auto ended = check_nccl(a, a.group_end(), "ncclGroupEnd");
    if (!posted) {
      return posted;
    }
    if (!ended) {
      return ended;
    }
    return check_cuda(cudaStreamSynchronize(s), "the NCCL warm-up");
  };
  auto warmed = warm();
  if (!warmed) {
    l->abort();  // ends a transfer still posted on `one` before it is freed
  }
  cudaFree(one);
  if (!warmed) {
    return warmed.err();
  }
  return l;
}

bool nccl_link::reaches(int32_t rank) const {
  for (int32_t m : members_) {
    if (m == rank) {
      return true;
    }
  }
  return false;
}

int nccl_link::peer_index(int32_t rank) const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i] == rank) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

result<std::unique_ptr<nccl_transfer>> nccl_link::new_transfer() {
  if (aborted_) {
    return make_error("the device link was aborted");
  }
  cudaSetDevice(device_);
  auto t = std::make_unique<nccl_transfer>();
  t->device = device_;
  t->channel = ch_.get();
  // made before anything is posted: once NCCL owns a buffer, no error may drop it
  if (auto ok = check_cuda(cudaEventCreateWithFlags(&t->event, cudaEventDisableTiming),
                           "cudaEventCreate");
      !ok) {
    return ok.err();
  }
  return t;
}

result<std::unique_ptr<device_link::transfer>> nccl_link::posted(
    std::unique_ptr<nccl_transfer> t, result<void> post) {
  if (!post) {
    return post.err();
  }
  const auto stream = static_cast<cudaStream_t>(stream_);
  if (auto ok = check_cuda(cudaEventRecord(t->event, stream), "cudaEventRecord"); !ok) {
    // NCCL may still use the buffer: wait for the stream before it can be freed
    cudaStreamSynchronize(stream);
    return ok.err();
  }
  return std::unique_ptr<device_link::transfer>(std::move(t));
}

result<std::unique_ptr<device_link::transfer>> nccl_link::send(std::shared_ptr<float> data,
                                                               size_t n, int32_t peer) {
  const int p = peer_index(peer);
  if (p < 0) {
    return make_error("rank %d is not on the NCCL link", peer);
  }
  auto t = new_transfer();
  if (!t) {
    return t.err();
  }
  (*t)->data = std::move(data);
  auto post = ch_->send((*t)->data.get(), n, p, stream_);
  return posted(std::move(*t), std::move(post));
}

result<std::unique_ptr<device_link::transfer>> nccl_link::recv(size_t n, int32_t peer) {
  const int p = peer_index(peer);
  if (p < 0) {
    return make_error("rank %d is not on the NCCL link", peer);
  }
  auto t = new_transfer();
  if (!t) {
    return t.err();
  }
  if (auto ok = check_cuda(pooled_floats(std::max<size_t>(n, 1) * sizeof(float), device_,
                                         static_cast<cudaStream_t>(stream_), (*t)->data),
                           "cudaMallocAsync");
      !ok) {
    return ok.err();
  }
  auto post = ch_->recv((*t)->data.get(), n, p, stream_);
  return posted(std::move(*t), std::move(post));
}

}  // namespace baton
