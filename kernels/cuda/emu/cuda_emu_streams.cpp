// The CPU emulation's streams and events (declared in cuda_emu.hpp), and the device faults
// that make a context unusable. Each stream is a FIFO of work run in order by its own
// worker thread, so a call that queues work (a launch, an async copy or memset, a
// stream-ordered free, an event record, a host function) returns at once, and a missing
// synchronisation shows as a wrong result or an AddressSanitizer report instead of
// passing by luck. A host function that blocks holds up only its own stream. The legacy
// default stream (nullptr) is one more stream per device, created at first use: its work
// waits for all earlier work on the device's blocking streams, and their later work
// waits for it; streams created with cudaStreamNonBlocking order with neither. A work
// item that fails (a kernel that trapped) marks its device faulted: later work on the
// device is dropped and every later call on it returns cudaErrorLaunchFailure. One
// mutex guards every stream's queue and counters, the events' marks and the faults; one
// condition variable announces every queued and every finished work item.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cuda/emu/cuda_emu.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

/// A point in a stream's work: reached once the stream has finished `n` items.
struct stream_mark {
  std::shared_ptr<CUstream_st> stream;
  uint64_t n = 0;
};

struct queued_work {
  baton::cuda_emu::stream_work work;
  std::vector<stream_mark> after;  // other streams' work it waits for (the legacy ordering)
};

}  // namespace

struct CUstream_st {
  int device = 0;
  bool blocking = true;  // orders with the legacy default stream
  bool legacy = false;
  bool destroyed = false;         // cudaStreamDestroy'ed: the worker ends once it drains
  std::deque<queued_work> queue;  // not yet started
  uint64_t n_queued = 0;          // items ever queued; n_done + 1 .. n_queued are pending
  uint64_t n_done = 0;
};

struct CUevent_st {
  unsigned flags = 0;
  stream_mark recorded;  // the last record's place; no stream before the first record
  std::shared_ptr<clock_type::time_point> reached_at;  // written by the stream's worker
};

namespace baton::cuda_emu {
namespace {

constexpr int max_devices = 8;

struct device_streams {
  std::shared_ptr<CUstream_st> legacy;                // created at first use
  std::vector<std::shared_ptr<CUstream_st>> streams;  // created ones until drained
  bool faulted = false;
};

struct stream_registry {
  std::mutex mu;
  std::condition_variable changed;
  device_streams devices[max_devices];
};

/// Never destroyed: workers may still wait on it while the process exits.
stream_registry& registry() {
  static stream_registry& r = *new stream_registry;
  return r;
}

thread_local bool on_worker = false;

bool reached(const stream_mark& m) { return m.stream->n_done >= m.n; }

bool reached_all(const std::vector<stream_mark>& marks) {
  return std::all_of(marks.begin(), marks.end(), reached);
}

stream_mark end_of(const std::shared_ptr<CUstream_st>& s) { return {s, s->n_queued}; }

/// CUDA forbids runtime calls in a host function; a waiting one would wait for itself.
void check_not_on_worker(const char* call) {
  if (on_worker) {
    std::fprintf(stderr,
                 "cuda_emu: %s inside a host function (cudaLaunchHostFunc), which must not "
                 "call the CUDA runtime\n",
                 call);
    std::abort();
  }
}

void retire(stream_registry& r, const std::shared_ptr<CUstream_st>& s) {
  std::vector<std::shared_ptr<CUstream_st>>& v = r.devices[s->device].streams;
  v.erase(std::remove(v.begin(), v.end(), s), v.end());
}

/// The worker: runs `s`'s work in order, each item once the marks it waits for are
/// reached, dropping it on a faulted device.
void run_stream(std::shared_ptr<CUstream_st> s) {
  on_worker = true;
  stream_registry& r = registry();
  std::unique_lock lock(r.mu);
  for (;;) {
    r.changed.wait(lock, [&] { return !s->queue.empty() || s->destroyed; });
    if (s->queue.empty()) {
      retire(r, s);
      r.changed.notify_all();
      return;
    }
    queued_work w = std::move(s->queue.front());
    s->queue.pop_front();
    r.changed.wait(lock, [&] { return reached_all(w.after); });
    if (!r.devices[s->device].faulted) {
      lock.unlock();
      const cudaError_t e = w.work();
      lock.lock();
      r.devices[s->device].faulted = r.devices[s->device].faulted || e != cudaSuccess;
    }
    ++s->n_done;
    r.changed.notify_all();
  }
}

std::shared_ptr<CUstream_st> start_stream(int device, bool blocking, bool legacy) {
  auto s = std::make_shared<CUstream_st>();
  s->device = device;
  s->blocking = blocking;
  s->legacy = legacy;
  std::thread(run_stream, s).detach();
  return s;
}

const std::shared_ptr<CUstream_st>& legacy_stream(stream_registry& r, int device) {
  device_streams& d = r.devices[device];
  if (!d.legacy) {
    d.legacy = start_stream(device, true, true);
  }
  return d.legacy;
}

/// The live stream behind a handle (nullptr: the current device's legacy stream), or
/// null for a handle that is not one.
std::shared_ptr<CUstream_st> find_stream(stream_registry& r, cudaStream_t handle) {
  if (handle == nullptr) {
    return legacy_stream(r, current_device);
  }
  for (const device_streams& d : r.devices) {
    for (const std::shared_ptr<CUstream_st>& s : d.streams) {
      if (s.get() == handle && !s->destroyed) {
        return s;
      }
    }
  }
  return nullptr;
}

/// The earlier work a new item on `s` must wait for: on the legacy stream, every blocking
/// stream's; on a blocking stream, the legacy stream's.
std::vector<stream_mark> implicit_waits(stream_registry& r, const CUstream_st& s) {
  std::vector<stream_mark> after;
  const device_streams& d = r.devices[s.device];
  if (s.legacy) {
    for (const std::shared_ptr<CUstream_st>& b : d.streams) {
      if (b->blocking && !reached(end_of(b))) {
        after.push_back(end_of(b));
      }
    }
  } else if (s.blocking && d.legacy && !reached(end_of(d.legacy))) {
    after.push_back(end_of(d.legacy));
  }
  return after;
}

/// Queues `work` on `s` (r.mu held) and returns the mark reached once it has run.
stream_mark push(stream_registry& r, const std::shared_ptr<CUstream_st>& s, stream_work work) {
  s->queue.push_back({std::move(work), implicit_waits(r, *s)});
  ++s->n_queued;
  r.changed.notify_all();
  return end_of(s);
}

cudaError_t device_error(const stream_registry& r, int device) {
  return r.devices[device].faulted ? cudaErrorLaunchFailure : cudaSuccess;
}

/// The live stream `handle` names, on a device that has not faulted: in `out`, or the
/// error to report (an unknown handle; the device's sticky fault).
cudaError_t usable_stream(stream_registry& r, cudaStream_t handle,
                          std::shared_ptr<CUstream_st>& out) {
  out = find_stream(r, handle);
  if (!out) {
    return cudaErrorInvalidResourceHandle;
  }
  return device_error(r, out->device);
}

/// Waits (r.mu held by `lock`) until every mark is reached; the device's sticky error,
/// if any, is the result.
cudaError_t wait_for(std::unique_lock<std::mutex>& lock, const std::vector<stream_mark>& marks,
                     int device) {
  stream_registry& r = registry();
  r.changed.wait(lock, [&] { return reached_all(marks); });
  return device_error(r, device);
}

}  // namespace

cudaError_t enqueue(cudaStream_t stream, stream_work work) {
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  std::shared_ptr<CUstream_st> s;
  if (const cudaError_t e = usable_stream(r, stream, s); e != cudaSuccess) {
    return e;
  }
  push(r, s, std::move(work));
  return cudaSuccess;
}

cudaError_t run_synchronously(stream_work work) {
  check_not_on_worker("a synchronous copy, memset or free");
  stream_registry& r = registry();
  std::unique_lock lock(r.mu);
  if (const cudaError_t e = device_error(r, current_device); e != cudaSuccess) {
    return e;
  }
  const stream_mark done = push(r, legacy_stream(r, current_device), std::move(work));
  return wait_for(lock, {done}, current_device);
}

cudaError_t sticky_error() {
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  return device_error(r, current_device);
}

}  // namespace baton::cuda_emu

using baton::cuda_emu::check_not_on_worker;
using baton::cuda_emu::current_device;
using baton::cuda_emu::device_error;
using baton::cuda_emu::end_of;
using baton::cuda_emu::find_stream;
using baton::cuda_emu::legacy_stream;
using baton::cuda_emu::reached;
using baton::cuda_emu::registry;
using baton::cuda_emu::set_error;
using baton::cuda_emu::stream_registry;
using baton::cuda_emu::wait_for;

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (stream == nullptr || (flags & ~cudaStreamNonBlocking) != 0) {
    return set_error(cudaErrorInvalidValue);
  }
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  const int device = current_device;
  if (const cudaError_t e = device_error(r, device); e != cudaSuccess) {
    return set_error(e);
  }
  const bool blocking = (flags & cudaStreamNonBlocking) == 0;
  r.devices[device].streams.push_back(baton::cuda_emu::start_stream(device, blocking, false));
  *stream = r.devices[device].streams.back().get();
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  const std::shared_ptr<CUstream_st> s = stream != nullptr ? find_stream(r, stream) : nullptr;
  if (!s) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  s->destroyed = true;  // its worker still runs what is queued, then ends
  r.changed.notify_all();
  return set_error(device_error(r, s->device));
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  check_not_on_worker("cudaStreamSynchronize");
  stream_registry& r = registry();
  std::unique_lock lock(r.mu);
  const std::shared_ptr<CUstream_st> s = find_stream(r, stream);
  if (!s) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  return set_error(wait_for(lock, {end_of(s)}, s->device));
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  std::shared_ptr<CUstream_st> s;
  if (const cudaError_t e = usable_stream(r, stream, s); e != cudaSuccess) {
    return set_error(e);
  }
  return reached(end_of(s)) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (fn == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  return set_error(baton::cuda_emu::enqueue(stream, [fn, user_data] {
    fn(user_data);
    return cudaSuccess;
  }));
}

cudaError_t cudaDeviceSynchronize() {
  check_not_on_worker("cudaDeviceSynchronize");
  stream_registry& r = registry();
  std::unique_lock lock(r.mu);
  const int device = current_device;
  std::vector<stream_mark> marks{end_of(legacy_stream(r, device))};
  for (const std::shared_ptr<CUstream_st>& s : r.devices[device].streams) {
    marks.push_back(end_of(s));
  }
  return set_error(wait_for(lock, marks, device));
}

// -- events ------------------------------------------------------------------------------

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (event == nullptr || (flags & ~cudaEventDisableTiming) != 0) {
    return set_error(cudaErrorInvalidValue);
  }
  if (const cudaError_t e = baton::cuda_emu::sticky_error(); e != cudaSuccess) {
    return set_error(e);
  }
  *event = new CUevent_st{flags, {}, nullptr};
  return cudaSuccess;
}

/// A pending record does not refer to the event (only to its own time slot), so the
/// event may go while the record is queued, as CUDA allows.
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  std::shared_ptr<CUstream_st> s;
  if (const cudaError_t e = usable_stream(r, stream, s); e != cudaSuccess) {
    return set_error(e);
  }
  auto at = std::make_shared<clock_type::time_point>();
  event->recorded = push(r, s, [at] {
    *at = clock_type::now();
    return cudaSuccess;
  });
  event->reached_at = at;
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (event == nullptr) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  if (!event->recorded.stream) {
    return cudaSuccess;  // never recorded: nothing to wait for, as in CUDA
  }
  const int device = event->recorded.stream->device;
  if (const cudaError_t e = device_error(r, device); e != cudaSuccess) {
    return set_error(e);
  }
  return reached(event->recorded) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  check_not_on_worker("cudaEventSynchronize");
  if (event == nullptr) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  stream_registry& r = registry();
  std::unique_lock lock(r.mu);
  if (!event->recorded.stream) {
    return cudaSuccess;
  }
  const stream_mark m = event->recorded;
  return set_error(wait_for(lock, {m}, m.stream->device));
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) {
    return set_error(cudaErrorInvalidValue);
  }
  stream_registry& r = registry();
  std::lock_guard lock(r.mu);
  if (start == nullptr || end == nullptr || !start->recorded.stream || !end->recorded.stream ||
      ((start->flags | end->flags) & cudaEventDisableTiming) != 0) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  if (!reached(start->recorded) || !reached(end->recorded)) {
    return cudaErrorNotReady;  // not an error: cudaGetLastError does not see it
  }
  *ms = std::chrono::duration<float, std::milli>(*end->reached_at - *start->reached_at).count();
  return cudaSuccess;
}
