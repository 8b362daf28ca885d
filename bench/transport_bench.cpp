// The MPI data plane's bandwidth between two ranks, as a reshard's KV rows see it: rank 0
// sends `count` kv_rows messages of `mib` MiB each through mpi_transport to rank 1, which
// takes them in order; rank 1 prints the rate from the first send to the last arrival.
//
//   mpirun -np 2 build/bin/bench_transport [MIB=64] [COUNT=16]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "runtime/transport/mpi_transport.hpp"

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0) {
      std::fprintf(stderr, "bench_transport: run it with mpirun -np 2\n");
    }
    MPI_Finalize();
    return 2;
  }
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  const int count = argc > 2 ? std::atoi(argv[2]) : 16;
  const size_t bytes = mib << 20;
  int rc = 0;
  {
    baton::mpi_transport t({0, 1});
    MPI_Barrier(MPI_COMM_WORLD);  // before the transport's first message: both are up
    const auto t0 = std::chrono::steady_clock::now();
    if (rank == 0) {
      for (int i = 0; i < count; ++i) {
        baton::activations a;
        a.header.kind = baton::payload_kind::kv_rows;
        a.header.to_rank = 1;
        a.header.layer = i;
        a.header.n_bytes = bytes;
        a.bytes.assign(bytes, static_cast<uint8_t>(i));
        t.send(std::move(a));
      }
    } else {
      for (int i = 0; i < count; ++i) {
        auto got = t.recv_kv(0, i, std::chrono::seconds(120));
        if (!got || got->bytes.size() != bytes || got->bytes[bytes / 2] != static_cast<uint8_t>(i)) {
          std::fprintf(stderr, "bench_transport: message %d did not arrive whole\n", i);
          rc = 1;
          break;
        }
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // the sender's time to fill its buffers is inside: a lower bound on the link
      std::printf("%d messages of %zu MiB in %.3f s: %.2f GB/s\n", count, mib, s,
                  static_cast<double>(bytes) * count / s / 1e9);
    }
    MPI_Barrier(MPI_COMM_WORLD);  // the sender keeps its transport until every byte is in
  }
  MPI_Finalize();
  return rc;
}
