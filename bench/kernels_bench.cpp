// CPU matmul throughput per weight type and isa at the Llama-3.2-1B shapes, next to the
// machine's read bandwidth measured in the same binary (stream_read: the best of
// kernels/cpu/machine_limits' read schemes, the ceiling `baton bench limits` states).
// Decode (n_tokens = 1) streams weights from DRAM: the benchmark cycles over enough
// copies of the matrix (>= 512 MiB) that none is still in L3, and reports weight GB/s.
// BATON_BENCH_DECODE_MIB=N cycles over N MiB instead: 0 reads one copy, from cache, which
// states what the kernel's instructions allow (its ceiling in the machine's fast minutes).
// Prefill (n_tokens = 128) is compute-bound and reports GFLOP/s (2 · n_in · n_out ·
// n_tokens per call).
// "threads:2" runs split the rows over a second, spinning thread, as a pool would.
//
// Nothing is timed unchecked (as llm.c's dev/cuda mains do): before its first timing each
// benchmark runs its kernel once on the inputs it will time and compares the result with
// the scalar reference (isa::scalar) — activation conversion bit-exact, as matmul.hpp
// promises; a matmul within normalized mean squared error 1e-10 (only the summation order
// of per-block float terms may differ, the bound tests/matmul_test.cpp uses); a two-thread
// row split bit-identical to the same isa's one call. A mismatch prints the kernel, type,
// shape and the error, and the binary exits 1 before anything is timed. The scalar rows
// of a prefill (n_tokens = 128) are computed for three tokens only: an element depends on
// its two rows alone (matmul.hpp), so those tokens stand for the others.
//
//   ./build/bin/bench_kernels --benchmark_filter='stream_read|/avx512/'
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/machine_limits.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/ggml_type.hpp"

namespace {

using baton::ggml_type;
using baton::cpu::isa;

constexpr size_t k_stream_bytes = size_t{1} << 30;    // read benchmark: 1 GiB
constexpr size_t k_decode_bytes = size_t{512} << 20;  // weight copies cycled by decode

/// Fast deterministic bytes (splitmix64).
void fill_random(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(p + i, &z, 8);
  }
}

/// A second thread that spins until handed work, so a 2-thread run pays no wake-up.
class helper_thread {
 public:
  helper_thread() : t_([this] { loop(); }) {}
  ~helper_thread() {
    stop_.store(true);
    t_.join();
  }
  /// Runs a() here and b() on the helper, returns when both are done.
  void run(const std::function<void()>& a, const std::function<void()>& b) {
    job_ = &b;
    go_.store(1, std::memory_order_release);
    a();
    for (int spins = 0; go_.load(std::memory_order_acquire) != 0; ++spins) {
      pause(spins);
    }
  }

 private:
  /// Spins briefly, then yields: on a loaded machine a pure spin holds a core that the
  /// other half of the work may be waiting for.
  static void pause(int spins) {
    if (spins < 4096) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
  void loop() {
    for (int spins = 0; !stop_.load(std::memory_order_relaxed); ++spins) {
      if (go_.load(std::memory_order_acquire) == 1) {
        (*job_)();
        go_.store(0, std::memory_order_release);
        spins = 0;
      } else {
        pause(spins);
      }
    }
  }
  const std::function<void()>* job_ = nullptr;
  std::atomic<int> go_{0};
  std::atomic<bool> stop_{false};
  std::thread t_;
};

// -- checks against the scalar reference ---------------------------------------------

/// Bound on nmse(kernel, scalar) for a whole matmul: per-block integer dots are exact,
/// only the float summation order differs (tests/matmul_test.cpp uses the same bound).
constexpr double k_matmul_nmse_max = 1e-10;

/// Prints what failed and exits 1: a kernel that computes wrongly is not timed.
[[noreturn]] void check_failed(const std::string& kernel, const std::string& what) {
  std::fprintf(stderr, "bench_kernels: %s fails its check, not timed: %s\n",
               kernel.c_str(), what.c_str());
  std::exit(1);
}

/// Bytes of weight copies decode cycles over: BATON_BENCH_DECODE_MIB (0 to 16384 MiB)
/// when set, else k_decode_bytes. Anything else set there ends the run with its reason.
size_t decode_bytes_from_env() {
  const char* mib = std::getenv("BATON_BENCH_DECODE_MIB");
  if (mib == nullptr) {
    return k_decode_bytes;
  }
  constexpr unsigned long long max_mib = 16384;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(mib, &end, 10);
  if (*mib < '0' || *mib > '9' || *end != '\0' || errno != 0 || n > max_mib) {
    std::fprintf(stderr,
                 "bench_kernels: BATON_BENCH_DECODE_MIB=%s: expected a whole number of MiB "
                 "from 0 to %llu\n",
                 mib, max_mib);
    std::exit(2);
  }
  return static_cast<size_t>(n) << 20;
}

/// True the first time `kernel` is named: google benchmark calls a benchmark function once
/// per trial, and one check per kernel is enough.
bool first_check(const std::string& kernel) {
  static std::set<std::string> checked;
  return checked.insert(kernel).second;
}

/// got[n] equals ref[n] byte for byte, or this exits naming the first byte that differs.
void check_bytes_equal(const std::string& kernel, const uint8_t* ref, const uint8_t* got,
                       size_t n, const std::string& where) {
  for (size_t i = 0; i < n; ++i) {
    if (ref[i] != got[i]) {
      check_failed(kernel, where + ": byte " + std::to_string(i) + " is " +
                               std::to_string(got[i]) + ", the scalar reference's " +
                               std::to_string(ref[i]) + " (promised bit-exact)");
    }
  }
}

/// Normalized mean squared error of got against ref over pairs (got[i], ref[i]).
struct error_stats {
  double err = 0.0, norm = 0.0, max_abs = 0.0;
  double nmse() const { return norm > 0.0 ? err / norm : err; }
  void add(float got, float ref) {
    const double d = static_cast<double>(got) - ref;
    err += d * d;
    norm += static_cast<double>(ref) * ref;
    max_abs = std::max(max_abs, std::fabs(d));
  }
};

// -- read bandwidth ---------------------------------------------------------------

struct aligned_buffer {
  explicit aligned_buffer(size_t n)
      : p(static_cast<uint8_t*>(std::aligned_alloc(4096, n))), size(n) {}
  ~aligned_buffer() { std::free(p); }
  uint8_t* p;
  size_t size;
};

/// The machine's read bandwidth as `baton bench limits` states it: the best of
/// cpu::read_schemes (load widths, software prefetch, streams per thread), chosen once per
/// thread count over the same buffer, then timed with the same reader (labelled with it).
/// Checked first, as every kernel here is: its sum is the buffer's word sum.
void bm_read(benchmark::State& state, int n_threads) {
  static aligned_buffer buf(k_stream_bytes);
  static bool filled = false;
  static uint64_t word_sum = 0;
  if (!filled) {
    fill_random(buf.p, buf.size, 1);
    for (size_t i = 0; i < buf.size; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.p + i, 8);
      word_sum += w;
    }
    filled = true;
  }
  baton::cpu::thread_pool pool(n_threads);
  static std::map<int, baton::cpu::read_scheme> best_of;  // [n_threads]
  if (!best_of.count(n_threads)) {
    const auto figures =
        baton::cpu::measure_reads(pool, baton::cpu::best_isa(), buf.p, buf.size, 2);
    const auto faster = [](const auto& a, const auto& b) { return a.gb_per_s < b.gb_per_s; };
    const baton::cpu::read_scheme best =
        std::max_element(figures.begin(), figures.end(), faster)->scheme;
    const uint64_t got = baton::cpu::read_sum(pool, best, buf.p, buf.size);
    if (got != word_sum) {
      check_failed("stream_read " + baton::cpu::read_scheme_name(best),
                   "sum " + std::to_string(got) + ", the buffer's " + std::to_string(word_sum));
    }
    best_of[n_threads] = best;
  }
  const baton::cpu::read_scheme scheme = best_of[n_threads];
  for (auto _ : state) {
    benchmark::DoNotOptimize(baton::cpu::read_sum(pool, scheme, buf.p, buf.size));
  }
  state.SetLabel(baton::cpu::read_scheme_name(scheme));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size));
  state.counters["GB"] = benchmark::Counter(static_cast<double>(buf.size) / 1e9,
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// -- matmul -------------------------------------------------------------------------

/// n_copies of an n_out × n_in weight matrix of random blocks with sane scales.
std::vector<uint8_t> make_weights(ggml_type type, int64_t n_out, int64_t n_in, int n_copies) {
  const size_t bytes = baton::row_bytes(type, static_cast<uint64_t>(n_in)) * n_out;
  std::vector<uint8_t> w(bytes * n_copies);
  fill_random(w.data(), w.size(), 7);
  const auto& tr = baton::traits(type);
  const uint16_t one_16th = baton::fp32_to_fp16(0.0625f);
  const uint16_t tiny = baton::fp32_to_fp16(1e-3f);
  for (size_t off = 0; off < w.size(); off += tr.type_size) {
    uint8_t* b = w.data() + off;
    switch (type) {
      case ggml_type::q4_0:
      case ggml_type::q8_0:
        std::memcpy(b, &one_16th, 2);
        break;
      case ggml_type::q4_k:
        std::memcpy(b, &tiny, 2);
        std::memcpy(b + 2, &tiny, 2);
        break;
      case ggml_type::q6_k:
        std::memcpy(b + offsetof(baton::block_q6_k, d), &tiny, 2);
        break;
      case ggml_type::f16:
        b[1] &= 0x3f;  // finite, |x| < 2
        break;
      case ggml_type::bf16:
        b[1] = static_cast<uint8_t>((b[1] & 0x80) | 0x3f);
        break;
      case ggml_type::f32:
        b[3] = static_cast<uint8_t>((b[3] & 0x80) | 0x3f);
        break;
      default:
        break;
    }
  }
  return w;
}

/// The kernel under test, checked once: y[n_tokens × n_out] from `run` (the timed call:
/// one matmul or a two-thread row split) against the scalar reference and, for a split,
/// against the same isa's single call.
void check_matmul(const std::string& kernel, isa v, ggml_type type, const uint8_t* w,
                  const std::vector<float>& x, const std::vector<uint8_t>& xq,
                  const std::vector<float>& y, int64_t n_out, int64_t n_in, int64_t n_tokens,
                  int n_threads) {
  const std::string shape = std::to_string(n_out) + "x" + std::to_string(n_in) +
                            " tokens " + std::to_string(n_tokens);
  const size_t xs = baton::cpu::activation_row_bytes(type, n_in);
  // activations: the isa's conversion is promised bit-identical to the scalar one
  std::vector<uint8_t> xq_ref(xs * n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    baton::cpu::quantize_activation_row(isa::scalar, type, x.data() + t * n_in,
                                        xq_ref.data() + t * xs, n_in);
  }
  check_bytes_equal(kernel, xq_ref.data(), xq.data(), xq_ref.size(),
                    shape + ", activations of " + std::string(baton::traits(type).name));

  // a row split: every element as one call of the same isa computes it
  if (n_threads == 2) {
    std::vector<float> one(y.size());
    baton::cpu::matmul(v, type, w, xq.data(), one.data(), n_in, n_tokens, n_out, 0, n_out);
    for (size_t i = 0; i < y.size(); ++i) {
      if (baton::float_bits(one[i]) != baton::float_bits(y[i])) {
        check_failed(kernel, shape + ": element " + std::to_string(i) + " is " +
                                 std::to_string(y[i]) + " split over two threads, " +
                                 std::to_string(one[i]) + " in one call of the same isa (promised bit-exact)");
      }
    }
  }
  if (v == isa::scalar) {
    return;  // the reference itself (tests/matmul_test.cpp checks it on dequantized rows)
  }
  // the scalar reference, for every token of a decode and three of a prefill
  std::vector<int64_t> tokens = {0};
  if (n_tokens > 1) {
    tokens = {0, n_tokens / 2, n_tokens - 1};
  }
  error_stats e;
  std::vector<float> ref(static_cast<size_t>(n_out));
  for (int64_t t : tokens) {
    baton::cpu::matmul(isa::scalar, type, w, xq_ref.data() + t * xs, ref.data(), n_in, 1, n_out,
                       0, n_out);
    for (int64_t r = 0; r < n_out; ++r) {
      e.add(y[t * n_out + r], ref[r]);
    }
  }
  if (!(e.nmse() <= k_matmul_nmse_max)) {
    char what[200];
    std::snprintf(what, sizeof what, "%s: nmse against the scalar reference %.3g > %.0e, max |error| %.3g", shape.c_str(),
                  e.nmse(), k_matmul_nmse_max, e.max_abs);
    check_failed(kernel, what);
  }
}

void bm_matmul(benchmark::State& state, const std::string& kernel, isa v, ggml_type type,
               int64_t n_out, int64_t n_in, int64_t n_tokens, int n_threads,
               baton::cpu::weight_layout layout) {
  if (!baton::cpu::isa_supported(v)) {
    state.SkipWithError("this CPU cannot run this isa");
    return;
  }
  const size_t w_bytes = baton::row_bytes(type, static_cast<uint64_t>(n_in)) * n_out;
  // decode reads from DRAM as it does in a model far larger than L3
  const size_t decode_bytes = decode_bytes_from_env();
  const int n_copies =
      n_tokens == 1 ? static_cast<int>(std::max<size_t>(1, decode_bytes / w_bytes)) : 1;
  const auto w = make_weights(type, n_out, n_in, n_copies);
  // the timed copy: w itself, or every copy repacked as a CPU stage does at load (the
  // checks below still compare with w's ggml layout: the same bits are promised)
  std::vector<uint8_t> packed;
  if (layout != baton::cpu::weight_layout::ggml) {
    packed.resize(w.size());
    for (int c = 0; c < n_copies; ++c) {
      baton::cpu::pack_rows(v, type, w.data() + w_bytes * c, packed.data() + w_bytes * c, n_in,
                            n_out, layout);
    }
  }
  const uint8_t* timed = packed.empty() ? w.data() : packed.data();

  std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
  fill_random(reinterpret_cast<uint8_t*>(x.data()), x.size() * 4, 3);
  for (auto& f : x) {
    f = static_cast<float>(static_cast<int32_t>(baton::float_bits(f)) % 1000) / 500.0f;
  }
  const size_t xs = baton::cpu::activation_row_bytes(type, n_in);
  std::vector<uint8_t> xq(xs * n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    baton::cpu::quantize_activation_row(v, type, x.data() + t * n_in, xq.data() + t * xs, n_in);
  }
  std::vector<float> y(static_cast<size_t>(n_out * n_tokens));

  std::unique_ptr<helper_thread> helper;
  if (n_threads == 2) {
    helper = std::make_unique<helper_thread>();
  }
  const int64_t half = (n_out / 2 + 15) / 16 * 16;
  const auto run = [&](const uint8_t* wc) {
    if (helper) {
      helper->run(
          [&] {
            baton::cpu::matmul(v, type, wc, xq.data(), y.data(), n_in, n_tokens, n_out, 0, half,
                               layout, n_out);
          },
          [&] {
            baton::cpu::matmul(v, type, wc, xq.data(), y.data(), n_in, n_tokens, n_out, half,
                               n_out, layout, n_out);
          });
    } else {
      baton::cpu::matmul(v, type, wc, xq.data(), y.data(), n_in, n_tokens, n_out, 0, n_out,
                         layout, n_out);
    }
  };
  if (first_check(kernel)) {
    run(timed);
    check_matmul(kernel, v, type, w.data(), x, xq, y, n_out, n_in, n_tokens, n_threads);
  }
  int copy = 0;
  for (auto _ : state) {
    run(timed + w_bytes * copy);
    benchmark::DoNotOptimize(y.data());
    copy = (copy + 1) % n_copies;
  }
  const double flop = 2.0 * static_cast<double>(n_in) * n_out * n_tokens;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w_bytes));
  state.counters["GB"] = benchmark::Counter(static_cast<double>(w_bytes) / 1e9,
                                            benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP"] =
      benchmark::Counter(flop / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_quantize(benchmark::State& state, const std::string& kernel, isa v, ggml_type type,
                 int64_t n_in) {
  if (!baton::cpu::isa_supported(v)) {
    state.SkipWithError("this CPU cannot run this isa");
    return;
  }
  std::vector<float> x(static_cast<size_t>(n_in));
  for (int64_t i = 0; i < n_in; ++i) {
    x[i] = static_cast<float>((i * 7919) % 2001 - 1000) / 300.0f;
  }
  std::vector<uint8_t> xq(baton::cpu::activation_row_bytes(type, n_in));
  if (first_check(kernel)) {
    std::vector<uint8_t> ref(xq.size());
    baton::cpu::quantize_activation_row(isa::scalar, type, x.data(), ref.data(), n_in);
    baton::cpu::quantize_activation_row(v, type, x.data(), xq.data(), n_in);
    check_bytes_equal(kernel, ref.data(), xq.data(), xq.size(), "n_in " + std::to_string(n_in));
  }
  for (auto _ : state) {
    baton::cpu::quantize_activation_row(v, type, x.data(), xq.data(), n_in);
    benchmark::DoNotOptimize(xq.data());
  }
  state.counters["Gelem"] = benchmark::Counter(static_cast<double>(n_in) / 1e9,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  using baton::cpu::weight_layout;
  benchmark::RegisterBenchmark("stream_read/threads:1", bm_read, 1)->UseRealTime()->MinTime(1.0);
  benchmark::RegisterBenchmark("stream_read/threads:2", bm_read, 2)->UseRealTime()->MinTime(1.0);

  const ggml_type types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k,
                             ggml_type::f16,  ggml_type::bf16, ggml_type::f32};
  // Llama-3.2-1B: attn_q / attn_output 2048 × 2048, ffn_up / ffn_gate 8192 × 2048 (n_out ×
  // n_in), ffn_down 2048 × 8192
  const struct { int64_t n_out, n_in; } shapes[] = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
  for (isa v : {isa::avx512, isa::avx2, isa::scalar}) {
    for (ggml_type type : types) {
      for (const auto& s : shapes) {
        for (int64_t n_tokens : {1, 128}) {
          for (int n_threads : {1, 2}) {
            if (v == isa::scalar && (n_tokens > 1 || s.n_out != 2048 || s.n_in != 2048)) {
              continue;  // the reference is slow; one shape shows its rate
            }
            // "q4_0+packed": the weights in pack_rows' layout, as a CPU stage reads them;
            // "+blocks": its rows in blocks of 8 too
            for (auto layout :
                 {weight_layout::ggml, weight_layout::packed, weight_layout::packed_blocks}) {
              if ((layout == weight_layout::packed && !baton::cpu::has_packed_layout(v, type)) ||
                  (layout == weight_layout::packed_blocks &&
                   !baton::cpu::has_block_layout(v, type))) {
                continue;
              }
              const std::string name =
                  "matmul/" + std::string(baton::traits(type).name) +
                  (layout == weight_layout::packed          ? "+packed/"
                   : layout == weight_layout::packed_blocks ? "+blocks/"
                                                            : "/") +
                  std::string(baton::cpu::isa_name(v)) + "/" + std::to_string(s.n_out) + "x" +
                  std::to_string(s.n_in) + "/tokens:" + std::to_string(n_tokens) +
                  "/threads:" + std::to_string(n_threads);
              benchmark::RegisterBenchmark(name.c_str(), bm_matmul, name, v, type, s.n_out,
                                           s.n_in, n_tokens, n_threads, layout)
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
            }
          }
        }
      }
    }
    for (ggml_type type : {ggml_type::q4_0, ggml_type::q4_k, ggml_type::f16}) {
      const std::string name = "quantize_activation/" + std::string(baton::traits(type).name) +
                               "/" + std::string(baton::cpu::isa_name(v)) + "/2048";
      benchmark::RegisterBenchmark(name.c_str(), bm_quantize, name, v, type, 2048);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
