// This machine's limits, measured by the binary that runs the kernels, so that a kernel's
// or a model's speed can be stated as a share of them: read bandwidth from DRAM (the best
// of several ways of reading: vector widths, software prefetch at a few distances, several
// streams per thread), the int8 dot-product peak (vpdpbusd on zmm, or AVX2's
// vpmaddubsw + vpmaddwd) and the f32 FMA peak, per core and for n threads of a pool.
//
// Each figure is the best of a few timings: a ceiling is what the machine did at least
// once, not its average on a busy day. The peaks are register-resident loops of
// independent instructions (enough accumulators to cover the latency), so they measure
// issue rate, not memory. Nothing here is a test: speed goals belong to benchmarks, and
// the tests check only that each reader sums what it reads (read_sum).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace baton::cpu {

/// One way of reading a buffer. A thread's share is cut into `n_streams` contiguous parts
/// read side by side (one 256-byte step of each per iteration), so that several DRAM pages
/// are open at once; a software prefetch, when asked, fetches each line read
/// `prefetch_bytes` ahead of it in its own stream, into L1 or (prefetch_l2) into L2 only,
/// as the matmul kernels prefetch weights.
struct read_scheme {
  int vector_bits = 512;     ///< 64 (scalar words), 256 (ymm) or 512 (zmm) loads
  int prefetch_bytes = 0;    ///< 0: no software prefetch
  int n_streams = 1;         ///< 1, 2 or 4
  bool prefetch_l2 = false;  ///< prefetcht1 (to L2), not prefetcht0 (to L1)
};

/// "avx512 pf8192 x2", "avx512 pf8192:l2 x1": the load width, the prefetch distance (if
/// any) and where it prefetches to, the streams.
std::string read_scheme_name(const read_scheme& s);

/// The schemes isa `v` can run, the narrowest first: scalar words (scalar), 256-bit loads
/// (avx2 and up), 512-bit loads alone, with prefetch at 2, 8 and 32 KiB, and in 2 and 4
/// streams with and without prefetch (avx512); avx2 has its own prefetch and stream rows;
/// both also prefetch into L2 at 8 and 32 KiB (avx512 at 8 KiB in 2 streams too).
std::vector<read_scheme> read_schemes(isa v);

/// The wrapping sum of the n / 8 little-endian 64-bit words of p[n], read as `s` reads
/// it: the same for every scheme, which is what makes the readers checkable. `n` must be
/// a multiple of 8 (aborts otherwise); `p` needs no alignment. Aborts when this CPU cannot
/// run the scheme's loads.
uint64_t read_sum(const read_scheme& s, const uint8_t* p, size_t n);

/// Where the measurement may go and how long it may take.
struct limits_options {
  isa v = best_isa();       ///< widest vectors the readers and peak loops may use
  size_t read_bytes = 0;    ///< buffer read; 0: default_read_bytes()
  int reps = 3;             ///< timings per figure, the best taken
  double min_seconds = 0.02;  ///< a peak loop runs at least this long per timing
};

/// max(1 GiB, 2 × the last-level cache the OS reports): a buffer read round and round that
/// size leaves nothing in cache for the next pass (a cyclic sweep of twice the cache evicts
/// every line before it comes back).
size_t default_read_bytes();

struct read_figure {
  read_scheme scheme;
  double gb_per_s = 0;  ///< 1e9 bytes/s, all threads together, best of reps
};

struct machine_limits {
  isa v = isa::scalar;
  int n_threads = 1;
  size_t read_bytes = 0;           ///< buffer size the read figures come from
  std::vector<read_figure> reads;  ///< [read_schemes(v)]
  read_figure best_read;           ///< the fastest of reads
  /// int8 dot products, 1 multiply-accumulate = 2 ops, in 1e9 ops/s
  double int8_gops_per_core = 0;   ///< one thread alone
  double int8_gops = 0;            ///< n_threads at once
  /// f32 fused multiply-add (scalar: multiply then add), 2 flops each, in 1e9 flops/s
  double f32_gflops_per_core = 0;
  double f32_gflops = 0;
  double seconds = 0;              ///< the whole measurement took
};

/// The fastest of `reads` (a zero figure when empty).
read_figure best_of(const std::vector<read_figure>& reads);

/// A buffer of `bytes` (at least 64 MiB: halved until it can be mapped, else aborts),
/// written by `pool`'s threads, to measure the read bandwidth on them again and again —
/// next to a benchmark's runs, so that a speed is compared with the bandwidth of the
/// same minutes (on a shared machine it moves by 2× from minute to minute).
class read_meter {
 public:
  read_meter(thread_pool& pool, isa v, size_t bytes);
  ~read_meter();
  read_meter(const read_meter&) = delete;
  read_meter& operator=(const read_meter&) = delete;

  size_t bytes() const { return n_; }
  /// measure_reads over the buffer: every scheme of read_schemes(v), the best of reps.
  std::vector<read_figure> measure(int reps);

 private:
  thread_pool& pool_;
  isa v_;
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

/// Measures the limits on `pool`'s threads (the calling thread is thread 0). The buffer
/// is allocated and first touched by the threads that read it, then freed; when
/// `read_bytes` cannot be mapped it is halved until it can (at least 64 MiB, else
/// aborts). Takes a few seconds at the default 1 GiB.
machine_limits measure_machine_limits(thread_pool& pool, const limits_options& o = {});

/// Reads p[n] with scheme `s` split over `pool`'s threads (each a 4 KiB-aligned part), once;
/// the word sum of p[n] (read_sum's), added up from the threads' parts.
uint64_t read_sum(thread_pool& pool, const read_scheme& s, const uint8_t* p, size_t n);

/// Every scheme of read_schemes(v) over p[n] on `pool`'s threads, timed `reps` times each
/// (round after round over all schemes, so a passing disturbance hurts no scheme alone),
/// the best of each: [read_schemes(v)]. `p` should have been written already, so that the
/// first timing pays no page faults.
std::vector<read_figure> measure_reads(thread_pool& pool, isa v, const uint8_t* p, size_t n,
                                       int reps);

}  // namespace baton::cpu
