// mpi_transport's split of header and floats (the NCCL path's logic, with MPI standing in
// for NCCL and MPI_Test delayed so messages complete out of order): tests/
// mpi_transport_probe.cpp under mpirun.
#include <gtest/gtest.h>

#include "tests/mpi_util.hpp"

namespace baton {
namespace {

std::string probe(int np, const std::string& args = "") {
  auto r = test::run_shell(mpi_test::mpirun(np) + " " + MPI_TRANSPORT_PROBE + " " + args);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  return r.out;
}

TEST(mpi_transport, floats_left_on_a_device_follow_their_header_over_the_link) {
  // 16 of the 24 steps on the "device"; a middle rank forwards them as it got them
  const std::string two = probe(2);
  EXPECT_NE(two.find("rank 1: 24 steps, 24 arrived, 0 failed, 0 unexpected, 16 device receives, "
                     "0 aborts"),
            std::string::npos)
      << two;
  const std::string three = probe(3);
  EXPECT_NE(three.find("rank 2: 24 steps, 24 arrived, 0 failed, 0 unexpected, 16 device "
                       "receives, 0 aborts"),
            std::string::npos)
      << three;
}

TEST(mpi_transport, a_failed_device_transfer_fails_its_step_and_closes_the_link) {
  // the 5th device send fails (step 7): it and the 11 device steps after it fail with the
  // reason, the 4 device steps before it and the 8 host steps arrive, and no receive is
  // posted after the failure (so none can pair with the wrong send)
  const std::string out = probe(2, "4");
  EXPECT_NE(out.find("rank 1: 24 steps, 12 arrived, 12 failed, 0 unexpected, 4 device receives, "
                     "1 aborts"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace baton
