// Run under `mpirun -np 2` by tests/mpi_transport_test.cpp: rank 0 sends activations to
// stage 1 on rank 1 through mpi_transport, some with their floats "on the device" — a
// device_link that moves them with MPI on a communicator of its own stands in for NCCL,
// with NCCL's rules: the receiver posts each receive when the header announcing it is
// in, and a pair's transfers match in posting order. Rank 1 checks every step's floats,
// where they arrived, and prints one line; the exit status says whether all matched.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "runtime/mpi_transport.hpp"

namespace {

using namespace baton;

/// MPI in place of NCCL: "device memory" is host memory, the device is 0.
class mpi_link final : public device_link {
 public:
  mpi_link() {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  }
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
  bool reaches(int32_t rank) const override { return rank == 0 || rank == 1; }
  result<std::unique_ptr<transfer>> send(std::shared_ptr<float> data, size_t n,
                                         int32_t peer) override {
    auto t = std::make_unique<mpi_transfer>();
    t->data = std::move(data);
    MPI_Isend(t->data.get(), static_cast<int>(n), MPI_FLOAT, peer, 5, comm_, &t->req);
    ++sends;
    return std::unique_ptr<transfer>(std::move(t));
  }
  result<std::unique_ptr<transfer>> recv(size_t n, int32_t peer) override {
    auto t = std::make_unique<mpi_transfer>();
    t->data = std::shared_ptr<float>(new float[n], std::default_delete<float[]>());
    MPI_Irecv(t->data.get(), static_cast<int>(n), MPI_FLOAT, peer, 5, comm_, &t->req);
    ++recvs;
    return std::unique_ptr<transfer>(std::move(t));
  }

  int sends = 0;
  int recvs = 0;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

float value(uint64_t step, size_t i) { return static_cast<float>(step * 1000 + i) * 0.5f; }

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  constexpr int n_steps = 24;
  constexpr int32_t n_embd = 64;
  int failures = 0;
  {
    auto link = std::make_shared<mpi_link>();
    mpi_transport t({0, 1}, link);
    if (rank == 0) {
      // steps 0, 3, 6... through MPI with the header, the others "on the device"; the
      // sizes vary so a mismatched pairing could not go unnoticed
      for (uint64_t step = 0; step < n_steps; ++step) {
        activations a;
        a.header.step = step;
        a.header.stage = 1;
        a.header.n_tokens = static_cast<int32_t>(1 + step % 5);
        a.header.n_embd = n_embd;
        a.header.seq_ids = {step};
        a.header.seq_rows = {a.header.n_tokens};
        const size_t n = static_cast<size_t>(a.header.n_tokens) * n_embd;
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) {
          v[i] = value(step, i);
        }
        if (step % 3 == 0) {
          a.hidden = std::move(v);
        } else {
          a.on_device = std::shared_ptr<float>(new float[n], std::default_delete<float[]>());
          std::memcpy(a.on_device.get(), v.data(), n * sizeof(float));
          a.device = 0;
        }
        t.send(std::move(a));
      }
    } else {
      // takes them out of order too: the mailbox keys by (step, stage)
      for (int k = 0; k < n_steps; ++k) {
        const uint64_t step = static_cast<uint64_t>(k % 2 == 0 ? k + 1 : k - 1);
        auto a = t.recv(step, 1, std::chrono::seconds(20));
        if (!a) {
          std::printf("step %llu: nothing arrived\n", static_cast<unsigned long long>(step));
          ++failures;
          continue;
        }
        const bool want_device = step % 3 != 0;
        const size_t n = static_cast<size_t>(a->header.n_tokens) * n_embd;
        const float* f = want_device ? a->on_device.get() : a->hidden.data();
        bool same = f != nullptr && a->header.n_tokens == static_cast<int32_t>(1 + step % 5) &&
                    (want_device ? a->hidden.empty() && a->device == 0 : !a->on_device);
        for (size_t i = 0; same && i < n; ++i) {
          same = f[i] == value(step, i);
        }
        if (!same) {
          std::printf("step %llu: wrong floats or place\n", static_cast<unsigned long long>(step));
          ++failures;
        }
      }
      const auto st = t.stats();
      std::printf("rank 1: %d steps, %d failures, %d device receives, %llu transport errors\n",
                  n_steps, failures, link->recvs, static_cast<unsigned long long>(st.errors));
      failures += st.errors > 0 ? 1 : 0;
      failures += link->recvs == n_steps - n_steps / 3 ? 0 : 1;
    }
    MPI_Barrier(MPI_COMM_WORLD);  // rank 0's sends are complete once rank 1 has them all
    t.stop();
  }
  MPI_Finalize();
  return failures == 0 ? 0 : 1;
}
