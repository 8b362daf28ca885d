// Decode (one token) matmul against the read bandwidth of the same few milliseconds.
//
// On a shared machine the read bandwidth moves by 2x from second to second, so a decode
// speed and a read measured a minute apart (or even a bench_kernels run apart) cannot be
// compared. This benchmark alternates, on the same threads: a read of 256 MiB (the best
// of kernels/cpu/machine_limits' read schemes, chosen once at the start), a decode pass
// over 256 MiB of weight copies (in the CPU stage's layout on this core, cpu::preferred_layout,
// or one named; rows split between the threads as a stage splits them), a read again — and keeps each
// decode pass whose two reads agree within 8 %. It prints, per band of read bandwidth,
// how many passes fell in it and the median (and quartiles) of decode GB/s over read
// GB/s: a kernel change is compared band by band, in the same minutes' conditions.
//
//   ./build/bin/bench_decode_read q4_0 2048 2048 20      # type n_in n_out seconds [threads]
//   ./build/bin/bench_decode_read q4_0 2048 8192 5 2 blocks l1:6144   # [layout [prefetch]]
//   ./build/bin/bench_decode_read f16 2048 8192 5 2 blocks auto 1     # [... [block streams]]
//
// Before timing, the threads' row split is checked bit-identical to one call over all rows.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/machine_limits.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/quantize.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/ggml_type.hpp"
#include "runtime/system/huge_pages.hpp"

namespace {

using baton::ggml_type;
namespace cpu = baton::cpu;

constexpr size_t k_pass_bytes = size_t{256} << 20;    // one read or decode pass
constexpr size_t k_weight_bytes = size_t{384} << 20;  // weight copies decode cycles over

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// bytes in 2 MiB pages where the kernel gives them, as a CPU stage keeps its weights
/// (decode reads them faster than 4 KiB pages); ends the run when they cannot be mapped.
using buffer = std::unique_ptr<uint8_t, baton::huge_page_free>;
buffer allocate(size_t bytes) {
  try {
    return buffer(baton::huge_page_allocator<uint8_t>().allocate(bytes),
                  baton::huge_page_free{bytes});
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "bench_decode_read: cannot map %zu MiB\n", bytes >> 20);
    std::exit(1);
  }
}

int usage(const char* why) {
  std::fprintf(stderr,
               "bench_decode_read: %s\n"
               "usage: bench_decode_read TYPE N_IN N_OUT SECONDS [THREADS [LAYOUT [PREFETCH\n"
               "       [STREAMS]]]]\n"
               "  TYPE: q4_0, q8_0, q4_K, q6_K, f16, bf16 or f32; N_IN a multiple of its\n"
               "  block (32 or 256; 1 for the floats);\n"
               "  N_OUT a multiple of 16 up to 1048576; SECONDS 1 to 600; THREADS 1 to 64 (2);\n"
               "  LAYOUT blocks, packed or ggml (the CPU stage's on this core, for Q6_K its head's:\n"
               "  cpu::preferred_layout); PREFETCH auto (this core's\n"
               "  plan), none, l1:BYTES or l2:BYTES (that far ahead into L1 or L2, rows and blocks);\n"
               "  STREAMS 1 to 3: blocks of float rows read in lockstep (the plan's)\n",
               why);
  return 2;
}

/// s as a whole number in [lo, hi] (lo ≥ 0), or -1.
int64_t whole_number(const char* s, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
    return -1;
  }
  return v;
}

struct pass {
  double read_before, decode, read_after;  // GB/s
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 9) {
    return usage("expected 4 to 8 arguments");
  }
  const std::string type_name = argv[1];
  static constexpr struct {
    const char* name;
    ggml_type type;
  } k_types[] = {{"q4_0", ggml_type::q4_0}, {"q8_0", ggml_type::q8_0}, {"q4_K", ggml_type::q4_k},
                 {"q4_k", ggml_type::q4_k}, {"q6_K", ggml_type::q6_k}, {"q6_k", ggml_type::q6_k},
                 {"f16", ggml_type::f16},   {"bf16", ggml_type::bf16}, {"f32", ggml_type::f32}};
  const auto known = std::find_if(std::begin(k_types), std::end(k_types),
                                  [&type_name](const auto& t) { return type_name == t.name; });
  if (known == std::end(k_types)) {
    return usage(("TYPE '" + type_name + "' is not one of q4_0, q8_0, q4_K, q6_K, f16, bf16, f32")
                     .c_str());
  }
  const ggml_type type = known->type;
  const int64_t block = baton::traits(type).block_size;
  const int64_t n_in = whole_number(argv[2], block, int64_t{1} << 20);
  const int64_t n_out = whole_number(argv[3], 16, int64_t{1} << 20);
  const int64_t secs = whole_number(argv[4], 1, 600);
  const int64_t threads = argc >= 6 ? whole_number(argv[5], 1, 64) : 2;
  const std::string layout_arg = argc >= 7 ? argv[6] : "";
  const std::string prefetch_arg = argc >= 8 ? argv[7] : "auto";
  const int64_t streams = argc == 9 ? whole_number(argv[8], 1, 3) : 0;
  if (streams < 0) {
    return usage(("STREAMS '" + std::string(argv[8]) + "' is not 1 to 3").c_str());
  }
  cpu::prefetch_plan plan = cpu::automatic_prefetch_plan();  // its tiles of several tokens
  if (streams > 0) {
    plan.block_streams = static_cast<int>(streams);
  }
  if (prefetch_arg != "auto") {
    cpu::weight_prefetch f;
    if (prefetch_arg != "none") {
      const bool l1 = prefetch_arg.rfind("l1:", 0) == 0;
      f = {l1 || prefetch_arg.rfind("l2:", 0) == 0
               ? whole_number(prefetch_arg.c_str() + 3, 64, int64_t{1} << 20)
               : -1,
           l1};
      if (f.distance < 0) {
        return usage(("PREFETCH '" + prefetch_arg +
                      "' is not auto, none, l1:BYTES or l2:BYTES (64 to 1048576)")
                         .c_str());
      }
    }
    plan.rows = plan.blocks = f;
  }
  cpu::force_prefetch_plan(&plan);
  if (n_in < 0 || n_in % block != 0) {
    return usage(("N_IN '" + std::string(argv[2]) + "' is not a multiple of " +
                  std::to_string(block) + " up to 1048576").c_str());
  }
  if (n_out < 0 || n_out % 16 != 0) {
    return usage(("N_OUT '" + std::string(argv[3]) + "' is not a multiple of 16 up to 1048576")
                     .c_str());
  }
  if (secs < 0) {
    return usage(("SECONDS '" + std::string(argv[4]) + "' is not 1 to 600").c_str());
  }
  if (threads < 0) {
    return usage(("THREADS '" + std::string(argv[5]) + "' is not 1 to 64").c_str());
  }
  const cpu::isa v = cpu::best_isa();
  const size_t row = baton::row_bytes(type, static_cast<uint64_t>(n_in));
  const size_t matrix = row * static_cast<size_t>(n_out);
  if (matrix > k_weight_bytes) {
    return usage("the matrix is over 384 MiB");
  }
  cpu::thread_pool pool(static_cast<int>(threads));

  // the weights: random rows quantized, then copies as a CPU stage keeps them
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<uint8_t> ggml(matrix);
  std::vector<float> x(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    for (float& f : x) {
      f = 0.02f * unit(rng);
    }
    cpu::quantize_row(type, x.data(), ggml.data() + r * row, n_in);
  }
  // a CPU stage's layout (its head's, for Q6_K: in blocks)
  const auto layout = layout_arg == "blocks"   ? cpu::weight_layout::packed_blocks
                      : layout_arg == "packed" ? cpu::weight_layout::packed
                      : layout_arg == "ggml"   ? cpu::weight_layout::ggml
                                               : cpu::preferred_layout(v, type, true);
  if (!layout_arg.empty() && layout_arg != "blocks" && layout_arg != "packed" &&
      layout_arg != "ggml") {
    return usage(("LAYOUT '" + layout_arg + "' is not blocks, packed or ggml").c_str());
  }
  if ((layout == cpu::weight_layout::packed_blocks && !cpu::has_block_layout(v, type)) ||
      (layout == cpu::weight_layout::packed && !cpu::has_packed_layout(v, type))) {
    return usage(("the " + std::string(cpu::isa_name(v)) + " kernels have no " + layout_arg + " layout for " +
                  type_name).c_str());
  }
  const bool packed = layout != cpu::weight_layout::ggml;
  const size_t copies = std::max<size_t>(1, k_weight_bytes / matrix);
  buffer weights = allocate(copies * matrix);
  for (size_t c = 0; c < copies; ++c) {
    uint8_t* to = weights.get() + c * matrix;
    if (packed) {
      cpu::pack_rows(v, type, ggml.data(), to, n_in, n_out, layout);
    } else {
      std::memcpy(to, ggml.data(), matrix);
    }
  }
  for (float& f : x) {
    f = unit(rng);
  }
  std::vector<uint8_t> xq(cpu::activation_row_bytes(type, n_in));
  cpu::quantize_activation_row(v, type, x.data(), xq.data(), n_in);
  std::vector<float> y(static_cast<size_t>(n_out)), one(static_cast<size_t>(n_out));

  // the stage's split: rows in 16-aligned parts, one per thread
  const auto decode = [&](const uint8_t* w, float* out) {
    pool.run([&](int ith, int nth) {
      const auto [r0, r1] = cpu::thread_pool::split(n_out, ith, nth, 16);
      cpu::matmul(v, type, w, xq.data(), out, n_in, 1, n_out, r0, r1, layout, n_out);
    });
  };
  decode(weights.get(), y.data());
  cpu::matmul(v, type, weights.get(), xq.data(), one.data(), n_in, 1, n_out, 0, n_out, layout,
              n_out);
  if (std::memcmp(y.data(), one.data(), y.size() * sizeof(float)) != 0) {
    std::fprintf(stderr, "bench_decode_read: %s %lld x %lld: the threads' rows differ from one call's\n",
                 type_name.c_str(), static_cast<long long>(n_in), static_cast<long long>(n_out));
    return 1;
  }

  // the read: this machine's best scheme, chosen once
  const cpu::read_scheme scheme = [&] {
    cpu::read_meter meter(pool, v, k_pass_bytes);  // its own buffer, let go once chosen
    return cpu::best_of(meter.measure(1)).scheme;
  }();
  buffer reads = allocate(k_pass_bytes);
  pool.run([&](int ith, int nth) {
    const auto [b0, b1] = cpu::thread_pool::split(static_cast<int64_t>(k_pass_bytes), ith, nth, 64);
    std::memset(reads.get() + b0, 1, static_cast<size_t>(b1 - b0));
  });
  std::atomic<uint64_t> sink{0};
  const auto read_pass = [&] {
    const double t0 = seconds_now();
    pool.run([&](int ith, int nth) {
      const auto [b0, b1] =
          cpu::thread_pool::split(static_cast<int64_t>(k_pass_bytes), ith, nth, 64);
      sink += cpu::read_sum(scheme, reads.get() + b0, static_cast<size_t>(b1 - b0));
    });
    return static_cast<double>(k_pass_bytes) / (seconds_now() - t0) / 1e9;
  };
  size_t next_copy = 0;
  const auto decode_pass = [&] {
    const double t0 = seconds_now();
    size_t bytes = 0;
    while (bytes < k_pass_bytes) {
      decode(weights.get() + (next_copy++ % copies) * matrix, y.data());
      bytes += matrix;
    }
    return static_cast<double>(bytes) / (seconds_now() - t0) / 1e9;
  };

  std::vector<pass> passes;
  const double end = seconds_now() + static_cast<double>(secs);
  double before = read_pass();
  while (seconds_now() < end) {
    const double d = decode_pass();
    const double after = read_pass();
    passes.push_back({before, d, after});
    before = after;
  }

  const std::string isa(cpu::isa_name(v));
  const char* layout_name = layout == cpu::weight_layout::packed_blocks ? "packed in blocks"
                            : packed                                     ? "packed"
                                                                         : "ggml layout";
  std::printf("%s %lld x %lld (%s, %s, prefetch %s, block streams %d), %lld threads, read %s, "
              "%zu passes of 256 MiB\n",
              type_name.c_str(), static_cast<long long>(n_in), static_cast<long long>(n_out),
              isa.c_str(), layout_name, prefetch_arg.c_str(), plan.block_streams,
              static_cast<long long>(threads),
              cpu::read_scheme_name(scheme).c_str(), passes.size());
  const double bands[] = {0, 24, 30, 36, 42, 48, 54, 60, 70, 1e9};
  for (size_t b = 0; b + 1 < std::size(bands); ++b) {
    std::vector<double> ratios;
    for (const pass& p : passes) {
      const double read = (p.read_before + p.read_after) / 2;
      if (std::abs(p.read_before - p.read_after) <= 0.08 * read && read >= bands[b] &&
          read < bands[b + 1]) {
        ratios.push_back(p.decode / read);
      }
    }
    if (ratios.empty()) {
      continue;
    }
    std::sort(ratios.begin(), ratios.end());
    const size_t n = ratios.size();
    std::printf("read %3.0f-%-4.0f GB/s  passes %4zu  decode / read  median %.3f  quartiles %.3f %.3f\n",
                bands[b], std::min(bands[b + 1], 999.0), n, ratios[n / 2], ratios[n / 4],
                ratios[(3 * n) / 4]);
  }
  return 0;
}
