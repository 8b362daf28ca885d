// machine_limits.hpp: the schemes and the driver (buffer, threads, timings), and the
// scalar readers and peak loops that the SIMD twins stand beside.
#include "kernels/cpu/machine_limits.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/machine_limits_impl.hpp"

namespace baton::cpu {

namespace {

using clk = std::chrono::steady_clock;

double seconds_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

/// Where the checksums go, so that no reader or peak loop is optimized away.
volatile uint64_t sink = 0;
/// The peak loops' inputs: a value the compiler cannot know.
volatile uint32_t seed = 0x5a3c9671u;

/// The word sum of p[n] in S streams of 64-bit words (the compiler may vectorize this to
/// the baseline's SSE2; it is the scalar machine's reader either way).
uint64_t read_sum_64(int n_streams, const uint8_t* p, size_t n) {
  const size_t len = detail::stream_len(n, n_streams);
  uint64_t a[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < len; i += detail::read_step) {
    for (int s = 0; s < n_streams; ++s) {
      const uint8_t* q = p + static_cast<size_t>(s) * len + i;
      for (size_t o = 0; o < detail::read_step; o += 32) {
        for (size_t w = 0; w < 4; ++w) {
          uint64_t x;
          std::memcpy(&x, q + o + 8 * w, 8);
          a[w] += x;
        }
      }
    }
  }
  const size_t done = static_cast<size_t>(n_streams) * len;
  return a[0] + a[1] + a[2] + a[3] + detail::sum_words(p + done, n - done);
}

/// Eight independent chains c ← c·a + b of 32-bit integer multiply-adds (what a scalar
/// int8 dot product costs per byte pair; 1 MAC = 2 ops). Named locals, not an array, so
/// that every chain lives in a register; the empty asm keeps the compiler from
/// vectorizing the chains.
detail::peak_run int8_peak_scalar(int64_t iters, uint32_t s) {
  const uint32_t a = s & 0xffu, b = (s >> 8) & 0xffu;
  uint32_t c0 = 0, c1 = 1, c2 = 2, c3 = 3, c4 = 4, c5 = 5, c6 = 6, c7 = 7;
  const auto mac = [a, b](uint32_t& c) {
    asm volatile("" : "+r"(c));
    c = c * a + b;
  };
  for (int64_t it = 0; it < iters; ++it) {
    mac(c0), mac(c1), mac(c2), mac(c3), mac(c4), mac(c5), mac(c6), mac(c7);
  }
  return {static_cast<double>(iters) * 8 * 2, uint64_t{c0} + c1 + c2 + c3 + c4 + c5 + c6 + c7};
}

/// Eight independent chains x ← x·a + b in f32 (a multiply then an add, 2 flops; a just
/// below 1, so x settles at b / (1 − a): no overflow, no subnormals).
detail::peak_run f32_peak_scalar(int64_t iters, uint32_t s) {
  const float a = 0.999f + static_cast<float>(s & 1) * 1e-4f, b = 1e-3f;
  float x0 = 0, x1 = 1, x2 = 2, x3 = 3, x4 = 4, x5 = 5, x6 = 6, x7 = 7;
  const auto mac = [a, b](float& x) {
    asm volatile("" : "+x"(x));
    x = x * a + b;
  };
  for (int64_t it = 0; it < iters; ++it) {
    mac(x0), mac(x1), mac(x2), mac(x3), mac(x4), mac(x5), mac(x6), mac(x7);
  }
  return {static_cast<double>(iters) * 8 * 2,
          static_cast<uint64_t>(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7)};
}

using peak_fn = detail::peak_run (*)(int64_t, uint32_t);

peak_fn int8_peak_of(isa v) {
  switch (v) {
    case isa::avx512:
      return detail::int8_peak_avx512;
    case isa::avx2:
      return detail::int8_peak_avx2;
    case isa::scalar:
      break;
  }
  return int8_peak_scalar;
}

peak_fn f32_peak_of(isa v) {
  switch (v) {
    case isa::avx512:
      return detail::f32_peak_avx512;
    case isa::avx2:
      return detail::f32_peak_avx2;
    case isa::scalar:
      break;
  }
  return f32_peak_scalar;
}

/// Peak rates of `fn` in 1e9 ops/s: {one thread, all of pool's threads at once}. The
/// iteration count is doubled until one thread's run lasts min_seconds; every thread then
/// runs that many, best of reps.
std::pair<double, double> measure_peak(thread_pool& pool, peak_fn fn, const limits_options& o) {
  int64_t iters = 1 << 12;
  for (;;) {
    const auto t0 = clk::now();
    sink = sink + fn(iters, seed).checksum;
    if (seconds_since(t0) >= o.min_seconds || iters >= (int64_t{1} << 40)) {
      break;
    }
    iters *= 2;
  }
  double one = 0, all = 0;
  std::vector<detail::peak_run> runs(static_cast<size_t>(pool.n_threads()));
  for (int r = 0; r < o.reps; ++r) {
    const auto t0 = clk::now();
    const detail::peak_run p = fn(iters, seed);
    one = std::max(one, p.ops / seconds_since(t0) / 1e9);
    sink = sink + p.checksum;

    const auto t1 = clk::now();
    pool.run([&](int ith, int) { runs[static_cast<size_t>(ith)] = fn(iters, seed); });
    const double s = seconds_since(t1);
    double ops = 0;
    for (const auto& q : runs) {
      ops += q.ops;
      sink = sink + q.checksum;
    }
    all = std::max(all, ops / s / 1e9);
  }
  return {one, all};
}

/// An anonymous mapping of `bytes`, or null, asking for 2 MiB pages (MADV_HUGEPAGE) as a
/// CPU stage's copy of its weights gets them (a stream over 1 GiB read as fast with 4 KiB
/// pages on Zen 5, 65-69 GB/s on 2 threads; weights read 7-10 % faster from 2 MiB pages
/// on Zen 4, so the ceiling is taken with them).
uint8_t* map_bytes(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return nullptr;
  }
  ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without it the pages are 4 KiB
  return static_cast<uint8_t*>(p);
}

/// Thread ith's part of a buffer of n bytes: 4 KiB-aligned, so every part is whole words.
std::pair<size_t, size_t> part_of(size_t n, int ith, int n_threads) {
  const auto [b, e] = thread_pool::split(static_cast<int64_t>(n), ith, n_threads, 4096);
  return {static_cast<size_t>(b), static_cast<size_t>(e)};
}

}  // namespace

std::string read_scheme_name(const read_scheme& s) {
  std::string name = s.vector_bits == 512 ? "avx512" : s.vector_bits == 256 ? "avx2" : "scalar";
  if (s.prefetch_bytes > 0) {
    name += " pf" + std::to_string(s.prefetch_bytes) + (s.prefetch_l2 ? ":l2" : "");
  }
  return name + " x" + std::to_string(s.n_streams);
}

std::vector<read_scheme> read_schemes(isa v) {
  // 8 KiB is the distance the matmul kernels prefetch at; 2 and 32 KiB bracket it
  constexpr int pf_near = 2048, pf_mid = 8192, pf_far = 32768;
  switch (v) {
    case isa::scalar:
      return {{64, 0, 1}, {64, 0, 2}, {64, 0, 4}};
    case isa::avx2:
      return {{256, 0, 1},       {256, pf_near, 1},       {256, pf_mid, 1},
              {256, pf_far, 1},  {256, 0, 2},             {256, 0, 4},
              {256, pf_mid, 2},  {256, pf_mid, 4},        {256, pf_mid, 1, true},
              {256, pf_far, 1, true}};
    case isa::avx512:
      return {{256, 0, 1},       {512, 0, 1},             {512, pf_near, 1},
              {512, pf_mid, 1},  {512, pf_far, 1},        {512, 0, 2},
              {512, 0, 4},       {512, pf_mid, 2},        {512, pf_mid, 4},
              {512, pf_mid, 1, true}, {512, pf_far, 1, true}, {512, pf_mid, 2, true}};
  }
  return {};
}

uint64_t read_sum(const read_scheme& s, const uint8_t* p, size_t n) {
  if (n % 8 != 0 || (s.n_streams != 1 && s.n_streams != 2 && s.n_streams != 4) ||
      s.prefetch_bytes < 0) {
    std::abort();
  }
  switch (s.vector_bits) {
    case 64:
      return read_sum_64(s.n_streams, p, n);
    case 256:
      if (!isa_supported(isa::avx2)) {
        std::abort();
      }
      return detail::read_sum_avx2(s.prefetch_bytes, s.prefetch_l2, s.n_streams, p, n);
    case 512:
      if (!isa_supported(isa::avx512)) {
        std::abort();
      }
      return detail::read_sum_avx512(s.prefetch_bytes, s.prefetch_l2, s.n_streams, p, n);
  }
  std::abort();
}

uint64_t read_sum(thread_pool& pool, const read_scheme& s, const uint8_t* p, size_t n) {
  std::vector<uint64_t> sums(static_cast<size_t>(pool.n_threads()));
  pool.run([&](int ith, int nth) {
    const auto [b, e] = part_of(n, ith, nth);
    sums[static_cast<size_t>(ith)] = read_sum(s, p + b, e - b);
  });
  uint64_t total = 0;
  for (uint64_t x : sums) {
    total += x;
  }
  return total;
}

std::vector<read_figure> measure_reads(thread_pool& pool, isa v, const uint8_t* p, size_t n,
                                       int reps) {
  std::vector<read_figure> figures;
  for (const read_scheme& s : read_schemes(v)) {
    figures.push_back({s, 0.0});
  }
  for (int r = 0; r < reps; ++r) {
    for (read_figure& f : figures) {
      const auto t0 = clk::now();
      sink = sink + read_sum(pool, f.scheme, p, n);
      f.gb_per_s = std::max(f.gb_per_s, static_cast<double>(n) / seconds_since(t0) / 1e9);
    }
  }
  return figures;
}

size_t default_read_bytes() {
  const long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
  const size_t gib = size_t{1} << 30;
  return llc > 0 ? std::max(gib, (2 * static_cast<size_t>(llc) + 4095) / 4096 * 4096) : gib;
}

read_meter::read_meter(thread_pool& pool, isa v, size_t bytes) : pool_(pool), v_(v) {
  constexpr size_t min_bytes = size_t{64} << 20;
  size_t n = std::max(bytes / 4096 * 4096, min_bytes);
  uint8_t* p = map_bytes(n);
  while (!p && n / 2 >= min_bytes) {
    n = n / 2 / 4096 * 4096;
    p = map_bytes(n);
  }
  if (!p) {
    std::abort();
  }
  // written by the threads that will read each part, so its pages are theirs and exist
  pool.run([&](int ith, int nth) {
    const auto [b, e] = part_of(n, ith, nth);
    for (size_t i = b; i < e; i += 8) {
      const uint64_t w = i * 0x9e3779b97f4a7c15ull;
      std::memcpy(p + i, &w, 8);
    }
  });
  p_ = p;
  n_ = n;
}

read_meter::~read_meter() { ::munmap(p_, n_); }

std::vector<read_figure> read_meter::measure(int reps) {
  return measure_reads(pool_, v_, p_, n_, reps);
}

read_figure best_of(const std::vector<read_figure>& reads) {
  read_figure best;
  for (const read_figure& f : reads) {
    if (f.gb_per_s > best.gb_per_s) {
      best = f;
    }
  }
  return best;
}

machine_limits measure_machine_limits(thread_pool& pool, const limits_options& o) {
  const auto t0 = clk::now();
  if (!isa_supported(o.v)) {
    std::abort();
  }
  machine_limits m;
  m.v = o.v;
  m.n_threads = pool.n_threads();
  limits_options po = o;
  po.reps = std::max(1, o.reps);
  const int reps = po.reps;

  const auto [int8_one, int8_all] = measure_peak(pool, int8_peak_of(o.v), po);
  m.int8_gops_per_core = int8_one;
  m.int8_gops = int8_all;
  const auto [f32_one, f32_all] = measure_peak(pool, f32_peak_of(o.v), po);
  m.f32_gflops_per_core = f32_one;
  m.f32_gflops = f32_all;

  read_meter meter(pool, o.v, o.read_bytes > 0 ? o.read_bytes : default_read_bytes());
  m.read_bytes = meter.bytes();
  m.reads = meter.measure(reps);
  m.best_read = best_of(m.reads);
  m.seconds = seconds_since(t0);
  return m;
}

}  // namespace baton::cpu
