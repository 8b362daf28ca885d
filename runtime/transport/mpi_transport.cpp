// mpi_transport.hpp: the progress thread, its loop and the pending sends, receives and
// device transfers it completes. Only the progress thread touches MPI after
// construction. The bytes of a message are activation_wire.hpp's.
#include "runtime/transport/mpi_transport.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <thread>

#include "runtime/system/error.hpp"
#include "runtime/transport/activation_wire.hpp"

namespace baton {

namespace {

constexpr int activation_tag = 7301;

using clock_type = std::chrono::steady_clock;

double micros_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

}  // namespace

struct mpi_transport::impl {
  struct pending_send {
    MPI_Request req = MPI_REQUEST_NULL;
    wire_buffer buf;
    int32_t peer = 0;
    clock_type::time_point t0;
  };
  struct pending_recv {
    MPI_Request req = MPI_REQUEST_NULL;
    wire_buffer buf;
    int32_t peer = 0;
    clock_type::time_point t0;
  };
  /// Floats moving over the device link; a receive delivers `a` once they are in.
  struct pending_device {
    std::unique_ptr<device_link::transfer> t;
    activations a;  // receives: the header that announced them
    int32_t peer = 0;
    clock_type::time_point t0;
  };

  impl(mailbox& box, std::vector<int32_t> ranks, std::shared_ptr<device_link> link)
      : box_(box), link_(std::move(link)) {
    routes_[0] = std::move(ranks);
    if (const char* us = std::getenv("BATON_MPI_POLL_US")) {
      poll_fast_ = std::chrono::microseconds(std::max(1, std::atoi(us)));
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    thread_ = std::thread([this] { loop(); });
  }

  ~impl() { stop(); }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) {
        return;
      }
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    // Transfers still pending now cannot finish (their peer is gone or no longer
    // listening): cancel the receives, abandon the sends. MPI may still touch their
    // buffers, so those live as long as the process.
    for (auto& r : recvs_) {
      MPI_Cancel(&r.req);
      new wire_buffer(std::move(r.buf));
    }
    for (auto& snd : sends_) {
      new wire_buffer(std::move(snd.buf));
    }
    if (!device_.empty()) {
      link_->abort();  // transfers that will not finish: do not wait for them
    }
    for (auto& d : device_) {
      d.t.release();  // NCCL may still write or read its device memory: never freed
    }
    abandoned_ = !sends_.empty() || !recvs_.empty() || !device_.empty();
    if (!abandoned_) {
      MPI_Comm_free(&comm_);
    }
  }

  void loop() {
    auto idle_since = clock_type::now();
    while (true) {
      std::deque<activations> out;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) {
          return;
        }
        out.swap(outgoing_);
        dead_.insert(dead_asked_.begin(), dead_asked_.end());
      }
      bool active = !out.empty();
      for (auto& a : out) {
        post_send(std::move(a));
      }
      active |= test_sends();
      active |= probe();
      active |= test_recvs();
      active |= test_device();
      if (active) {
        idle_since = clock_type::now();
        continue;
      }
      std::unique_lock<std::mutex> lock(mu_);
      // poll fast while a transfer is under way or a stage waits for its input, and not
      // a moment longer: a thread polling every 50 µs beside the rank's own compute
      // thread cost that stage 15 % (1B Q4_0, 2 ranks on 2 cores)
      const auto now = clock_type::now();
      std::erase_if(expecting_, [&](const auto& e) { return e.second < now; });  // a dead peer
      const bool waiting =
          !sends_.empty() || !recvs_.empty() || !device_.empty() || !expecting_.empty();
      const auto nap = waiting ? poll_fast_
                       : clock_type::now() - idle_since < std::chrono::seconds(1)
                           ? std::chrono::microseconds(1000)
                           : std::chrono::microseconds(100000);
      cv_.wait_for(lock, nap, [&] { return stop_ || !outgoing_.empty() || poked_; });
      poked_ = false;
    }
  }

  void post_send(activations a) {
    const int32_t peer = a.header.to_rank;  // send() resolved the stage's rank
    if (dead_.count(peer)) {
      return;
    }
    // floats a GPU stage left on its device go device to device; MPI takes the header
    std::unique_ptr<device_link::transfer> floats;
    size_t n_floats = a.hidden.size();
    if (a.on_device) {
      n_floats = static_cast<size_t>(a.header.n_tokens) * static_cast<size_t>(a.header.n_embd);
      if (!(link_ && a.device == link_->device() && link_->reaches(peer))) {
        // a stage keeps its output on the device only for a peer the link reaches
        a.header.error = "rank " + std::to_string(rank_) + ": activations on cuda:" +
                         std::to_string(a.device) + " but no device link to rank " +
                         std::to_string(peer);
      } else if (!link_broken_.empty()) {
        a.header.error = link_broken_;
      } else if (auto t = link_->send(std::move(a.on_device), n_floats, peer); !t) {
        // posted before the header: a send that never started leaves no receive waiting
        break_link("rank " + std::to_string(rank_) + ": sending to rank " +
                   std::to_string(peer) + " over the device link: " + t.err().message);
        a.header.error = link_broken_;
      } else {
        floats = std::move(*t);
        a.header.floats_on_device = true;
      }
      if (!a.header.error.empty()) {
        a.header.link_failed = true;
        count_error();
      }
    }
    pending_send s;
    s.peer = peer;
    s.t0 = clock_type::now();
    s.buf = pack_activations(a);
    const int rc = MPI_Isend(s.buf.data(), static_cast<int>(s.buf.size()), MPI_BYTE, peer,
                             activation_tag, comm_, &s.req);
    if (rc != MPI_SUCCESS) {
      note_error("MPI_Isend to rank", peer, rc);
      if (floats) {
        // the receiver will never post the matching receive
        break_link("rank " + std::to_string(rank_) + ": the header for a device transfer "
                   "to rank " + std::to_string(peer) + " could not be sent");
        floats.release();  // the aborted link may still own its memory: never freed
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.sends += 1;
      stats_.device_sends += floats ? 1 : 0;
      stats_.bytes_sent += a.header.error.empty() ? n_floats * sizeof(float) : 0;
      stats_.kv_bytes_sent += a.bytes.size();
    }
    sends_.push_back(std::move(s));
    if (floats) {
      device_.push_back(pending_device{std::move(floats), {}, peer, clock_type::now()});
    }
  }

  void count_error() {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.errors += 1;
  }

  /// A device transfer failed: NCCL pairs a peer's sends and receives by order, so after
  /// a failure no later one can be trusted. The link is aborted; every later transfer
  /// that would use it, and every receive under way, fails its step with `why`.
  void break_link(const std::string& why) {
    if (!link_broken_.empty()) {
      return;
    }
    link_broken_ = why;
    std::fprintf(stderr, "baton: rank %d: device link closed: %s\n", rank_, why.c_str());
    link_->abort();
    for (auto& d : device_) {
      if (d.a.header.floats_on_device) {  // a receive under way: its step fails
        d.a.header.floats_on_device = false;
        d.a.header.error = why;
        deliver(std::move(d.a));
      }
      d.t.release();  // the aborted link may still own its memory: never freed
    }
    device_.clear();
  }

  void deliver(activations a) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      expecting_.erase(a.header.stage);
    }
    box_.deliver(std::move(a));
  }

  /// Polls the device transfers; a finished receive is delivered. Per peer in order.
  bool test_device() {
    bool any = false;
    std::set<int32_t> blocked;
    for (auto it = device_.begin(); it != device_.end();) {
      if (dead_.count(it->peer) || blocked.count(it->peer)) {
        ++it;
        continue;
      }
      auto done = it->t->done();
      if (!done) {
        count_error();
        break_link("rank " + std::to_string(rank_) + ": device transfer with rank " +
                   std::to_string(it->peer) + ": " + done.err().message);
        return true;  // device_ is empty now
      }
      if (!*done) {
        blocked.insert(it->peer);
        ++it;
        continue;
      }
      if (it->a.header.floats_on_device) {  // a receive: deliver
        activations a = std::move(it->a);
        a.on_device = std::move(it->t->data);
        a.device = link_->device();
        {
          std::lock_guard<std::mutex> lock(stats_mu_);
          stats_.recvs += 1;
          stats_.bytes_received += static_cast<uint64_t>(a.header.n_tokens) *
                                   static_cast<uint64_t>(a.header.n_embd) * sizeof(float);
          stats_.recv_us += micros_since(it->t0);
        }
        deliver(std::move(a));
      }
      it = device_.erase(it);
      any = true;
    }
    return any;
  }

  bool test_sends() {
    bool any = false;
    for (auto it = sends_.begin(); it != sends_.end();) {
      if (dead_.count(it->peer)) {
        ++it;
        continue;
      }
      int done = 0;
      const int rc = MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        note_error("send to rank", it->peer, rc);
        dead_.insert(it->peer);
        ++it;
        continue;
      }
      if (done) {
        {
          std::lock_guard<std::mutex> lock(stats_mu_);
          stats_.send_us += micros_since(it->t0);
        }
        it = sends_.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    return any;
  }

  bool probe() {
    bool any = false;
    while (true) {
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      const int rc = MPI_Improbe(MPI_ANY_SOURCE, activation_tag, comm_, &flag, &msg, &st);
      if (rc != MPI_SUCCESS) {
        note_error("MPI_Improbe, rank", MPI_ANY_SOURCE, rc);
        return any;
      }
      if (!flag) {
        return any;
      }
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      pending_recv r;
      r.peer = st.MPI_SOURCE;
      r.t0 = clock_type::now();
      r.buf.resize(static_cast<size_t>(count));
      if (const int rc_recv = MPI_Imrecv(r.buf.data(), count, MPI_BYTE, &msg, &r.req);
          rc_recv != MPI_SUCCESS) {
        note_error("MPI_Imrecv from rank", r.peer, rc_recv);
        continue;
      }
      recvs_.push_back(std::move(r));
      any = true;
    }
  }

  bool test_recvs() {
    bool any = false;
    // in order per peer: a header that announces device floats must post its receive in
    // the order the peer posted the sends
    std::set<int32_t> blocked;
    for (auto it = recvs_.begin(); it != recvs_.end();) {
      if (dead_.count(it->peer) || blocked.count(it->peer)) {
        ++it;
        continue;
      }
      int done = 0;
      const int rc = MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        note_error("receive from rank", it->peer, rc);
        dead_.insert(it->peer);
        ++it;
        continue;
      }
      if (!done) {
        blocked.insert(it->peer);
        ++it;
        continue;
      }
      auto a = unpack_activations(it->buf);
      if (!a) {
        std::fprintf(stderr, "baton: rank %d: from rank %d: %s\n", rank_, it->peer,
                     a.err().message.c_str());
      } else if (!a->header.floats_on_device) {  // device floats count when they arrive
        std::lock_guard<std::mutex> lock(stats_mu_);
        stats_.recvs += 1;
        stats_.bytes_received += a->hidden.size() * sizeof(float);
        stats_.kv_bytes_received += a->bytes.size();
        stats_.recv_us += micros_since(it->t0);
      }
      const int32_t peer = it->peer;
      it = recvs_.erase(it);
      any = true;
      if (!a) {
        if (link_) {
          // it may have announced device floats: their receive can no longer be paired
          break_link("rank " + std::to_string(rank_) + ": an unreadable header from rank " +
                     std::to_string(peer) + ": " + a.err().message);
        }
        continue;
      }
      if (a->header.floats_on_device) {
        receive_on_device(std::move(*a), peer);
        continue;
      }
      if (a->header.link_failed && link_) {
        // the sender's link broke, so is this end's
        break_link(a->header.error);
      }
      deliver(std::move(*a));
    }
    return any;
  }

  /// The header is in; its floats follow over the device link (or the step fails).
  void receive_on_device(activations a, int32_t peer) {
    const auto n = static_cast<size_t>(a.header.n_tokens) * static_cast<size_t>(a.header.n_embd);
    a.header.floats_on_device = false;
    if (!link_) {
      a.header.error = "rank " + std::to_string(peer) + " sends device to device, but rank " +
                       std::to_string(rank_) + " has no device link";
    } else if (!link_broken_.empty()) {
      a.header.error = link_broken_;
    } else if (auto t = link_->recv(n, peer); !t) {
      break_link("rank " + std::to_string(rank_) + ": receiving from rank " +
                 std::to_string(peer) + " over the device link: " + t.err().message);
      a.header.error = link_broken_;
    } else {
      a.header.floats_on_device = true;
      device_.push_back(pending_device{std::move(*t), std::move(a), peer, clock_type::now()});
      return;
    }
    count_error();
    deliver(std::move(a));
  }

  void note_error(const char* what, int peer, int rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    std::fprintf(stderr, "baton: rank %d: %s %d failed: %.*s\n", rank_, what, peer, len, text);
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.errors += 1;
  }

  // -- member variables -------------------------------------------------------
  mailbox& box_;
  std::mutex route_mu_;                // routes_ (senders' threads, a reshard)
  std::map<uint64_t, std::vector<int32_t>> routes_;  // epoch -> each stage's rank
  std::shared_ptr<device_link> link_;  // null: every float goes through MPI
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  std::thread thread_;
  std::mutex mu_;                      // guards outgoing_, stop_, expecting_, dead ranks asked
  std::condition_variable cv_;
  std::deque<activations> outgoing_;
  bool stop_ = false;
  bool poked_ = false;  // expect() was called: wake up and poll fast now
  std::map<int32_t, clock_type::time_point> expecting_;  // stage -> give up at
  std::chrono::microseconds poll_fast_{50};  // while a transfer is pending or expected
  std::set<int32_t> dead_asked_;
  // owned by the progress thread
  std::deque<pending_send> sends_;
  std::deque<pending_recv> recvs_;
  std::deque<pending_device> device_;  // sends and receives over link_, in posting order
  std::string link_broken_;            // why the link was aborted; empty while it works
  std::set<int32_t> dead_;
  bool abandoned_ = false;
  mutable std::mutex stats_mu_;
  transport_stats stats_;
};

mpi_transport::mpi_transport(std::vector<int32_t> stage_ranks)
    : mpi_transport(std::move(stage_ranks), nullptr) {}

mpi_transport::mpi_transport(std::vector<int32_t> stage_ranks, std::shared_ptr<device_link> link)
    : impl_(std::make_unique<impl>(box_, std::move(stage_ranks), std::move(link))) {}

mpi_transport::~mpi_transport() = default;

void mpi_transport::send(activations a) {
  if (a.header.kind != payload_kind::kv_rows) {
    std::lock_guard<std::mutex> lock(impl_->route_mu_);
    auto route = impl_->routes_.find(a.header.epoch);
    BATON_ASSERT(route != impl_->routes_.end());
    const auto stage = static_cast<size_t>(a.header.stage);
    BATON_ASSERT(stage < route->second.size());
    a.header.to_rank = route->second[stage];
  }
  if (a.header.to_rank == impl_->rank_) {
    box_.deliver(std::move(a));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    impl_->outgoing_.push_back(std::move(a));
  }
  impl_->cv_.notify_all();
}

void mpi_transport::set_route(uint64_t epoch, std::vector<int32_t> stage_ranks) {
  std::lock_guard<std::mutex> lock(impl_->route_mu_);
  impl_->routes_[epoch] = std::move(stage_ranks);
}

void mpi_transport::retire_before(uint64_t epoch) {
  {
    std::lock_guard<std::mutex> lock(impl_->route_mu_);
    std::erase_if(impl_->routes_, [&](const auto& r) { return r.first < epoch; });
  }
  transport::retire_before(epoch);
}

uint64_t mpi_transport::bytes_sent() const { return stats().bytes_sent; }

void mpi_transport::expect(int32_t stage) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    impl_->expecting_[stage] = clock_type::now() + std::chrono::seconds(10);
    impl_->poked_ = true;
  }
  impl_->cv_.notify_all();
}

void mpi_transport::forget_peer(int32_t rank) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->dead_asked_.insert(rank);
}

void mpi_transport::stop() { impl_->stop(); }

bool mpi_transport::abandoned() const { return impl_->abandoned_; }

void mpi_transport::expect_done(int32_t stage) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->expecting_.erase(stage);
}

transport_stats mpi_transport::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu_);
  return impl_->stats_;
}

int32_t mpi_transport::rank() const { return impl_->rank_; }

}  // namespace baton
