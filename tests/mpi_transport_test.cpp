// mpi_transport's split of header and floats (the NCCL path's logic, with MPI standing in
// for NCCL): tests/mpi_transport_probe.cpp under mpirun -np 2.
#include <gtest/gtest.h>

#include "tests/mpi_util.hpp"

namespace baton {
namespace {

TEST(mpi_transport, floats_left_on_a_device_follow_their_header_over_the_link) {
  auto r = test::run_shell(mpi_test::mpirun(2) + " " + MPI_TRANSPORT_PROBE);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("rank 1: 24 steps, 0 failures, 16 device receives, 0 transport errors"),
            std::string::npos)
      << r.out << r.err;
}

}  // namespace
}  // namespace baton
