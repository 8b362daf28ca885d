// libbaton_nccl_emu.so (kernels/cuda/emu/nccl_emu.cpp), loaded by its path as
// runtime/transport/nccl_channel.cpp loads libnccl.so.2: ranks as fork()ed processes and
// as threads exchange float buffers bit-exactly, a rank sends to itself in a group, and
// every failure (an abort, a killed or departed peer, a missing peer at init, a bad
// argument) comes back as an error with a message within seconds, never a hang. Built
// twice: test_nccl_emu defines an inline cudaLaunchHostFunc for the shim to find, and
// test_nccl_emu_no_host_func (BATON_NCCL_EMU_NO_HOST_FUNC) none, to see the shim say so.
#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cuda/emu/cuda_emu.hpp"
#include "kernels/cuda/emu/nccl_emu.h"

#ifndef BATON_NCCL_EMU_NO_HOST_FUNC
// The shim puts its transfers on a stream with cudaLaunchHostFunc, which it finds in the
// process at run time. This one runs the function at once, as a synchronous stream
// would; weak, so the emulator's own takes its place wherever that is linked. C linkage,
// as cuda_emu.hpp's: the shim looks it up by that name.
extern "C" __attribute__((weak)) cudaError_t cudaLaunchHostFunc(cudaStream_t, void (*fn)(void*),
                                                     void* arg) {
  fn(arg);
  return cudaSuccess;
}
#endif

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// The shim's entry points, resolved from its path.
struct nccl_api {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) init_rank = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclCommAbort) abort = nullptr;
  decltype(&ncclCommGetAsyncError) async_error = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
};

const nccl_api& nccl() {
  static const nccl_api api = [] {
    void* lib = dlopen(BATON_NCCL_EMU_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      std::fprintf(stderr, "dlopen(%s): %s\n", BATON_NCCL_EMU_LIBRARY, dlerror());
      std::abort();
    }
    nccl_api a;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr) {
        std::fprintf(stderr, "%s: no symbol %s\n", BATON_NCCL_EMU_LIBRARY, name);
        std::abort();
      }
    };
    sym(a.get_unique_id, "ncclGetUniqueId");
    sym(a.init_rank, "ncclCommInitRank");
    sym(a.destroy, "ncclCommDestroy");
    sym(a.abort, "ncclCommAbort");
    sym(a.async_error, "ncclCommGetAsyncError");
    sym(a.send, "ncclSend");
    sym(a.recv, "ncclRecv");
    sym(a.group_start, "ncclGroupStart");
    sym(a.group_end, "ncclGroupEnd");
    sym(a.error_string, "ncclGetErrorString");
    return a;
  }();
  return api;
}

ncclUniqueId fresh_id() {
  ncclUniqueId id;
  EXPECT_EQ(nccl().get_unique_id(&id), ncclSuccess);
  return id;
}

/// Sets BATON_NCCL_EMU_TIMEOUT_MS for one test.
struct init_timeout {
  explicit init_timeout(const char* ms) { setenv("BATON_NCCL_EMU_TIMEOUT_MS", ms, 1); }
  ~init_timeout() { unsetenv("BATON_NCCL_EMU_TIMEOUT_MS"); }
};

/// Ends the test process if a test hangs, so a hang fails in seconds, not at CTest's limit.
struct watchdog {
  watchdog() { alarm(30); }
  ~watchdog() { alarm(0); }
};

ncclComm_t must_join(int nranks, const ncclUniqueId& id, int rank) {
  ncclComm_t comm = nullptr;
  const ncclResult_t r = nccl().init_rank(&comm, nranks, id, rank);
  EXPECT_EQ(r, ncclSuccess) << nccl().error_string(r);
  return comm;
}

ncclResult_t async_error(ncclComm_t comm) {
  ncclResult_t r = ncclInternalError;
  EXPECT_EQ(nccl().async_error(comm, &r), ncclSuccess);
  return r;
}

/// The result of a call, and whether this thread's error string then holds `words`.
void expect_error(ncclResult_t got, ncclResult_t want, const std::string& words) {
  EXPECT_EQ(got, want);
  const std::string text = nccl().error_string(got);
  EXPECT_NE(text.find(words), std::string::npos) << text;
}

#ifndef BATON_NCCL_EMU_NO_HOST_FUNC

/// n floats of seeded random bits, NaN payloads and signed zeros included: a transfer
/// that converts instead of copying shows.
std::vector<float> random_bits(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& f : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const auto bits = uint32_t(x >> 16);
    std::memcpy(&f, &bits, sizeof(f));
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

constexpr size_t ring_floats = baton::nccl_emu::ring_bytes / sizeof(float);

/// One float, nothing, a size that is no multiple of the ring, and several MiB.
const std::vector<size_t> exchange_sizes = {1, 0, 3 * ring_floats + 5, (5u << 20) / 4 + 7};

// -- ranks as processes ---------------------------------------------------------------

/// In a child process, the first failed check as text for the parent to report.
#define CHILD_CHECK(cond)                                                            \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      return std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " + #cond;    \
    }                                                                                \
  } while (0)

struct child {
  pid_t pid = -1;
  int report = -1;  // read end of the pipe the child writes its failure to
};

/// Runs body in a fork()ed child, which exits when it returns (an empty string: passed).
child spawn(const std::function<std::string()>& body) {
  nccl();  // loaded once, before the fork, for both sides
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return {};
  }
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    alarm(30);  // a hung child dies of SIGALRM, which the parent reports
    const std::string failure = body();
    if (!failure.empty()) {
      ssize_t ignored = write(fds[1], failure.data(), failure.size());
      (void)ignored;
    }
    _exit(failure.empty() ? 0 : 1);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

/// The child's failure, or "" once it has exited cleanly.
std::string finish(const child& c) {
  std::string failure;
  char buf[256];
  ssize_t n = 0;
  while ((n = read(c.report, buf, sizeof(buf))) > 0) {
    failure.append(buf, size_t(n));
  }
  close(c.report);
  int status = 0;
  waitpid(c.pid, &status, 0);
  if (failure.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    failure = "the child ended with wait status " + std::to_string(status);
  }
  return failure;
}

/// Rank 0 and rank 1 each send their own seeded buffer and receive the other's.
std::vector<float> exchange(ncclComm_t comm, int rank, size_t n) {
  const std::vector<float> mine = random_bits(n, 100 * n + rank);
  std::vector<float> theirs(n);
  nccl().group_start();
  nccl().send(mine.data(), n, ncclFloat32, 1 - rank, comm, nullptr);
  nccl().recv(theirs.data(), n, ncclFloat32, 1 - rank, comm, nullptr);
  nccl().group_end();
  return theirs;
}

TEST(nccl_emu, two_processes_exchange_every_size_bit_exact) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  const child peer = spawn([&]() -> std::string {
    ncclComm_t comm = nullptr;
    CHILD_CHECK(nccl().init_rank(&comm, 2, id, 1) == ncclSuccess);
    for (size_t n : exchange_sizes) {
      std::vector<float> got(n);
      CHILD_CHECK(nccl().recv(got.data(), n, ncclFloat32, 0, comm, nullptr) == ncclSuccess);
      CHILD_CHECK(same_bits(got, random_bits(n, n)));
      const std::vector<float> reply = random_bits(n, n + 1);
      CHILD_CHECK(nccl().send(reply.data(), n, ncclFloat32, 0, comm, nullptr) == ncclSuccess);
    }
    const size_t big = exchange_sizes.back();
    CHILD_CHECK(same_bits(exchange(comm, 1, big), random_bits(big, 100 * big)));
    ncclResult_t r = ncclInternalError;
    CHILD_CHECK(nccl().async_error(comm, &r) == ncclSuccess && r == ncclSuccess);
    CHILD_CHECK(nccl().destroy(comm) == ncclSuccess);
    return "";
  });
  ncclComm_t comm = must_join(2, id, 0);
  for (size_t n : exchange_sizes) {
    const std::vector<float> sent = random_bits(n, n);
    EXPECT_EQ(nccl().send(sent.data(), n, ncclFloat32, 1, comm, nullptr), ncclSuccess);
    std::vector<float> got(n);
    EXPECT_EQ(nccl().recv(got.data(), n, ncclFloat32, 1, comm, nullptr), ncclSuccess);
    EXPECT_TRUE(same_bits(got, random_bits(n, n + 1))) << n << " floats";
  }
  // both ways at once, each far over the ring: only a group moving both cannot deadlock
  const size_t big = exchange_sizes.back();
  EXPECT_TRUE(same_bits(exchange(comm, 0, big), random_bits(big, 100 * big + 1)));
  EXPECT_EQ(async_error(comm), ncclSuccess);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
  EXPECT_EQ(finish(peer), "");
}

TEST(nccl_emu, abort_wakes_a_blocked_recv_in_the_other_process) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const child peer = spawn([&]() -> std::string {
    close(go[1]);
    ncclComm_t comm = nullptr;
    CHILD_CHECK(nccl().init_rank(&comm, 2, id, 1) == ncclSuccess);
    std::this_thread::sleep_for(300ms);
    CHILD_CHECK(nccl().abort(comm) == ncclSuccess);
    char byte = 0;
    CHILD_CHECK(read(go[0], &byte, 1) == 1);  // alive until the parent has looked
    return "";
  });
  close(go[0]);
  ncclComm_t comm = must_join(2, id, 0);
  std::vector<float> got(1000);
  const auto start = clock_type::now();
  EXPECT_EQ(nccl().recv(got.data(), got.size(), ncclFloat32, 1, comm, nullptr), ncclSuccess);
  const auto waited = clock_type::now() - start;
  EXPECT_GE(waited, 100ms);  // it did wait for the abort
  EXPECT_LT(waited, 5s);
  const ncclResult_t r = async_error(comm);
  EXPECT_EQ(r, ncclRemoteError);
  EXPECT_NE(std::string(nccl().error_string(r)).find("rank 1 aborted"), std::string::npos)
      << nccl().error_string(r);
  // and later calls fail at once, saying why
  const ncclResult_t s = nccl().send(got.data(), 1, ncclFloat32, 1, comm, nullptr);
  EXPECT_EQ(s, ncclRemoteError);
  EXPECT_NE(std::string(nccl().error_string(s)).find("aborted"), std::string::npos);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
  EXPECT_EQ(write(go[1], "x", 1), 1);
  close(go[1]);
  EXPECT_EQ(finish(peer), "");
}

TEST(nccl_emu, a_peer_killed_mid_transfer_is_a_remote_error) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  const size_t n = 4 * ring_floats;
  const child peer = spawn([&]() -> std::string {
    ncclComm_t comm = nullptr;
    CHILD_CHECK(nccl().init_rank(&comm, 2, id, 1) == ncclSuccess);
    const std::vector<float> data = random_bits(n, 7);
    nccl().send(data.data(), n, ncclFloat32, 0, comm, nullptr);  // blocks: the ring fills
    return "the send finished though nobody received";
  });
  ncclComm_t comm = must_join(2, id, 0);
  std::this_thread::sleep_for(200ms);  // the child fills the ring and waits
  ASSERT_EQ(kill(peer.pid, SIGKILL), 0);
  // not reaped yet: a zombie, which kill(pid, 0) would still call alive
  std::vector<float> got(n);
  const auto start = clock_type::now();
  EXPECT_EQ(nccl().recv(got.data(), n, ncclFloat32, 1, comm, nullptr), ncclSuccess);
  EXPECT_LT(clock_type::now() - start, 5s);
  const ncclResult_t r = async_error(comm);
  EXPECT_EQ(r, ncclRemoteError);
  EXPECT_NE(std::string(nccl().error_string(r)).find("rank 1 (pid " + std::to_string(peer.pid) +
                                                     ") died"),
            std::string::npos)
      << nccl().error_string(r);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
  EXPECT_NE(finish(peer), "");  // killed
}

TEST(nccl_emu, a_peer_that_exits_between_messages_is_a_remote_error) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  const child peer = spawn([&]() -> std::string {
    ncclComm_t comm = nullptr;
    CHILD_CHECK(nccl().init_rank(&comm, 2, id, 1) == ncclSuccess);
    const std::vector<float> data = random_bits(10, 3);
    CHILD_CHECK(nccl().send(data.data(), 10, ncclFloat32, 0, comm, nullptr) == ncclSuccess);
    _exit(0);  // neither the second message nor ncclCommDestroy
  });
  ncclComm_t comm = must_join(2, id, 0);
  std::vector<float> got(10);
  EXPECT_EQ(nccl().recv(got.data(), 10, ncclFloat32, 1, comm, nullptr), ncclSuccess);
  EXPECT_TRUE(same_bits(got, random_bits(10, 3)));  // sent before it exited: still there
  EXPECT_EQ(async_error(comm), ncclSuccess);
  EXPECT_EQ(nccl().recv(got.data(), 10, ncclFloat32, 1, comm, nullptr), ncclSuccess);
  const ncclResult_t r = async_error(comm);
  EXPECT_EQ(r, ncclRemoteError);
  EXPECT_NE(std::string(nccl().error_string(r)).find("died"), std::string::npos)
      << nccl().error_string(r);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
  EXPECT_EQ(finish(peer), "");
}

// -- ranks as threads, and one rank ---------------------------------------------------

TEST(nccl_emu, a_rank_sends_to_itself_in_a_group) {
  watchdog w;
  ncclComm_t comm = must_join(1, fresh_id(), 0);
  for (size_t n : exchange_sizes) {
    const std::vector<float> sent = random_bits(n, 11 * n);
    std::vector<float> got(n);
    EXPECT_EQ(nccl().group_start(), ncclSuccess);
    EXPECT_EQ(nccl().send(sent.data(), n, ncclFloat32, 0, comm, nullptr), ncclSuccess);
    EXPECT_EQ(nccl().recv(got.data(), n, ncclFloat32, 0, comm, nullptr), ncclSuccess);
    EXPECT_EQ(nccl().group_end(), ncclSuccess);
    EXPECT_TRUE(same_bits(got, sent)) << n << " floats";
  }
  EXPECT_EQ(async_error(comm), ncclSuccess);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
}

TEST(nccl_emu, two_thread_ranks_exchange_in_a_group) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  const size_t n = exchange_sizes.back();
  std::vector<float> got[2];
  ncclResult_t errors[2] = {ncclInternalError, ncclInternalError};
  auto rank = [&](int r) {
    ncclComm_t comm = must_join(2, id, r);
    got[r] = exchange(comm, r, n);
    errors[r] = async_error(comm);
    nccl().destroy(comm);
  };
  std::thread other(rank, 1);
  rank(0);
  other.join();
  EXPECT_TRUE(same_bits(got[0], random_bits(n, 100 * n + 1)));
  EXPECT_TRUE(same_bits(got[1], random_bits(n, 100 * n)));
  EXPECT_EQ(errors[0], ncclSuccess);
  EXPECT_EQ(errors[1], ncclSuccess);
}

TEST(nccl_emu, a_peer_that_destroys_its_comm_mid_transfer_is_a_remote_error) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  std::thread leaver([&] { nccl().destroy(must_join(2, id, 1)); });
  ncclComm_t comm = must_join(2, id, 0);
  leaver.join();
  std::vector<float> got(10);
  EXPECT_EQ(nccl().recv(got.data(), 10, ncclFloat32, 1, comm, nullptr), ncclSuccess);
  const ncclResult_t r = async_error(comm);
  EXPECT_EQ(r, ncclRemoteError);
  EXPECT_NE(std::string(nccl().error_string(r)).find("rank 1 left"), std::string::npos)
      << nccl().error_string(r);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
}

TEST(nccl_emu, a_size_mismatch_fails_both_ranks) {
  watchdog w;
  const ncclUniqueId id = fresh_id();
  ncclResult_t sender_error = ncclInternalError;
  std::thread sender([&] {
    ncclComm_t comm = must_join(2, id, 1);
    const std::vector<float> data = random_bits(10, 1);
    nccl().send(data.data(), 10, ncclFloat32, 0, comm, nullptr);  // fits the ring: returns
    std::vector<float> never(1);
    nccl().recv(never.data(), 1, ncclFloat32, 0, comm, nullptr);  // woken by the failure
    sender_error = async_error(comm);
    nccl().destroy(comm);
  });
  ncclComm_t comm = must_join(2, id, 0);
  std::vector<float> got(20);
  EXPECT_EQ(nccl().recv(got.data(), 20, ncclFloat32, 1, comm, nullptr), ncclSuccess);
  const ncclResult_t r = async_error(comm);
  EXPECT_EQ(r, ncclInvalidUsage);
  EXPECT_NE(std::string(nccl().error_string(r))
                .find("rank 0 expected 80 bytes from rank 1, which sent 40"),
            std::string::npos)
      << nccl().error_string(r);
  sender.join();
  EXPECT_EQ(sender_error, ncclRemoteError);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
}

// -- errors ---------------------------------------------------------------------------

TEST(nccl_emu, bad_arguments_are_errors_with_a_message) {
  watchdog w;
  ncclComm_t comm = must_join(1, fresh_id(), 0);
  std::vector<float> buf(4);
  expect_error(nccl().send(buf.data(), 4, ncclInt32, 0, comm, nullptr), ncclInvalidArgument,
               "data type 2 is not supported; the emulator's NCCL moves ncclFloat32 (7) only");
  expect_error(nccl().recv(buf.data(), 4, ncclFloat16, 0, comm, nullptr), ncclInvalidArgument,
               "ncclRecv: data type 6");
  expect_error(nccl().send(buf.data(), 4, ncclFloat32, 1, comm, nullptr), ncclInvalidArgument,
               "peer 1 is not a rank of this 1-rank communicator");
  expect_error(nccl().recv(buf.data(), 4, ncclFloat32, -1, comm, nullptr), ncclInvalidArgument,
               "peer -1");
  expect_error(nccl().send(nullptr, 4, ncclFloat32, 0, comm, nullptr), ncclInvalidArgument,
               "the buffer is null");
  expect_error(nccl().send(buf.data(), 4, ncclFloat32, 0, nullptr, nullptr), ncclInvalidArgument,
               "comm is null");
  expect_error(nccl().group_end(), ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  int a = 0;
  int b = 0;
  EXPECT_EQ(nccl().group_start(), ncclSuccess);
  EXPECT_EQ(nccl().send(buf.data(), 2, ncclFloat32, 0, comm, reinterpret_cast<cudaStream_t>(&a)),
            ncclSuccess);
  expect_error(
      nccl().recv(buf.data() + 2, 2, ncclFloat32, 0, comm, reinterpret_cast<cudaStream_t>(&b)),
      ncclInvalidUsage, "must share a stream");
  EXPECT_EQ(nccl().recv(buf.data() + 2, 2, ncclFloat32, 0, comm,
                        reinterpret_cast<cudaStream_t>(&a)),
            ncclSuccess);
  EXPECT_EQ(nccl().group_end(), ncclSuccess);
  EXPECT_EQ(async_error(comm), ncclSuccess);  // the refused calls were never posted
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);

  ncclComm_t none = nullptr;
  const ncclUniqueId id = fresh_id();
  expect_error(nccl().init_rank(&none, 2, id, 2), ncclInvalidArgument, "rank 2 is not in [0, 2)");
  expect_error(nccl().init_rank(&none, 0, id, 0), ncclInvalidArgument, "nranks is 0");
  expect_error(nccl().init_rank(&none, baton::nccl_emu::max_ranks + 1, id, 0),
               ncclInvalidArgument, "joins 1 to 16 ranks");
  expect_error(nccl().init_rank(nullptr, 1, id, 0), ncclInvalidArgument, "comm is null");
  {
    init_timeout t("soon");
    expect_error(nccl().init_rank(&none, 1, id, 0), ncclInvalidArgument,
                 "BATON_NCCL_EMU_TIMEOUT_MS is 'soon'");
  }
  EXPECT_EQ(none, nullptr);
}

TEST(nccl_emu, ranks_that_disagree_on_the_communicator_are_refused) {
  watchdog w;
  init_timeout t("500");
  const ncclUniqueId id = fresh_id();
  ncclResult_t first = ncclSuccess;
  std::thread waiting([&] {
    ncclComm_t comm = nullptr;
    first = nccl().init_rank(&comm, 2, id, 0);
  });
  std::this_thread::sleep_for(100ms);  // the thread has made the segment
  ncclComm_t comm = nullptr;
  expect_error(nccl().init_rank(&comm, 3, id, 1), ncclInvalidUsage,
               "this rank was given nranks 3, but the communicator's first rank gave 2");
  expect_error(nccl().init_rank(&comm, 2, id, 0), ncclInvalidUsage,
               "rank 0 of the communicator was already taken");
  waiting.join();
  EXPECT_EQ(first, ncclSystemError);  // nobody came as rank 1
}

TEST(nccl_emu, init_without_its_peer_times_out) {
  watchdog w;
  init_timeout t("200");
  const ncclUniqueId id = fresh_id();
  ncclComm_t comm = nullptr;
  const auto start = clock_type::now();
  expect_error(nccl().init_rank(&comm, 2, id, 0), ncclSystemError,
               "rank 0 timed out after 200 ms waiting for the communicator's ranks: 1 of 2 "
               "joined (BATON_NCCL_EMU_TIMEOUT_MS sets the wait)");
  const auto waited = clock_type::now() - start;
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 3s);
  EXPECT_EQ(comm, nullptr);
  // the 2-rank segment is gone with its last rank: the id makes a 1-rank one now
  comm = must_join(1, id, 0);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
}

#else  // BATON_NCCL_EMU_NO_HOST_FUNC: test_nccl_emu_no_host_func, which defines no
       // cudaLaunchHostFunc

TEST(nccl_emu, without_cudaLaunchHostFunc_a_transfer_is_an_error_naming_it) {
  watchdog w;
  ncclComm_t comm = must_join(1, fresh_id(), 0);  // joining needs no stream
  std::vector<float> buf(2);
  const std::string why = "cudaLaunchHostFunc is not defined in this process";
  expect_error(nccl().send(buf.data(), 1, ncclFloat32, 0, comm, nullptr), ncclUnhandledCudaError,
               "ncclSend: " + why);
  expect_error(nccl().recv(buf.data(), 1, ncclFloat32, 0, comm, nullptr), ncclUnhandledCudaError,
               "ncclRecv: " + why);
  EXPECT_EQ(nccl().group_start(), ncclSuccess);
  expect_error(nccl().send(buf.data(), 1, ncclFloat32, 0, comm, nullptr), ncclUnhandledCudaError,
               why);
  EXPECT_EQ(nccl().group_end(), ncclSuccess);  // nothing was posted, nothing to launch
  EXPECT_EQ(async_error(comm), ncclSuccess);
  EXPECT_EQ(nccl().destroy(comm), ncclSuccess);
}

#endif

}  // namespace
