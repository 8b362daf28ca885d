// Run under mpirun by tests/mpi_transport_test.cpp: stage s runs on rank s; rank 0 sends
// activations to stage 1, some with their floats "on the device" — a device_link that moves
// them with MPI on a communicator of its own stands in for NCCL, with NCCL's rules: the
// receiver posts each receive when the header announcing it is in, and a pair's transfers
// match in posting order. A middle rank forwards what it gets (device floats stay on the
// "device"); the last rank checks every step's floats and where they arrived, and prints
// one line. MPI_Test is wrapped so that every other request stays "not done" for a while:
// later messages from one peer then complete before earlier ones, as on a real network.
//
//   mpi_transport_probe [FAIL_AT]   the link's send of step FAIL_AT fails: that step and
//                                   every later device step must fail with the reason,
//                                   host steps still arrive, and the link is aborted
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/transport/mpi_transport.hpp"

// -- MPI_Test, delayed: requests alternate between completing at once and after 5 tests
extern "C" int MPI_Test(MPI_Request* req, int* flag, MPI_Status* st) {
  static std::mutex mu;
  static std::map<MPI_Request, int> waits;
  static int n = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = waits.find(*req);
    if (it == waits.end()) {
      it = waits.emplace(*req, n++ % 2 ? 5 : 0).first;
    }
    if (it->second > 0) {
      --it->second;
      *flag = 0;
      return MPI_SUCCESS;
    }
    waits.erase(it);
  }
  return PMPI_Test(req, flag, st);
}

namespace {

using namespace baton;

/// MPI in place of NCCL: "device memory" is host memory, the device is 0.
class mpi_link final : public device_link {
 public:
  explicit mpi_link(int fail_at) : fail_at_(fail_at) { MPI_Comm_dup(MPI_COMM_WORLD, &comm_); }
  ~mpi_link() override { MPI_Comm_free(&comm_); }

  struct mpi_transfer final : transfer {
    MPI_Request req = MPI_REQUEST_NULL;
    result<bool> done() override {
      int flag = 0;
      if (MPI_Test(&req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        return make_error("MPI_Test failed");
      }
      return flag != 0;
    }
  };

  int device() const override { return 0; }
  bool reaches(int32_t) const override { return true; }
  result<std::unique_ptr<transfer>> send(std::shared_ptr<float> data, size_t n,
                                         int32_t peer) override {
    if (sends++ == fail_at_) {
      return make_error("injected failure");
    }
    auto t = std::make_unique<mpi_transfer>();
    t->data = std::move(data);
    MPI_Isend(t->data.get(), static_cast<int>(n), MPI_FLOAT, peer, 5, comm_, &t->req);
    return std::unique_ptr<transfer>(std::move(t));
  }
  result<std::unique_ptr<transfer>> recv(size_t n, int32_t peer) override {
    auto t = std::make_unique<mpi_transfer>();
    t->data = std::shared_ptr<float>(new float[n], std::default_delete<float[]>());
    MPI_Irecv(t->data.get(), static_cast<int>(n), MPI_FLOAT, peer, 5, comm_, &t->req);
    ++recvs;
    return std::unique_ptr<transfer>(std::move(t));
  }
  void abort() override { ++aborts; }

  int sends = 0;
  int recvs = 0;
  int aborts = 0;

 private:
  int fail_at_;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

constexpr int n_steps = 24;
constexpr int32_t n_embd = 64;

float value(uint64_t step, size_t i) { return static_cast<float>(step * 1000 + i) * 0.5f; }
bool on_device(uint64_t step) { return step % 3 != 0; }  // steps 0, 3, 6... through MPI
int32_t tokens(uint64_t step) { return static_cast<int32_t>(1 + step % 5); }

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int fail_at = argc > 1 ? std::atoi(argv[1]) : -1;
  int failures = 0;
  {
    auto link = std::make_shared<mpi_link>(fail_at);
    std::vector<int32_t> stage_ranks;
    for (int r = 0; r < world; ++r) {
      stage_ranks.push_back(r);
    }
    mpi_transport t(stage_ranks, link);
    const bool last = rank == world - 1;
    int n_ok = 0, n_failed = 0;
    for (uint64_t step = 0; step < n_steps; ++step) {
      activations a;
      if (rank == 0) {
        a.header.n_tokens = tokens(step);
        a.header.n_embd = n_embd;
        a.header.seq_ids = {step};
        a.header.seq_rows = {a.header.n_tokens};
        const size_t n = static_cast<size_t>(a.header.n_tokens) * n_embd;
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) {
          v[i] = value(step, i);
        }
        if (on_device(step)) {
          a.on_device = std::shared_ptr<float>(new float[n], std::default_delete<float[]>());
          std::memcpy(a.on_device.get(), v.data(), n * sizeof(float));
          a.device = 0;
        } else {
          a.hidden = std::move(v);
        }
      } else {
        // in the order of the steps; the mailbox would take any order
        auto in = t.recv(step, rank, std::chrono::seconds(20));
        if (!in) {
          std::printf("rank %d step %llu: nothing arrived\n", rank,
                      static_cast<unsigned long long>(step));
          ++failures;
          continue;
        }
        a = std::move(*in);
        const bool device_step = on_device(step);
        const bool should_fail = fail_at >= 0 && device_step &&
                                 static_cast<int>(step - step / 3 - 1) >= fail_at;
        if (!a.header.error.empty()) {
          ++n_failed;
          if (!should_fail || a.header.error.find("injected failure") == std::string::npos) {
            std::printf("rank %d step %llu: unexpected error: %s\n", rank,
                        static_cast<unsigned long long>(step), a.header.error.c_str());
            ++failures;
          }
          continue;
        }
        const size_t n = static_cast<size_t>(a.header.n_tokens) * n_embd;
        const float* f = device_step ? a.on_device.get() : a.hidden.data();
        bool same = !should_fail && f != nullptr && a.header.n_tokens == tokens(step) &&
                    (device_step ? a.hidden.empty() && a.device == 0 : !a.on_device);
        for (size_t i = 0; same && i < n; ++i) {
          same = f[i] == value(step, i);
        }
        if (!same) {
          std::printf("rank %d step %llu: wrong floats or place\n", rank,
                      static_cast<unsigned long long>(step));
          ++failures;
          continue;
        }
        ++n_ok;
      }
      if (!last) {
        a.header.step = step;
        a.header.stage = rank + 1;
        t.send(std::move(a));  // a middle rank forwards, device floats staying there
      }
    }
    if (last) {
      std::printf("rank %d: %d steps, %d arrived, %d failed, %d unexpected, %d device receives, "
                  "%d aborts\n",
                  rank, n_steps, n_ok, n_failed, failures, link->recvs, link->aborts);
    }
    MPI_Barrier(MPI_COMM_WORLD);  // every send is complete once the last rank has them all
    t.stop();
  }
  MPI_Finalize();
  return failures == 0 ? 0 : 1;
}
