// libbaton_nccl_emu.so: NCCL's point-to-point subset (nccl_emu.h) for ranks that are
// processes or threads on one host, so the runtime's NCCL path runs on the CUDA emulator,
// where device pointers are host pointers. A communicator is a POSIX shared-memory
// segment named from its unique id: a header, a slot per rank (pid, state, a futex
// doorbell) and a byte ring per ordered (src, dst) pair. A message is an 8-byte length
// then the payload, streamed through its pair's ring in pieces as large as the free space,
// so any size moves and a size mismatch is caught, not silently misread. Transfers are
// stream-ordered: a call (or a whole ncclGroupStart/End group) becomes one host function
// on the stream through the emulator's cudaLaunchHostFunc, found at run time, so this
// library links nothing of the emulator. A host function cannot return an error: a
// failed transfer (an abort, a peer that died or left, a size mismatch) is recorded as the
// communicator's async error and published in the segment, which wakes every waiting rank
// so each fails too instead of hanging. Waits sleep on futexes with a short timeout,
// between which dead peers are looked for.
#include "kernels/cuda/emu/nccl_emu.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace baton::nccl_emu;
using clock_type = std::chrono::steady_clock;

// -- errors -------------------------------------------------------------------------------

/// The detail of the last failure on this thread, which ncclGetErrorString appends to
/// NCCL's fixed text for that result: the ABI has no other way to say which argument.
struct thread_error {
  ncclResult_t code = ncclSuccess;
  std::string detail;
  std::string text;  // what ncclGetErrorString last returned; valid until its next call
};
thread_local thread_error last_error;

ncclResult_t fail(ncclResult_t code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
ncclResult_t fail(ncclResult_t code, const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  last_error.code = code;
  last_error.detail = buf;
  return code;
}

const char* result_text(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

// -- settings -----------------------------------------------------------------------------

constexpr const char* timeout_variable = "BATON_NCCL_EMU_TIMEOUT_MS";
constexpr long default_timeout_ms = 60'000;
/// How long one wait sleeps before it looks again for a dead peer.
constexpr int poll_ms = 10;

/// How long ncclCommInitRank waits for all ranks: $BATON_NCCL_EMU_TIMEOUT_MS, or a
/// minute; -1 with the error recorded when the variable is not a positive number.
long init_timeout_ms() {
  const char* s = std::getenv(timeout_variable);
  if (s == nullptr || *s == '\0') {
    return default_timeout_ms;
  }
  char* end = nullptr;
  errno = 0;
  const long ms = std::strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || ms <= 0) {
    fail(ncclInvalidArgument, "%s is '%s'; expected a positive number of milliseconds",
         timeout_variable, s);
    return -1;
  }
  return ms;
}

// -- futexes ------------------------------------------------------------------------------

static_assert(std::atomic<uint32_t>::is_always_lock_free &&
              sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
static_assert(std::atomic<uint64_t>::is_always_lock_free);

/// Sleeps while *word == seen, at most timeout_ms. Shared (not FUTEX_PRIVATE) futexes:
/// the words live in a segment other processes map.
void futex_wait(std::atomic<uint32_t>& word, uint32_t seen, long timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void ring_bell(std::atomic<uint32_t>& word) {
  word.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr,
          nullptr, 0);
}

// -- the shared segment -------------------------------------------------------------------

constexpr uint32_t segment_magic = 0x6e63636c;  // set last by the creator: "ready"
constexpr uint32_t segment_version = 1;

enum slot_state : uint32_t { slot_empty = 0, slot_joined = 1, slot_left = 2 };

struct alignas(64) rank_slot {
  std::atomic<int32_t> pid;          // 0 until the rank joins
  std::atomic<uint32_t> state;       // slot_state
  std::atomic<uint64_t> start_time;  // the pid's start (clock ticks after boot): tells reuse
  std::atomic<uint32_t> doorbell;    // bumped whenever a ring this rank waits on moves
};

/// One ordered pair's ring: counts of bytes ever written and read, on lines of their own.
/// One writer (the pair's sender) and one reader (its receiver).
struct alignas(64) ring_header {
  std::atomic<uint64_t> head;
  char pad_[56];
  std::atomic<uint64_t> tail;
};

/// Why a communicator failed, as every rank sees it: the first failure wins.
enum failure_reason : uint64_t {
  failure_none = 0,
  failure_aborted = 1,   // `by` called ncclCommAbort
  failure_died = 2,      // `by` found `subject` dead
  failure_left = 3,      // `by` found `subject` gone (ncclCommDestroy) mid-transfer
  failure_mismatch = 4,  // `by` received from `subject` a message of another size
};

/// The failure word: reason (8 bits), by (24), subject (32), so one CAS publishes it.
uint64_t pack_failure(failure_reason reason, int by, int subject) {
  return (uint64_t{reason} << 56) | (uint64_t(uint32_t(by) & 0xffffff) << 32) |
         uint32_t(subject);
}

std::string describe_failure(uint64_t word) {
  const auto reason = failure_reason(word >> 56);
  const int by = int((word >> 32) & 0xffffff);
  const int subject = int(uint32_t(word));
  char buf[160];
  switch (reason) {
    case failure_aborted:
      std::snprintf(buf, sizeof(buf), "rank %d aborted the communicator", by);
      break;
    case failure_died:
      std::snprintf(buf, sizeof(buf), "rank %d died (rank %d saw it)", subject, by);
      break;
    case failure_left:
      std::snprintf(buf, sizeof(buf),
                    "rank %d left the communicator with a transfer between it and rank %d "
                    "unfinished",
                    subject, by);
      break;
    default:
      std::snprintf(buf, sizeof(buf),
                    "rank %d received a message of the wrong size from rank %d", by, subject);
      break;
  }
  return buf;
}

struct segment_header {
  std::atomic<uint32_t> ready;
  uint32_t version;
  int32_t nranks;
  uint32_t pad_;
  uint64_t ring_bytes;
  std::atomic<int32_t> n_joined;
  std::atomic<uint32_t> join_bell;
  std::atomic<uint64_t> failure;  // 0, or pack_failure(...)
};

/// Where things are in a segment of n ranks: header, slots [n], rings [n * n], and the
/// rings' bytes [n * n][ring_bytes].
struct segment_layout {
  size_t slots = 0;
  size_t rings = 0;
  size_t data = 0;
  size_t bytes = 0;
  explicit segment_layout(int n) {
    auto up = [](size_t x) { return (x + 63) / 64 * 64; };
    const size_t pairs = size_t(n) * size_t(n);
    slots = up(sizeof(segment_header));
    rings = slots + up(n * sizeof(rank_slot));
    data = rings + up(pairs * sizeof(ring_header));
    bytes = data + pairs * ring_bytes;
  }
};

/// The segment's name: NCCL ids are 128 bytes, but 16 random ones name it uniquely.
std::string segment_name(const ncclUniqueId& id) {
  std::string name = "/baton-nccl-emu-";
  for (int i = 0; i < 16; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof(hex), "%02x", unsigned(uint8_t(id.internal[i])));
    name += hex;
  }
  return name;
}

// -- peers --------------------------------------------------------------------------------

/// The start time of a live process (field 22 of /proc/<pid>/stat), or 0 when it is gone
/// or a zombie: a parent that has not reaped a dead child still answers kill(pid, 0).
uint64_t live_start_time(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", int(pid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and ')'
  if (p == nullptr || p[1] != ' ') {
    return 0;
  }
  p += 2;
  if (*p == 'Z' || *p == 'X') {
    return 0;
  }
  for (int field = 3; field < 22 && p != nullptr; ++field) {  // p is at field 3, the state
    p = std::strchr(p, ' ');
    p = p ? p + 1 : nullptr;
  }
  return p ? std::strtoull(p, nullptr, 10) : 0;
}

/// Whether the process that joined with (pid, start) runs: the same start time tells it
/// from a later process given the same pid. Without /proc (start 0), kill(pid, 0).
bool alive(pid_t pid, uint64_t start) {
  if (start == 0) {
    return kill(pid, 0) == 0 || errno == EPERM;
  }
  return live_start_time(pid) == start;
}

// -- communicators ------------------------------------------------------------------------

/// One rank's view of a communicator: its mapping of the segment and its async error.
/// Shared by the handle and by every transfer queued on a stream, so ncclCommDestroy or
/// ncclCommAbort never unmaps under a host function still to run; the last owner marks
/// the rank gone and unmaps.
class comm_state {
 public:
  comm_state(void* base, int rank, int nranks)
      : base_(static_cast<char*>(base)), layout_(nranks), rank_(rank), nranks_(nranks) {}
  comm_state(const comm_state&) = delete;
  comm_state& operator=(const comm_state&) = delete;
  ~comm_state() {
    if (joined_) {
      slot(rank_).state.store(slot_left, std::memory_order_release);
      ring_all_bells();  // a peer waiting on this rank looks again and sees it gone
    }
    munmap(base_, layout_.bytes);
  }

  /// Called once this rank holds its slot and all ranks have joined.
  void mark_joined() { joined_ = true; }

  int rank() const { return rank_; }
  int nranks() const { return nranks_; }
  segment_header& header() const { return *reinterpret_cast<segment_header*>(base_); }
  rank_slot& slot(int r) const {
    return reinterpret_cast<rank_slot*>(base_ + layout_.slots)[r];
  }
  ring_header& ring(int src, int dst) const {
    return reinterpret_cast<ring_header*>(base_ + layout_.rings)[src * nranks_ + dst];
  }
  char* ring_data(int src, int dst) const {
    return base_ + layout_.data + size_t(src * nranks_ + dst) * ring_bytes;
  }

  void ring_all_bells() const {
    for (int r = 0; r < nranks_; ++r) {
      ring_bell(slot(r).doorbell);
    }
  }

  /// Publishes a failure to every rank (the first one wins) and wakes them all.
  void publish_failure(failure_reason reason, int subject) const {
    uint64_t none = 0;
    header().failure.compare_exchange_strong(none, pack_failure(reason, rank_, subject));
    ring_all_bells();
  }

  /// This rank's async error, the first recorded.
  void record(ncclResult_t code, const std::string& detail) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (async_code_ == ncclSuccess) {
      async_code_ = code;
      async_detail_ = detail;
    }
  }

  /// Whether the communicator has failed, here or in any rank; a failure another rank
  /// published becomes this rank's ncclRemoteError.
  bool failed() {
    const uint64_t word = header().failure.load(std::memory_order_acquire);
    if (word != 0) {
      record(ncclRemoteError, describe_failure(word));
    }
    std::lock_guard<std::mutex> lock(error_mutex_);
    return async_code_ != ncclSuccess;
  }

  std::pair<ncclResult_t, std::string> async_error() {
    failed();
    std::lock_guard<std::mutex> lock(error_mutex_);
    return {async_code_, async_detail_};
  }

  /// Held while a host function moves this communicator's data: each ring has one
  /// reader and one writer, and streams of one rank may run host functions at once.
  std::mutex progress_mutex;

 private:
  char* base_;
  segment_layout layout_;
  int rank_;
  int nranks_;
  bool joined_ = false;
  std::mutex error_mutex_;
  ncclResult_t async_code_ = ncclSuccess;
  std::string async_detail_;
};

}  // namespace

/// The handle ncclComm_t points to; ncclCommDestroy and ncclCommAbort delete it.
struct ncclComm {
  std::shared_ptr<comm_state> state;
};

namespace {

// -- joining ------------------------------------------------------------------------------

struct mapped {
  void* base = nullptr;
  ncclResult_t code = ncclSuccess;  // with the reason recorded on this thread
};

mapped create_segment(int fd, const std::string& name, int nranks) {
  const segment_layout layout(nranks);
  // allocated now, not on first touch: a full /dev/shm is an error here, not a SIGBUS
  // in the middle of a transfer
  if (const int e = posix_fallocate(fd, 0, off_t(layout.bytes)); e != 0) {
    close(fd);
    shm_unlink(name.c_str());
    return {nullptr, fail(ncclSystemError, "posix_fallocate(/dev/shm%s, %zu bytes): %s",
                          name.c_str(), layout.bytes, std::strerror(e))};
  }
  void* base = mmap(nullptr, layout.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    shm_unlink(name.c_str());
    return {nullptr, fail(ncclSystemError, "mmap(%s): %s", name.c_str(), std::strerror(errno))};
  }
  auto* h = static_cast<segment_header*>(base);  // posix_fallocate zeroed the rest
  h->version = segment_version;
  h->nranks = nranks;
  h->ring_bytes = ring_bytes;
  h->ready.store(segment_magic, std::memory_order_release);
  return {base};
}

/// Maps a segment another rank created, once it is sized and initialized.
mapped open_segment(int fd, const std::string& name, int nranks,
                    clock_type::time_point deadline) {
  struct stat st {};
  while (fstat(fd, &st) == 0 && st.st_size == 0 && clock_type::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the creator's fallocate
  }
  if (st.st_size < off_t(sizeof(segment_header))) {
    close(fd);
    return {nullptr, fail(ncclSystemError, "%s was not sized by its creator in time",
                          name.c_str())};
  }
  void* base = mmap(nullptr, size_t(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    return {nullptr, fail(ncclSystemError, "mmap(%s): %s", name.c_str(), std::strerror(errno))};
  }
  auto* h = static_cast<segment_header*>(base);
  while (h->ready.load(std::memory_order_acquire) != segment_magic &&
         clock_type::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const bool ready = h->ready.load(std::memory_order_acquire) == segment_magic;
  const int theirs = h->nranks;
  const bool same = ready && h->version == segment_version && theirs == nranks &&
                    h->ring_bytes == ring_bytes &&
                    size_t(st.st_size) == segment_layout(nranks).bytes;
  if (!same) {
    munmap(base, size_t(st.st_size));
    if (!ready) {
      return {nullptr, fail(ncclSystemError, "%s was not initialized by its creator in time",
                            name.c_str())};
    }
    return {nullptr, fail(ncclInvalidUsage,
                          "this rank was given nranks %d, but the communicator's first rank "
                          "gave %d (or another version of this library made it)",
                          nranks, theirs)};
  }
  return {base};
}

/// The segment for an id: the first rank to arrive creates it, the others map it.
mapped map_segment(const std::string& name, int nranks, clock_type::time_point deadline) {
  for (;;) {
    int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      return create_segment(fd, name, nranks);
    }
    if (errno != EEXIST) {
      return {nullptr, fail(ncclSystemError, "shm_open(%s): %s", name.c_str(),
                            std::strerror(errno))};
    }
    fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) {
      return open_segment(fd, name, nranks, deadline);
    }
    if (errno != ENOENT || clock_type::now() >= deadline) {  // ENOENT: its ranks gave up
      return {nullptr, fail(ncclSystemError, "shm_open(%s): %s", name.c_str(),
                            std::strerror(errno))};
    }
  }
}

/// Takes this rank's slot and waits for all ranks. Once all have joined nobody needs
/// the name, so the last to join unlinks it: no segment outlives its ranks, even killed.
ncclResult_t join(comm_state& c, const std::string& name, clock_type::time_point deadline,
                  long timeout_ms) {
  segment_header& h = c.header();
  rank_slot& mine = c.slot(c.rank());
  int32_t none = 0;
  if (!mine.pid.compare_exchange_strong(none, int32_t(getpid()))) {
    return fail(ncclInvalidUsage, "rank %d of the communicator was already taken by pid %d",
                c.rank(), int(none));
  }
  mine.start_time.store(live_start_time(getpid()), std::memory_order_relaxed);
  mine.state.store(slot_joined, std::memory_order_release);
  if (h.n_joined.fetch_add(1, std::memory_order_acq_rel) + 1 == c.nranks()) {
    shm_unlink(name.c_str());
    ring_bell(h.join_bell);
  }
  for (;;) {
    const uint32_t seen = h.join_bell.load(std::memory_order_acquire);
    const int joined = h.n_joined.load(std::memory_order_acquire);
    if (joined >= c.nranks()) {
      c.mark_joined();
      return ncclSuccess;
    }
    const auto left = deadline - clock_type::now();
    if (left <= clock_type::duration::zero()) {
      mine.state.store(slot_empty, std::memory_order_release);
      mine.pid.store(0, std::memory_order_release);
      if (h.n_joined.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        shm_unlink(name.c_str());  // the last to give up: nobody is left to join
      }
      return fail(ncclSystemError,
                  "rank %d timed out after %ld ms waiting for the communicator's ranks: %d of "
                  "%d joined (%s sets the wait)",
                  c.rank(), timeout_ms, joined, c.nranks(), timeout_variable);
    }
    const long ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1;
    futex_wait(h.join_bell, seen, std::min<long>(ms, poll_ms));
  }
}

// -- transfers ----------------------------------------------------------------------------

/// One ncclSend or ncclRecv: its message is an 8-byte length, then the payload.
struct transfer {
  std::shared_ptr<comm_state> comm;
  bool is_send = false;
  int peer = 0;
  char* data = nullptr;  // [bytes]; read only when is_send
  uint64_t bytes = 0;
  uint64_t length = 0;  // the message's length field: sent, or received
  uint64_t moved = 0;   // bytes of the message (length field included) through the ring
  bool done = false;

  static constexpr uint64_t length_bytes = sizeof(uint64_t);
  uint64_t message_bytes() const { return length_bytes + bytes; }
  int src() const { return is_send ? comm->rank() : peer; }
  int dst() const { return is_send ? peer : comm->rank(); }
  /// The message bytes from `moved` on that lie contiguously in this rank's memory.
  std::pair<char*, uint64_t> next_piece() {
    if (moved < length_bytes) {
      return {reinterpret_cast<char*>(&length) + moved, length_bytes - moved};
    }
    return {data + (moved - length_bytes), message_bytes() - moved};
  }
};

/// Copies up to n bytes into the pair's ring; returns how many fitted.
uint64_t ring_write(const comm_state& c, int src, int dst, const char* from, uint64_t n) {
  ring_header& r = c.ring(src, dst);
  const uint64_t head = r.head.load(std::memory_order_relaxed);  // only this side writes it
  const uint64_t tail = r.tail.load(std::memory_order_acquire);
  const uint64_t k = std::min<uint64_t>(n, ring_bytes - (head - tail));
  const uint64_t at = head % ring_bytes;
  const uint64_t first = std::min<uint64_t>(k, ring_bytes - at);
  char* ring = c.ring_data(src, dst);
  std::memcpy(ring + at, from, first);
  std::memcpy(ring, from + first, k - first);
  r.head.store(head + k, std::memory_order_release);
  return k;
}

/// Copies up to n bytes out of the pair's ring; returns how many were there.
uint64_t ring_read(const comm_state& c, int src, int dst, char* to, uint64_t n) {
  ring_header& r = c.ring(src, dst);
  const uint64_t tail = r.tail.load(std::memory_order_relaxed);  // only this side writes it
  const uint64_t head = r.head.load(std::memory_order_acquire);
  const uint64_t k = std::min<uint64_t>(n, head - tail);
  const uint64_t at = tail % ring_bytes;
  const uint64_t first = std::min<uint64_t>(k, ring_bytes - at);
  const char* ring = c.ring_data(src, dst);
  std::memcpy(to, ring + at, first);
  std::memcpy(to + first, ring, k - first);
  r.tail.store(tail + k, std::memory_order_release);
  return k;
}

/// Fails a transfer whose peer is gone or sent the wrong size: the rank's async error
/// says why, and the failure is published so no other rank waits on it. A failure
/// already published (an abort, which also makes the aborting rank leave) is the cause.
void fail_transfer(transfer& t, ncclResult_t code, failure_reason reason,
                   const std::string& detail) {
  t.comm->failed();
  t.comm->record(code, detail);
  t.comm->publish_failure(reason, t.peer);
  t.done = true;
}

/// Moves what the ring allows; returns whether anything moved.
bool step(transfer& t) {
  const comm_state& c = *t.comm;
  uint64_t moved_now = 0;
  while (!t.done) {
    auto [at, n] = t.next_piece();
    const uint64_t k = t.is_send ? ring_write(c, t.src(), t.dst(), at, n)
                                 : ring_read(c, t.src(), t.dst(), at, n);
    const bool had_length = t.moved >= transfer::length_bytes;
    t.moved += k;
    moved_now += k;
    if (!t.is_send && !had_length && t.moved >= transfer::length_bytes &&
        t.length != t.bytes) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "rank %d expected %llu bytes from rank %d, which sent %llu",
                    c.rank(), static_cast<unsigned long long>(t.bytes), t.peer,
                    static_cast<unsigned long long>(t.length));
      fail_transfer(t, ncclInvalidUsage, failure_mismatch, buf);
      break;
    }
    t.done = t.moved == t.message_bytes();
    if (k < n) {
      break;
    }
  }
  if (moved_now > 0) {
    ring_bell(c.slot(t.peer).doorbell);  // the other end may be waiting on this ring
  }
  return moved_now > 0;
}

/// Fails t when its peer is gone, after one more step: a peer may have written its last
/// bytes and left between this rank's step and its look.
void check_peer(transfer& t) {
  comm_state& c = *t.comm;
  if (t.peer == c.rank() || c.failed()) {
    return;  // itself; or failed already, which the next pass reports
  }
  const rank_slot& s = c.slot(t.peer);
  const uint32_t state = s.state.load(std::memory_order_acquire);
  const pid_t pid = s.pid.load(std::memory_order_acquire);
  const bool left = state != slot_joined;
  const bool dead = !left && !alive(pid, s.start_time.load(std::memory_order_relaxed));
  if (!left && !dead) {
    return;
  }
  step(t);
  if (t.done) {
    return;
  }
  char buf[200];
  if (dead) {
    std::snprintf(buf, sizeof(buf),
                  "rank %d (pid %d) died with a transfer between it and rank %d unfinished",
                  t.peer, int(pid), c.rank());
    fail_transfer(t, ncclRemoteError, failure_died, buf);
  } else {
    std::snprintf(buf, sizeof(buf),
                  "rank %d left the communicator with a transfer between it and rank %d "
                  "unfinished",
                  t.peer, c.rank());
    fail_transfer(t, ncclRemoteError, failure_left, buf);
  }
}

/// What one host function moves: the transfers of one call, or of one group.
struct group {
  std::vector<transfer> transfers;
  cudaStream_t stream = nullptr;
};

/// Whether an earlier unfinished transfer of the group uses t's ring: messages on one
/// ring go in the order they were posted.
bool waits_behind(const group& g, size_t i) {
  const transfer& t = g.transfers[i];
  for (size_t j = 0; j < i; ++j) {
    const transfer& u = g.transfers[j];
    if (!u.done && u.comm == t.comm && u.is_send == t.is_send && u.peer == t.peer) {
      return true;
    }
  }
  return false;
}

/// One pass over the group's transfers; returns {anything moved, anything unfinished}.
std::pair<bool, bool> step_all(group& g) {
  bool moved = false;
  bool pending = false;
  for (size_t i = 0; i < g.transfers.size(); ++i) {
    transfer& t = g.transfers[i];
    if (t.done || waits_behind(g, i)) {
      pending |= !t.done;
      continue;
    }
    if (t.comm->failed()) {
      t.done = true;
      continue;
    }
    moved |= step(t);
    pending |= !t.done;
  }
  return {moved, pending};
}

const transfer& first_pending(const group& g) {
  for (const transfer& t : g.transfers) {
    if (!t.done) {
      return t;
    }
  }
  return g.transfers.front();
}

/// Moves every transfer of the group together, so a rank sending to itself, or two
/// ranks sending to each other, cannot deadlock on a full ring.
void progress(group& g) {
  std::vector<comm_state*> comms;
  for (const transfer& t : g.transfers) {
    comms.push_back(t.comm.get());
  }
  std::sort(comms.begin(), comms.end());  // one lock order for every thread
  comms.erase(std::unique(comms.begin(), comms.end()), comms.end());
  std::vector<std::unique_lock<std::mutex>> locks;
  for (comm_state* c : comms) {
    locks.emplace_back(c->progress_mutex);
  }
  for (;;) {
    // read before stepping, so a bell rung after the step ends the wait at once
    const comm_state& first = *first_pending(g).comm;
    std::atomic<uint32_t>& bell = first.slot(first.rank()).doorbell;
    const uint32_t seen = bell.load(std::memory_order_acquire);
    const auto [moved, pending] = step_all(g);
    if (!pending) {
      return;
    }
    if (moved) {
      continue;
    }
    futex_wait(bell, seen, poll_ms);  // a group over several comms polls the others
    for (size_t i = 0; i < g.transfers.size(); ++i) {
      if (!g.transfers[i].done && !waits_behind(g, i)) {
        check_peer(g.transfers[i]);
      }
    }
  }
}

void run_group(void* arg) {
  std::unique_ptr<group> g(static_cast<group*>(arg));
  progress(*g);
}

// -- streams ------------------------------------------------------------------------------

/// cudaError_t cudaLaunchHostFunc(cudaStream_t, cudaHostFn_t, void*), with the
/// emulator's enum read as its underlying int.
using launch_host_func_fn = int (*)(cudaStream_t, void (*)(void*), void*);

/// The process's cudaLaunchHostFunc (C linkage, as cudart's and cuda_emu.hpp's).
launch_host_func_fn launch_host_func() {
  return reinterpret_cast<launch_host_func_fn>(dlsym(RTLD_DEFAULT, "cudaLaunchHostFunc"));
}

ncclResult_t missing_launch_host_func(const char* call) {
  return fail(ncclUnhandledCudaError,
              "%s: cudaLaunchHostFunc is not defined in this process; link the CUDA "
              "emulator's runtime and export its symbols (ENABLE_EXPORTS)",
              call);
}

ncclResult_t enqueue(std::unique_ptr<group> g) {
  const launch_host_func_fn launch = launch_host_func();
  if (launch == nullptr) {
    return missing_launch_host_func("ncclGroupEnd");
  }
  group* raw = g.release();
  if (const int e = launch(raw->stream, run_group, raw); e != 0) {
    delete raw;
    return fail(ncclUnhandledCudaError, "cudaLaunchHostFunc failed with cudaError_t %d", e);
  }
  return ncclSuccess;
}

/// The calls between ncclGroupStart and ncclGroupEnd on this thread.
struct open_group {
  int depth = 0;
  std::unique_ptr<group> collected;
};
thread_local open_group current_group;

ncclResult_t check_transfer(const char* call, const void* buf, size_t count,
                            ncclDataType_t type, int peer, ncclComm_t comm) {
  if (comm == nullptr) {
    return fail(ncclInvalidArgument, "%s: comm is null", call);
  }
  if (type != ncclFloat32) {
    return fail(ncclInvalidArgument,
                "%s: data type %d is not supported; the emulator's NCCL moves ncclFloat32 (%d) "
                "only",
                call, int(type), int(ncclFloat32));
  }
  const int n = comm->state->nranks();
  if (peer < 0 || peer >= n) {
    return fail(ncclInvalidArgument, "%s: peer %d is not a rank of this %d-rank communicator",
                call, peer, n);
  }
  if (buf == nullptr && count > 0) {
    return fail(ncclInvalidArgument, "%s: the buffer is null for %zu elements", call, count);
  }
  if (count > SIZE_MAX / sizeof(float)) {
    return fail(ncclInvalidArgument, "%s: %zu elements overflow a byte count", call, count);
  }
  if (launch_host_func() == nullptr) {
    return missing_launch_host_func(call);
  }
  if (auto [code, detail] = comm->state->async_error(); code != ncclSuccess) {
    return fail(code, "%s: the communicator has failed: %s", call, detail.c_str());
  }
  return ncclSuccess;
}

/// Adds the transfer to this thread's open group, or runs it as a group of its own.
ncclResult_t post(const char* call, transfer t, cudaStream_t stream) {
  open_group& og = current_group;
  if (og.depth == 0) {
    auto g = std::make_unique<group>();
    g->stream = stream;
    g->transfers.push_back(std::move(t));
    return enqueue(std::move(g));
  }
  if (og.collected == nullptr) {
    og.collected = std::make_unique<group>();
    og.collected->stream = stream;
  } else if (og.collected->stream != stream) {
    return fail(ncclInvalidUsage,
                "%s: the calls of one group must share a stream (this one is on %p, the group's "
                "first on %p)",
                call, static_cast<void*>(stream), static_cast<void*>(og.collected->stream));
  }
  og.collected->transfers.push_back(std::move(t));
  return ncclSuccess;
}

ncclResult_t post_transfer(const char* call, bool is_send, const void* buf, size_t count,
                           ncclDataType_t type, int peer, ncclComm_t comm,
                           cudaStream_t stream) {
  if (const ncclResult_t r = check_transfer(call, buf, count, type, peer, comm);
      r != ncclSuccess) {
    return r;
  }
  transfer t;
  t.comm = comm->state;
  t.is_send = is_send;
  t.peer = peer;
  t.data = static_cast<char*>(const_cast<void*>(buf));  // written only when !is_send
  t.bytes = count * sizeof(float);
  t.length = is_send ? t.bytes : 0;
  return post(call, std::move(t), stream);
}

ncclResult_t init_rank(ncclComm_t* comm, int nranks, const ncclUniqueId& id, int rank) {
  if (comm == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommInitRank: comm is null");
  }
  *comm = nullptr;
  if (nranks < 1 || nranks > max_ranks) {
    return fail(ncclInvalidArgument,
                "ncclCommInitRank: nranks is %d; the emulator's NCCL joins 1 to %d ranks",
                nranks, max_ranks);
  }
  if (rank < 0 || rank >= nranks) {
    return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d is not in [0, %d)", rank,
                nranks);
  }
  const long timeout_ms = init_timeout_ms();
  if (timeout_ms < 0) {
    return last_error.code;
  }
  const auto deadline = clock_type::now() + std::chrono::milliseconds(timeout_ms);
  const std::string name = segment_name(id);
  const mapped m = map_segment(name, nranks, deadline);
  if (m.base == nullptr) {
    return m.code;
  }
  auto state = std::make_shared<comm_state>(m.base, rank, nranks);
  if (const ncclResult_t r = join(*state, name, deadline, timeout_ms); r != ncclSuccess) {
    return r;
  }
  *comm = new ncclComm{std::move(state)};
  return ncclSuccess;
}

}  // namespace

// -- the API ------------------------------------------------------------------------------

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id) {
  if (unique_id == nullptr) {
    return fail(ncclInvalidArgument, "ncclGetUniqueId: unique_id is null");
  }
  std::memset(unique_id->internal, 0, sizeof(unique_id->internal));
  if (getrandom(unique_id->internal, 16, 0) != 16) {
    return fail(ncclSystemError, "ncclGetUniqueId: getrandom: %s", std::strerror(errno));
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId comm_id, int rank) {
  return init_rank(comm, nranks, comm_id, rank);
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommDestroy: comm is null");
  }
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommAbort: comm is null");
  }
  comm->state->publish_failure(failure_aborted, comm->state->rank());
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (comm == nullptr || async_error == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommGetAsyncError: %s is null",
                comm == nullptr ? "comm" : "async_error");
  }
  auto [code, detail] = comm->state->async_error();
  *async_error = code;
  if (code != ncclSuccess) {
    fail(code, "%s", detail.c_str());  // for this thread's ncclGetErrorString(code)
  }
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return post_transfer("ncclSend", true, sendbuff, count, datatype, peer, comm, stream);
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return post_transfer("ncclRecv", false, recvbuff, count, datatype, peer, comm, stream);
}

ncclResult_t ncclGroupStart() {
  ++current_group.depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  open_group& og = current_group;
  if (og.depth == 0) {
    return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  }
  if (--og.depth > 0 || og.collected == nullptr) {
    return ncclSuccess;
  }
  return enqueue(std::move(og.collected));
}

const char* ncclGetErrorString(ncclResult_t result) {
  thread_error& e = last_error;
  if (e.code != result || e.detail.empty()) {
    return result_text(result);
  }
  e.text = std::string(result_text(result)) + ": " + e.detail;
  return e.text.c_str();
}

}  // extern "C"
