// kernels/cpu/machine_limits: every reader sums what it reads (each scheme of each isa the
// CPU runs gives the word sum of a known buffer, at sizes that leave tails, on one thread
// and split over a pool), and a measurement returns positive finite figures whose best
// read is the best of its schemes. No speed is asserted: that is for benchmarks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/machine_limits.hpp"

namespace baton {
namespace {

using cpu::isa;

/// p[n] of random words and their wrapping sum, computed here word by word.
struct known_buffer {
  std::vector<uint8_t> bytes;
  uint64_t sum = 0;
};

known_buffer make_buffer(size_t n, uint32_t seed) {
  known_buffer b;
  b.bytes.resize(n);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t w = rng();
    std::memcpy(b.bytes.data() + i, &w, 8);
    b.sum += w;
  }
  return b;
}

std::vector<isa> runnable_isas() {
  std::vector<isa> v;
  for (isa x : {isa::scalar, isa::avx2, isa::avx512}) {
    if (cpu::isa_supported(x)) {
      v.push_back(x);
    }
  }
  return v;
}

TEST(machine_limits, every_scheme_sums_the_buffer) {
  // sizes below one step, with tails after each stream, and unaligned starts
  for (size_t n : {size_t{0}, size_t{8}, size_t{248}, size_t{256}, size_t{4096 + 72},
                   size_t{3 * 256 * 4 + 40}, size_t{1 << 16}, size_t{(1 << 20) + 8}}) {
    const known_buffer b = make_buffer(n + 8, static_cast<uint32_t>(n));
    const known_buffer shifted = [&] {
      known_buffer s;
      s.bytes.assign(b.bytes.begin() + 8, b.bytes.end());
      for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, s.bytes.data() + i, 8);
        s.sum += w;
      }
      return s;
    }();
    for (isa v : runnable_isas()) {
      for (const cpu::read_scheme& s : cpu::read_schemes(v)) {
        EXPECT_EQ(cpu::read_sum(s, b.bytes.data(), n + 8), b.sum)
            << cpu::read_scheme_name(s) << " over " << n + 8 << " bytes";
        // p + 8 starts mid-line: the loads need no alignment
        EXPECT_EQ(cpu::read_sum(s, b.bytes.data() + 8, n), shifted.sum)
            << cpu::read_scheme_name(s) << " over " << n << " bytes from an offset of 8";
      }
    }
  }
}

TEST(machine_limits, a_pool_sums_the_buffer) {
  const size_t n = (size_t{3} << 20) + 4096 + 24;  // parts of whole pages and a tail
  const known_buffer b = make_buffer(n, 7);
  for (int n_threads : {1, 2, 3}) {
    cpu::thread_pool pool(n_threads);
    for (isa v : runnable_isas()) {
      for (const cpu::read_scheme& s : cpu::read_schemes(v)) {
        EXPECT_EQ(cpu::read_sum(pool, s, b.bytes.data(), n), b.sum)
            << cpu::read_scheme_name(s) << " on " << n_threads << " threads";
      }
    }
  }
}

TEST(machine_limits, schemes_are_named_apart) {
  for (isa v : {isa::scalar, isa::avx2, isa::avx512}) {
    const auto schemes = cpu::read_schemes(v);
    ASSERT_FALSE(schemes.empty()) << cpu::isa_name(v);
    for (size_t i = 0; i < schemes.size(); ++i) {
      for (size_t j = i + 1; j < schemes.size(); ++j) {
        EXPECT_NE(cpu::read_scheme_name(schemes[i]), cpu::read_scheme_name(schemes[j]));
      }
    }
  }
  EXPECT_EQ(cpu::read_scheme_name({512, 8192, 2}), "avx512 pf8192 x2");
  EXPECT_EQ(cpu::read_scheme_name({256, 0, 1}), "avx2 x1");
  EXPECT_EQ(cpu::read_scheme_name({512, 8192, 1, true}), "avx512 pf8192:l2 x1");
}

TEST(machine_limits, measurement_gives_positive_finite_figures) {
  cpu::thread_pool pool(2);
  for (isa v : runnable_isas()) {
    cpu::limits_options o;
    o.v = v;
    o.read_bytes = size_t{64} << 20;  // the smallest it takes: a test, not a measurement
    o.reps = 1;
    o.min_seconds = 0.002;
    const cpu::machine_limits m = cpu::measure_machine_limits(pool, o);
    SCOPED_TRACE(std::string(cpu::isa_name(v)));
    EXPECT_EQ(m.v, v);
    EXPECT_EQ(m.n_threads, 2);
    EXPECT_EQ(m.read_bytes, o.read_bytes);
    ASSERT_EQ(m.reads.size(), cpu::read_schemes(v).size());
    for (const cpu::read_figure& f : m.reads) {
      EXPECT_TRUE(std::isfinite(f.gb_per_s) && f.gb_per_s > 0) << read_scheme_name(f.scheme);
      EXPECT_GE(m.best_read.gb_per_s, f.gb_per_s) << read_scheme_name(f.scheme);
    }
    EXPECT_EQ(read_scheme_name(m.best_read.scheme), [&] {
      for (const cpu::read_figure& f : m.reads) {
        if (f.gb_per_s == m.best_read.gb_per_s) {
          return read_scheme_name(f.scheme);
        }
      }
      return std::string("none");
    }());
    for (double x : {m.int8_gops_per_core, m.int8_gops, m.f32_gflops_per_core, m.f32_gflops,
                     m.seconds}) {
      EXPECT_TRUE(std::isfinite(x) && x > 0) << x;
    }
  }
}

TEST(machine_limits, default_buffer_is_at_least_a_gibibyte) {
  EXPECT_GE(cpu::default_read_bytes(), size_t{1} << 30);
  EXPECT_EQ(cpu::default_read_bytes() % 4096, 0u);
}

}  // namespace
}  // namespace baton
