// The pipeline across hosts: three test hosts made as network namespaces joined by veth
// to a bridge (tests/multihost/netns.sh), each with its own host name, mpirun launching
// into them through tests/multihost/netns-rsh.sh, MPI and CAF over TCP on 10.77.0.0/24
// only. 16 requests give the single-process tokens and logits for np 2 and 3, and the
// killed-rank path works across hosts. Skips, saying why, where namespaces cannot be
// made (no root, no iproute2, no CAP_NET_ADMIN).
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/stream_util.hpp"

namespace baton {
namespace {

using namespace mpi_test;

const std::string k_scripts = BATON_SOURCE_DIR "/tests/multihost";

class multihost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto r = shell(k_scripts + "/netns.sh up 4");
    up_ = r.status == 0;
    why_ = r.err;
  }
  static void TearDownTestSuite() {
    if (up_) {
      shell(k_scripts + "/netns.sh down");
    }
  }
  void SetUp() override {
    if (!have_mpirun()) {
      GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
    }
    if (!up_) {
      GTEST_SKIP() << "cannot make network namespaces here (needs root and iproute2): " << why_;
    }
    ASSERT_TRUE(fx().error.empty()) << fx().error;
  }

  /// mpirun over the first `np` namespace hosts, one rank each.
  static std::string mpirun_hosts(int np, const std::string& extra = "") {
    std::string hosts;
    for (int i = 1; i <= np; ++i) {
      if (i > 1) {
        hosts += ',';
      }
      hosts += "10.77.0.1";
      hosts += std::to_string(i);
    }
    return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun " +
           extra + " --mca plm_rsh_agent " + k_scripts +
           "/netns-rsh.sh --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 "
           "--mca oob_tcp_if_include 10.77.0.0/24 --host " +
           hosts + " -np " + std::to_string(np) + " env HOME=" +
           (std::getenv("HOME") ? std::getenv("HOME") : "/root") + " ";
  }

  static inline bool up_ = false;
  static inline std::string why_;
};

// One test case: ctest runs every case in its own process, and two processes must not
// make and remove the same namespaces at once.
TEST_F(multihost, ranks_on_separate_hosts_give_the_single_process_outputs) {
  // each rank on its own host
  auto h = shell(mpirun_hosts(3) + "/bin/sh -c 'echo $OMPI_COMM_WORLD_RANK $(hostname)'");
  ASSERT_EQ(h.status, 0) << h.err;
  for (const char* name : {"bt-h1", "bt-h2", "bt-h3"}) {
    EXPECT_NE(h.out.find(name), std::string::npos) << h.out;
  }
  const auto& ref = single_process();
  ASSERT_EQ(ref.size(), 16u);
  for (int np : {2, 3}) {
    auto r = shell(mpirun_hosts(np) + run_args("--timings"));
    ASSERT_EQ(r.status, 0) << "np " << np << ": " << r.err;
    nlohmann::json summary;
    EXPECT_EQ(request_lines(r.out, &summary), ref) << "np " << np;
    ASSERT_TRUE(summary.is_object());
    EXPECT_EQ(summary["ranks"], np);
    EXPECT_GT(summary["activation_bytes_sent"].get<double>(), 0.0);
  }
  // a host cut off mid-generation: no heartbeat within --stage-timeout, so rank 2 (host
  // bt-h3) is fenced and its stage goes to the standby host; the survivors go on over TCP
  // and mpirun keeps the job (its own link to the host is cut too: Open MPI does not
  // notice an idle TCP link)
  const auto topo = dir() / "mh-three.toml";
  std::ofstream(topo) << "[[stage]]\nrank = 0\nlayers = \"0-1\"\n[[stage]]\nrank = 1\n"
                         "layers = \"2\"\n[[stage]]\nrank = 2\nlayers = \"3\"\n";
  server_process s("--host 0.0.0.0 --topology " + topo.string() +
                       " --ctx-size 512 --stage-timeout 3s",
                   "env " + mpirun_hosts(4, "--enable-recovery"));
  s.set_host("10.77.0.11");
  ASSERT_GT(s.port(), 0) << s.log();
  const auto reference = stream_all(s, 8);
  const auto during = stream_all(s, 8, [&] { shell("ip link set bt-v3 down"); });
  shell("ip link set bt-v3 up");
  for (size_t i = 0; i < during.size(); ++i) {
    EXPECT_EQ(during[i], reference[i]) << "request " << i << "\n" << s.log();
  }
  EXPECT_NE(s.log().find("rank 2 answered no heartbeat"), std::string::npos) << s.log();
  EXPECT_NE(s.log().find("standby rank 3 takes rank 2's stage"), std::string::npos) << s.log();
  EXPECT_EQ(metric(s, "baton:recoveries_total{result=\"ok\"}"), 1);
}

}  // namespace
}  // namespace baton
