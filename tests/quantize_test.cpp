// Quantization: the reference quantizers (round trips within each format's error,
// all-zero and constant blocks, known answers, scale packing read back through
// blocks.hpp's decoders, and byte-for-byte against ggml's own quantize_row_*_ref when
// bench/setup_peer.sh has installed llama.cpp's prebuilt library) and model conversion
// (llama-quantize's type rules, exact F32 and F16 conversion, metadata carried over,
// bad input), plus, with ../shared, the type maps of the llama-quantize files
// converted from tiny-q8_0.
#include "kernels/cpu/quantize.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/quantize.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

namespace fs = std::filesystem;

std::vector<float> gaussian(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> x(n);
  for (auto& v : x) {
    v = dist(rng);
  }
  return x;
}

std::vector<float> round_trip(ggml_type type, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<std::byte> q(row_bytes(type, static_cast<uint64_t>(n)));
  cpu::quantize_row(type, x.data(), q.data(), n);
  std::vector<float> y(x.size());
  cpu::dequantize_row(type, q.data(), y.data(), n);
  return y;
}

double rms(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) {
    s += static_cast<double>(v) * v;
  }
  return std::sqrt(s / static_cast<double>(x.size()));
}

double rms_error(const std::vector<float>& x, const std::vector<float>& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    s += d * d;
  }
  return std::sqrt(s / static_cast<double>(x.size()));
}

// -- quantizers -----------------------------------------------------------------

TEST(quantize_row, round_trip_error_within_format_bounds) {
  // Relative RMS error on Gaussian data: what each format's bits allow (measured:
  // Q4_0 0.087, Q4_K 0.071, Q6_K 0.018, Q8_0 0.0054, F16 2.1e-4, BF16 1.7e-3), with room.
  const struct {
    ggml_type type;
    double bound;
  } cases[] = {{ggml_type::q4_0, 0.10},   {ggml_type::q4_k, 0.085}, {ggml_type::q6_k, 0.021},
               {ggml_type::q8_0, 0.0065}, {ggml_type::f16, 2.5e-4}, {ggml_type::bf16, 2e-3},
               {ggml_type::f32, 0.0}};
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (float sd : {1.0f, 0.02f, 300.0f}) {
      const auto x = gaussian(256 * 64, seed, sd);
      for (const auto& c : cases) {
        const auto y = round_trip(c.type, x);
        EXPECT_LE(rms_error(x, y) / rms(x), c.bound)
            << traits(c.type).name << " seed " << seed << " sd " << sd;
      }
    }
  }
}

TEST(quantize_row, every_element_within_its_step) {
  const auto x = gaussian(256 * 16, 9);
  // Q4_0: |x − y| ≤ |d| (the side opposite the max can clamp at 7 of 8 steps)
  {
    std::vector<block_q4_0> q(x.size() / 32);
    cpu::quantize_row_q4_0(x.data(), q.data(), static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < q.size(); ++b) {
      float y[32];
      dequantize_block(q[b], y);
      const float d = std::fabs(fp16_to_fp32(q[b].d));
      for (int j = 0; j < 32; ++j) {
        ASSERT_LE(std::fabs(x[b * 32 + j] - y[j]), d * 1.001f) << b << " " << j;
      }
    }
  }
  // Q6_K: |x − y| ≤ the sub-block step |d × sc| (the rmse search may clamp the largest)
  {
    std::vector<block_q6_k> q(x.size() / 256);
    cpu::quantize_row_q6_k(x.data(), q.data(), static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < q.size(); ++b) {
      float y[256];
      dequantize_block(q[b], y);
      for (int j = 0; j < 256; ++j) {
        const float step =
            std::fabs(fp16_to_fp32(q[b].d) * static_cast<float>(q[b].scales[j / 16]));
        ASSERT_LE(std::fabs(x[b * 256 + j] - y[j]), step * 1.001f) << b << " " << j;
      }
    }
  }
}

TEST(quantize_row, all_zero_blocks_decode_to_zero) {
  const std::vector<float> zeros(512, 0.0f);
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k}) {
    const auto y = round_trip(t, zeros);
    for (float v : y) {
      ASSERT_EQ(v, 0.0f) << traits(t).name;
    }
  }
  block_q6_k q6;
  cpu::quantize_row_q6_k(zeros.data(), &q6, 256);
  EXPECT_EQ(q6.d, 0);
  block_q4_k q4;
  cpu::quantize_row_q4_k(zeros.data(), &q4, 256);
  EXPECT_EQ(q4.d, 0);
  EXPECT_EQ(q4.dmin, 0);
}

TEST(quantize_row, constant_blocks_are_reproduced) {
  // (small enough constants make the K-quants' f16 super-scale subnormal, and coarse)
  for (float c : {1.0f, -1.0f, 0.37f, -123.5f, 6.0f}) {
    const std::vector<float> x(256, c);
    for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k}) {
      const auto y = round_trip(t, x);
      for (float v : y) {
        // the scale is an f16: 11 significant bits, then ×63 or ×15 for the K-quants
        ASSERT_NEAR(v, c, std::fabs(c) * 2e-3f) << traits(t).name << " c " << c;
      }
    }
  }
}

TEST(quantize_row, q4_0_known_answer) {
  // max-magnitude element −4 → d = −4 / −8 = 0.5, q = trunc(x / 0.5 + 8.5) capped at 15
  float x[32];
  for (int j = 0; j < 32; ++j) {
    x[j] = 0.5f * static_cast<float>(j % 16 - 8);  // −4 .. 3.5
  }
  x[31] = 3.9f;  // 3.9 / 0.5 + 8.5 = 16.3 → 15
  block_q4_0 b;
  cpu::quantize_row_q4_0(x, &b, 32);
  EXPECT_EQ(fp16_to_fp32(b.d), 0.5f);
  for (int j = 0; j < 16; ++j) {
    const int lo = b.qs[j] & 0x0f;
    const int hi = b.qs[j] >> 4;
    EXPECT_EQ(lo, j) << j;
    EXPECT_EQ(hi, j == 15 ? 15 : j) << j;
  }
}

TEST(quantize_row, q4_k_scale_packing_reads_back) {
  // Sub-block j holds (j + 1) × the same 32 values, so its fitted scale and min are
  // (j + 1) × those of sub-block 0 and code to round(63 (j + 1) / 8) in 6 bits: they
  // must come back so through q4_k_scale_min (the high bits of sub-blocks 4..7
  // included), and each sub-block must decode within its own step.
  const auto base = gaussian(32, 5);
  std::vector<float> x(256);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      x[static_cast<size_t>(32 * j + l)] = base[static_cast<size_t>(l)] * static_cast<float>(j + 1);
    }
  }
  block_q4_k b;
  cpu::quantize_row_q4_k(x.data(), &b, 256);
  float y[256];
  dequantize_block(b, y);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    q4_k_scale_min(j, b.scales, &sc, &m);
    const double want = 63.0 * (j + 1) / 8.0;
    EXPECT_NEAR(sc, want, 1.0) << "sub-block " << j;
    EXPECT_NEAR(m, want, 1.0) << "sub-block " << j;
    const float step = fp16_to_fp32(b.d) * sc;
    for (int l = 0; l < 32; ++l) {
      const int i = 32 * j + l;
      ASSERT_LE(std::fabs(x[static_cast<size_t>(i)] - y[i]), step) << "sub-block " << j << " " << l;
    }
  }
}

TEST(quantize_row, q6_k_scale_packing_reads_back) {
  // Sub-block ib holds (−1)^ib (ib + 1) × the same 16 values: the signed 8-bit scales
  // must read back as ±8 (ib + 1) with alternating signs (the largest is −128), and
  // every element decodes within its sub-block's step.
  const auto base = gaussian(16, 6);
  std::vector<float> x(256);
  for (int ib = 0; ib < 16; ++ib) {
    const float k = static_cast<float>((ib % 2 ? -1 : 1) * (ib + 1));
    for (int l = 0; l < 16; ++l) {
      x[static_cast<size_t>(16 * ib + l)] = base[static_cast<size_t>(l)] * k;
    }
  }
  block_q6_k b;
  cpu::quantize_row_q6_k(x.data(), &b, 256);
  float y[256];
  dequantize_block(b, y);
  EXPECT_EQ(b.scales[15], -128);
  for (int ib = 0; ib < 16; ++ib) {
    const int sc = b.scales[ib];
    EXPECT_NEAR(std::abs(sc), 8 * (ib + 1), 1) << ib;
    EXPECT_EQ(sc < 0, ib % 2 == 1) << ib;
    const float step = std::fabs(fp16_to_fp32(b.d) * static_cast<float>(sc));
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * ib + l;
      ASSERT_LE(std::fabs(x[static_cast<size_t>(i)] - y[i]), step) << ib << " " << l;
    }
  }
}

TEST(quantize_row, unaligned_output_and_finite_check) {
  const auto x = gaussian(512, 8);
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k,
                      ggml_type::f16, ggml_type::bf16, ggml_type::f32}) {
    const uint64_t n = row_bytes(t, 512);
    std::vector<std::byte> aligned(n), shifted(n + 1);
    cpu::quantize_row(t, x.data(), aligned.data(), 512);
    cpu::quantize_row(t, x.data(), shifted.data() + 1, 512);
    EXPECT_EQ(std::memcmp(aligned.data(), shifted.data() + 1, n), 0) << traits(t).name;
    EXPECT_TRUE(cpu::row_is_finite(t, aligned.data(), 512)) << traits(t).name;
  }
  auto bad = x;
  bad[300] = std::numeric_limits<float>::infinity();
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::f16, ggml_type::f32}) {
    std::vector<std::byte> q(row_bytes(t, 512));
    cpu::quantize_row(t, bad.data(), q.data(), 512);
    EXPECT_FALSE(cpu::row_is_finite(t, q.data(), 512)) << traits(t).name;
  }
  std::vector<float> huge(32, 1e6f);  // beyond f16's range
  std::vector<uint16_t> h(32);
  cpu::quantize_row(ggml_type::f16, huge.data(), h.data(), 32);
  EXPECT_FALSE(cpu::row_is_finite(ggml_type::f16, h.data(), 32));
}

/// A llama.cpp build's libggml-base.so and the K-quant rule its reference quantizers use.
struct ggml_peer {
  fs::path lib;
  cpu::k_levels levels;
};

/// Whether this CPU runs ../shared's llama.cpp build (-march=native on a Zen 4).
bool runs_zen4_native_code() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") &&
         __builtin_cpu_supports("avx512bf16");
}

/// The llama.cpp builds present: ../shared's c392e509 (the one that made the shared
/// models) where this CPU can run it, and node-llama-cpp 3.21.1's prebuilt library that
/// bench/setup_peer.sh installs.
std::vector<ggml_peer> ggml_peers() {
  std::vector<ggml_peer> peers;
  if (const auto shared = test::shared_dir()) {
    const fs::path lib = *shared / "peers/llama.cpp-c392e509/bin/libggml-base.so";
    if (fs::exists(lib) && runs_zen4_native_code()) {
      peers.push_back({lib, cpu::k_levels::keep_fitted});
    }
  }
  fs::path npm;
  if (const char* p = std::getenv("BATON_PEER_DIR")) {
    npm = p;
  } else {
    const char* home = std::getenv("HOME");
    npm = fs::path(home ? home : "/root") / ".cache/baton/peer";
  }
  const fs::path lib =
      npm / "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  if (fs::exists(lib)) {
    peers.push_back({lib, cpu::k_levels::requantize});
  }
  return peers;
}

TEST(quantize_row, bytes_equal_ggml_reference_quantizers) {
  const auto peers = ggml_peers();
  if (peers.empty()) {
    GTEST_SKIP() << "no llama.cpp libggml-base.so: neither ../shared/peers/llama.cpp-c392e509 "
                    "(on an AVX-512 CPU) nor node-llama-cpp's (bench/setup_peer.sh)";
  }
  for (const auto& peer : peers) {
    SCOPED_TRACE(peer.lib.string());
    void* h = dlopen(peer.lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_TRUE(h) << dlerror();
    using quantize_fn = void (*)(const float*, void*, int64_t);
    using baton_fn = void (*)(const float*, void*, int64_t, cpu::k_levels);
    auto q4_0 = [](const float* x, void* y, int64_t n, cpu::k_levels) {
      cpu::quantize_row_q4_0(x, y, n);
    };
    auto q8_0 = [](const float* x, void* y, int64_t n, cpu::k_levels) {
      cpu::quantize_row(ggml_type::q8_0, x, y, n);
    };
    const struct {
      const char* symbol;
      ggml_type type;
      baton_fn ours;
    } cases[] = {{"quantize_row_q4_0_ref", ggml_type::q4_0, q4_0},
                 {"quantize_row_q8_0_ref", ggml_type::q8_0, q8_0},
                 {"quantize_row_q4_K_ref", ggml_type::q4_k, cpu::quantize_row_q4_k},
                 {"quantize_row_q6_K_ref", ggml_type::q6_k, cpu::quantize_row_q6_k}};
    std::mt19937 rng(42);
    const int64_t n = 256 * 512;
    std::vector<float> x(static_cast<size_t>(n));
    for (int dist = 0; dist < 5; ++dist) {
      for (auto& v : x) {
        switch (dist) {
          case 0:
            v = std::normal_distribution<float>(0.0f, 0.02f)(rng);
            break;
          case 1:  // all positive: the min is clipped to 0
            v = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
            break;
          case 2:
            v = std::exponential_distribution<float>(30.0f)(rng) * (rng() % 2 ? 1.0f : -1.0f);
            break;
          case 3:  // on the grid: rounding ties everywhere
            v = static_cast<float>(static_cast<int>(rng() % 17) - 8) * 0.125f;
            break;
          default:  // outliers
            v = std::normal_distribution<float>(0.0f, 1.0f)(rng) *
                (rng() % 64 == 0 ? 50.0f : 1.0f);
        }
      }
      std::fill(x.begin(), x.begin() + 512, 0.0f);  // all-zero blocks too
      for (const auto& c : cases) {
        auto fn = reinterpret_cast<quantize_fn>(dlsym(h, c.symbol));
        ASSERT_TRUE(fn) << c.symbol;
        const size_t n_bytes = row_bytes(c.type, static_cast<uint64_t>(n));
        std::vector<std::byte> want(n_bytes), got(n_bytes);
        fn(x.data(), want.data(), n);
        c.ours(x.data(), got.data(), n, peer.levels);
        const size_t bs = traits(c.type).type_size;
        for (size_t i = 0; i < n_bytes; i += bs) {
          ASSERT_EQ(std::memcmp(want.data() + i, got.data() + i, bs), 0)
              << c.symbol << " distribution " << dist << " block " << i / bs;
        }
      }
    }
    dlclose(h);
  }
}

// -- model conversion -------------------------------------------------------------

struct model_files {
  fs::path dir;
  explicit model_files(const std::string& name) : dir(test::temp_dir("quantize-" + name)) {}
  ~model_files() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

/// Not the fixture shape (tests/fixture_model.hpp): n_embd and n_ff are multiples of 256,
/// the K-quants' block, so that every row can be made Q4_K / Q6_K.
model_shape small_shape(int64_t n_layer, bool tied) {
  model_shape s;
  s.name = "quantize-test";
  s.n_vocab = 512;
  s.n_ctx_train = 256;
  s.n_embd = 256;
  s.n_layer = n_layer;
  s.n_ff = 512;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.tied_output = tied;
  return s;
}

std::string write_model(const model_files& f, const std::string& name, const model_shape& s,
                        ggml_type type) {
  build_options b;
  b.shape = s;
  b.type = type;
  auto w = build_model(b, nullptr);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.err().message);
  const std::string p = f.path(name);
  auto r = w->write(p);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().message);
  return p;
}

std::map<std::string, ggml_type> type_map(const gguf_file& f) {
  std::map<std::string, ggml_type> m;
  for (const auto& t : f.tensors()) {
    m[t.name] = t.type;
  }
  return m;
}

std::vector<std::pair<std::string, ggml_type>> ordered_types(const gguf_file& f) {
  std::vector<std::pair<std::string, ggml_type>> v;
  for (const auto& t : f.tensors()) {
    v.emplace_back(t.name, t.type);
  }
  return v;
}

/// Converts and reopens; fails the test on an error.
std::shared_ptr<const model> convert(const std::string& in, const std::string& out,
                                     quantize_options o) {
  auto s = quantize_model(in, out, o);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.err().message);
  if (!s) {
    return nullptr;
  }
  auto m = model::open(out);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.err().message);
  return m ? *m : nullptr;
}

int64_t file_type_of(const model& m) { return m.file().get_int("general.file_type")->value_or(-1); }

TEST(quantize_model, targets_parse_like_llama_quantize) {
  EXPECT_EQ(parse_ftype("q4_k_m"), ftype::q4_k_m);
  EXPECT_EQ(parse_ftype("Q4_K"), ftype::q4_k_m);
  EXPECT_EQ(parse_ftype("bf16"), ftype::bf16);
  EXPECT_EQ(parse_ftype("F32"), ftype::f32);
  EXPECT_FALSE(parse_ftype("q5_k_m").has_value());
  EXPECT_FALSE(parse_ftype("").has_value());
  EXPECT_EQ(info(ftype::f32).id, 0u);
  EXPECT_EQ(info(ftype::f16).id, 1u);
  EXPECT_EQ(info(ftype::q4_0).id, 2u);
  EXPECT_EQ(info(ftype::q8_0).id, 7u);
  EXPECT_EQ(info(ftype::q4_k_m).id, 15u);
  EXPECT_EQ(info(ftype::q6_k).id, 18u);
  EXPECT_EQ(info(ftype::bf16).id, 32u);
  for (const auto& row : ftype_table()) {
    EXPECT_EQ(&info(row.value), &row) << row.name;
    EXPECT_EQ(parse_ftype(row.name), row.value) << row.name;
  }
}

TEST(ftype, names_for_messages_and_the_type_of_uniform_weights) {
  EXPECT_EQ(ftype_names(", "), "F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q6_K");
  EXPECT_EQ(ftype_names(" or ", true), "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q4_K_M or Q6_K");
  EXPECT_EQ(ftype_names(", ", true, true),
            "F32, F16, BF16, Q8_0, Q4_0, Q4_K (= Q4_K_M), Q4_K_M, Q6_K");
  // what mkmodel writes as general.file_type for weights all of one type
  EXPECT_EQ(ftype_of_weights(ggml_type::f32), ftype::f32);
  EXPECT_EQ(ftype_of_weights(ggml_type::q8_0), ftype::q8_0);
  EXPECT_EQ(ftype_of_weights(ggml_type::bf16), ftype::bf16);
  EXPECT_FALSE(ftype_of_weights(ggml_type::q4_k).has_value());  // Q4_K_M is a mixture
  EXPECT_FALSE(ftype_of_weights(ggml_type::q5_0).has_value());
}

TEST(quantize_model, q4_k_m_mixture_follows_use_more_bits) {
  model_files f("mix");
  const auto in = write_model(f, "in.gguf", small_shape(8, true), ggml_type::q8_0);
  auto m = convert(in, f.path("out.gguf"), {ftype::q4_k_m});
  ASSERT_TRUE(m);
  EXPECT_EQ(file_type_of(*m), 15);
  EXPECT_EQ(m->file().get_int("general.quantization_version")->value_or(-1), 2);
  auto types = type_map(m->file());
  EXPECT_EQ(types["token_embd.weight"], ggml_type::q6_k);  // tied: the head
  EXPECT_EQ(types["output_norm.weight"], ggml_type::f32);
  EXPECT_EQ(types["rope_freqs.weight"], ggml_type::f32);
  // n_layer 8: i < 1, i >= 7, (i − 1) % 3 == 2 → layers 0, 3, 6, 7
  for (int il = 0; il < 8; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    const bool more = il == 0 || il == 3 || il == 6 || il == 7;
    const ggml_type vd = more ? ggml_type::q6_k : ggml_type::q4_k;
    EXPECT_EQ(types[b + "attn_v.weight"], vd) << il;
    EXPECT_EQ(types[b + "ffn_down.weight"], vd) << il;
    for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight",
                          "ffn_up.weight"}) {
      EXPECT_EQ(types[b + n], ggml_type::q4_k) << b << n;
    }
    EXPECT_EQ(types[b + "attn_norm.weight"], ggml_type::f32);
    EXPECT_EQ(types[b + "ffn_norm.weight"], ggml_type::f32);
  }
}

TEST(quantize_model, untied_head_gets_q6_k_and_token_embd_the_default) {
  model_files f("untied");
  const auto in = write_model(f, "in.gguf", small_shape(2, false), ggml_type::f16);
  for (auto [target, embd] : {std::pair{ftype::q4_0, ggml_type::q4_0},
                              {ftype::q4_k_m, ggml_type::q4_k},
                              {ftype::q8_0, ggml_type::q8_0},
                              {ftype::q6_k, ggml_type::q6_k}}) {
    auto m = convert(in, f.path("out.gguf"), {target});
    ASSERT_TRUE(m);
    auto types = type_map(m->file());
    EXPECT_EQ(types["token_embd.weight"], embd) << info(target).name;
    EXPECT_EQ(types["output.weight"],
              target == ftype::q8_0 ? ggml_type::q8_0 : ggml_type::q6_k)
        << info(target).name;
  }
}

TEST(quantize_model, tensors_follow_llama_cpp_order) {
  model_files f("order");
  auto s = small_shape(12, false);
  const auto in = write_model(f, "in.gguf", s, ggml_type::q8_0);
  auto m = convert(in, f.path("out.gguf"), {ftype::q4_0});
  ASSERT_TRUE(m);
  const auto& ts = m->file().tensors();
  ASSERT_EQ(ts.size(), 4u + 12u * 9u);
  EXPECT_EQ(ts[0].name, "output.weight");
  EXPECT_EQ(ts[1].name, "output_norm.weight");
  EXPECT_EQ(ts[2].name, "rope_freqs.weight");
  EXPECT_EQ(ts[3].name, "token_embd.weight");
  EXPECT_EQ(ts[4].name, "blk.0.attn_k.weight");
  EXPECT_EQ(ts[4 + 9 * 2].name, "blk.2.attn_k.weight");  // by number: blk.10 after blk.9
  EXPECT_EQ(ts[4 + 9 * 10].name, "blk.10.attn_k.weight");
}

TEST(quantize_model, pure_gives_every_weight_the_default_type) {
  model_files f("pure");
  const auto in = write_model(f, "in.gguf", small_shape(4, true), ggml_type::q8_0);
  quantize_options o{ftype::q4_k_m};
  o.pure = true;
  auto m = convert(in, f.path("out.gguf"), o);
  ASSERT_TRUE(m);
  for (const auto& t : m->file().tensors()) {
    EXPECT_EQ(t.type, t.n_dims == 1 ? ggml_type::f32 : ggml_type::q4_k) << t.name;
  }
}

TEST(quantize_model, f32_from_q8_0_is_exact_dequantization) {
  model_files f("f32");
  const auto in = write_model(f, "in.gguf", small_shape(2, true), ggml_type::q8_0);
  auto src = model::open(in);
  ASSERT_TRUE(src.ok());
  auto m = convert(in, f.path("out.gguf"), {ftype::f32});
  ASSERT_TRUE(m);
  EXPECT_EQ(file_type_of(*m), 0);
  for (const auto& t : (*src)->file().tensors()) {
    const tensor_info* o = m->file().find_tensor(t.name);
    ASSERT_TRUE(o);
    ASSERT_EQ(o->type, ggml_type::f32) << t.name;
    if (t.type == ggml_type::f32) {
      EXPECT_EQ(std::memcmp(o->data, t.data, t.n_bytes), 0) << t.name;
      continue;
    }
    ASSERT_EQ(t.type, ggml_type::q8_0);
    for (int64_t i = 0; i < t.n_elements(); ++i) {
      block_q8_0 b;
      std::memcpy(&b, t.data + (i / 32) * 34, sizeof b);
      const float want = fp16_to_fp32(b.d) * static_cast<float>(b.qs[i % 32]);
      float got;
      std::memcpy(&got, o->data + 4 * i, 4);
      ASSERT_EQ(float_bits(got), float_bits(want)) << t.name << " element " << i;
    }
  }
}

TEST(quantize_model, f16_and_bf16_round_the_dequantized_weights) {
  model_files f("f16");
  const auto in = write_model(f, "in.gguf", small_shape(2, true), ggml_type::q8_0);
  auto src = model::open(in);
  ASSERT_TRUE(src.ok());
  for (auto target : {ftype::f16, ftype::bf16}) {
    auto m = convert(in, f.path("out.gguf"), {target});
    ASSERT_TRUE(m);
    EXPECT_EQ(file_type_of(*m), target == ftype::f16 ? 1 : 32);
    const ggml_type want_type = target == ftype::f16 ? ggml_type::f16 : ggml_type::bf16;
    for (const auto& t : (*src)->file().tensors()) {
      const tensor_info* o = m->file().find_tensor(t.name);
      ASSERT_TRUE(o);
      if (t.n_dims == 1) {
        EXPECT_EQ(o->type, ggml_type::f32) << t.name;
        continue;
      }
      ASSERT_EQ(o->type, want_type) << t.name;
      std::vector<float> x(static_cast<size_t>(t.n_elements()));
      cpu::dequantize_row(t.type, t.data, x.data(), t.n_elements());
      for (int64_t i = 0; i < t.n_elements(); ++i) {
        uint16_t got;
        std::memcpy(&got, o->data + 2 * i, 2);
        const float v = x[static_cast<size_t>(i)];
        const uint16_t want = target == ftype::f16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
        ASSERT_EQ(got, want) << t.name << " element " << i;
      }
    }
  }
}

TEST(quantize_model, same_type_is_copied_and_metadata_carried_over) {
  model_files f("copy");
  const auto in = write_model(f, "in.gguf", small_shape(2, true), ggml_type::q8_0);
  auto src = model::open(in);
  ASSERT_TRUE(src.ok());
  auto s = quantize_model(in, f.path("out.gguf"), {ftype::q8_0});
  ASSERT_TRUE(s.ok()) << s.err().message;
  EXPECT_EQ(s->n_converted, 0);
  EXPECT_EQ(s->bytes_in, s->bytes_out);
  auto m = model::open(f.path("out.gguf"));
  ASSERT_TRUE(m.ok());
  for (const auto& t : (*src)->file().tensors()) {
    const tensor_info* o = (*m)->file().find_tensor(t.name);
    ASSERT_TRUE(o);
    ASSERT_EQ(o->n_bytes, t.n_bytes);
    EXPECT_EQ(std::memcmp(o->data, t.data, t.n_bytes), 0) << t.name;
  }
  const auto& a = (*src)->file().metadata();
  const auto& b = (*m)->file().metadata();
  ASSERT_EQ(a.size(), b.size());
  // the same keys, values and order, except the two llama-quantize re-adds at the end
  std::vector<std::string> keys_a, keys_b;
  for (const auto& [k, v] : a) {
    if (k != "general.file_type" && k != "general.quantization_version") {
      keys_a.push_back(k);
      const gguf_value* w = (*m)->file().find(k);
      ASSERT_TRUE(w) << k;
      EXPECT_EQ(w->to_display(), v.to_display()) << k;
      EXPECT_EQ(w->type(), v.type()) << k;
    }
  }
  for (const auto& [k, v] : b) {
    keys_b.push_back(k);
  }
  EXPECT_EQ(keys_b[keys_b.size() - 2], "general.quantization_version");
  EXPECT_EQ(keys_b.back(), "general.file_type");
  keys_b.resize(keys_b.size() - 2);
  EXPECT_EQ(keys_a, keys_b);
}

TEST(quantize_model, every_target_opens_and_round_trips_near_the_source) {
  model_files f("all");
  for (ggml_type from : {ggml_type::f32, ggml_type::f16, ggml_type::q8_0}) {
    const std::string in = write_model(f, "in.gguf", small_shape(2, true), from);
    auto src = model::open(in);
    ASSERT_TRUE(src.ok());
    for (auto target :
         {ftype::f32, ftype::f16, ftype::bf16, ftype::q8_0,
          ftype::q4_0, ftype::q4_k_m, ftype::q6_k}) {
      auto m = convert(in, f.path("out.gguf"), {target});
      ASSERT_TRUE(m) << traits(from).name << " -> " << info(target).name;
      EXPECT_EQ(file_type_of(*m), info(target).id);
      const auto* a = (*src)->file().find_tensor("blk.1.ffn_up.weight");
      const auto* b = m->file().find_tensor("blk.1.ffn_up.weight");
      std::vector<float> x(static_cast<size_t>(a->n_elements())), y(x.size());
      cpu::dequantize_row(a->type, a->data, x.data(), a->n_elements());
      cpu::dequantize_row(b->type, b->data, y.data(), b->n_elements());
      EXPECT_LE(rms_error(x, y) / rms(x), 0.12)
          << traits(from).name << " -> " << info(target).name;
    }
  }
}

TEST(quantize_model, threads_do_not_change_the_bytes) {
  model_files f("threads");
  auto s = small_shape(1, true);
  s.n_vocab = 4096;  // token_embd of 1 M weights: big enough to be split between threads
  const auto in = write_model(f, "in.gguf", s, ggml_type::f32);
  quantize_options one{ftype::q4_k_m};
  one.n_threads = 1;
  quantize_options three{ftype::q4_k_m};
  three.n_threads = 3;
  ASSERT_TRUE(quantize_model(in, f.path("a.gguf"), one).ok());
  ASSERT_TRUE(quantize_model(in, f.path("b.gguf"), three).ok());
  std::ifstream a(f.path("a.gguf"), std::ios::binary), b(f.path("b.gguf"), std::ios::binary);
  const std::string sa((std::istreambuf_iterator<char>(a)), {});
  const std::string sb((std::istreambuf_iterator<char>(b)), {});
  EXPECT_FALSE(sa.empty());
  EXPECT_TRUE(sa == sb);
}

TEST(quantize_model, row_lengths_off_the_block_fall_back_as_llama_cpp) {
  model_files f("fallback");
  // n_embd 288: a multiple of 32, not of 256; n_ff 768 is a multiple of 256
  auto s = small_shape(2, true);
  s.n_embd = 288;
  s.n_ff = 768;
  const auto in = write_model(f, "in.gguf", s, ggml_type::q8_0);
  {
    auto m = convert(in, f.path("q6.gguf"), {ftype::q6_k});
    ASSERT_TRUE(m);
    auto types = type_map(m->file());
    EXPECT_EQ(types["token_embd.weight"], ggml_type::q8_0);  // Q6_K → Q8_0
    EXPECT_EQ(types["blk.0.attn_q.weight"], ggml_type::q8_0);
    EXPECT_EQ(types["blk.0.ffn_down.weight"], ggml_type::q6_k);
  }
  {
    auto m = convert(in, f.path("q4.gguf"), {ftype::q4_0});
    ASSERT_TRUE(m);
    auto types = type_map(m->file());
    EXPECT_EQ(types["token_embd.weight"], ggml_type::q8_0);  // head Q6_K → Q8_0
    EXPECT_EQ(types["blk.0.attn_q.weight"], ggml_type::q4_0);
  }
  {
    // Q4_K falls back to Q5_0, which baton does not compute with: refused by name
    auto r = quantize_model(in, f.path("q4km.gguf"), {ftype::q4_k_m});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().message.find("q5_0"), std::string::npos) << r.err().message;
    EXPECT_FALSE(fs::exists(f.path("q4km.gguf")));
  }
  // n_embd 80, not even a multiple of 32: past Q8_0 only F16 is left (for the head's
  // Q8_0 and the Q4_0 / Q8_0 defaults as well)
  s.n_embd = 80;
  s.n_ff = 256;
  const auto in80 = write_model(f, "in80.gguf", s, ggml_type::f32);
  for (auto target : {ftype::q6_k, ftype::q8_0, ftype::q4_0}) {
    for (bool pure : {false, true}) {
      quantize_options o{target};
      o.pure = pure;
      auto m = convert(in80, f.path("q.gguf"), o);
      ASSERT_TRUE(m) << info(target).name;
      auto types = type_map(m->file());
      EXPECT_EQ(types["token_embd.weight"], ggml_type::f16) << info(target).name;
      EXPECT_EQ(types["blk.0.attn_q.weight"], ggml_type::f16) << info(target).name;
      EXPECT_EQ(types["blk.0.ffn_down.weight"], info(target).default_type) << info(target).name;
    }
  }
}

TEST(quantize_model, bad_input_is_an_error_naming_it) {
  model_files f("bad");
  auto missing = quantize_model(f.path("nope.gguf"), f.path("out.gguf"), {ftype::q4_0});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.err().message.find("nope.gguf"), std::string::npos) << missing.err().message;

  {
    std::ofstream o(f.path("corrupt.gguf"), std::ios::binary);
    o << "GGUF\x03\0\0\0 this is not a gguf file at all";
  }
  auto corrupt = quantize_model(f.path("corrupt.gguf"), f.path("out.gguf"), {ftype::q4_0});
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.err().message.find("corrupt.gguf"), std::string::npos);

  gguf_writer w;
  w.set("general.architecture", "gpt2");
  w.add_tensor("token_embd.weight", ggml_type::f32, {32, 4});
  ASSERT_TRUE(w.write(f.path("gpt2.gguf")).ok());
  auto arch = quantize_model(f.path("gpt2.gguf"), f.path("out.gguf"), {ftype::q4_0});
  ASSERT_FALSE(arch.ok());
  EXPECT_NE(arch.err().message.find("gpt2"), std::string::npos) << arch.err().message;
  EXPECT_FALSE(fs::exists(f.path("out.gguf")));

  const auto in = write_model(f, "in.gguf", small_shape(1, true), ggml_type::q8_0);
  auto same = quantize_model(in, in, {ftype::q4_0});
  ASSERT_FALSE(same.ok());
  EXPECT_TRUE(model::open(in).ok());  // untouched
}

// -- the shared models ---------------------------------------------------------------

TEST(quantize_shared, tiny_q8_0_to_q4_k_m_and_q4_0_match_llama_quantize_type_maps) {
  BATON_REQUIRE_SHARED(shared);
  model_files f("shared");
  const std::string in = (shared / "models/tiny-q8_0.gguf").string();
  for (auto [target, ref] : {std::pair{ftype::q4_k_m, "tiny-q4_k_m.gguf"},
                             {ftype::q4_0, "tiny-q4_0.gguf"}}) {
    auto m = convert(in, f.path("out.gguf"), {target});
    ASSERT_TRUE(m);
    auto want = gguf_file::open((shared / "models" / ref).string());
    ASSERT_TRUE(want.ok()) << want.err().message;
    // the same tensors, types, order and offsets
    EXPECT_EQ(ordered_types(m->file()), ordered_types(*want)) << ref;
    ASSERT_EQ(m->file().tensors().size(), want->tensors().size());
    for (size_t i = 0; i < want->tensors().size(); ++i) {
      EXPECT_EQ(m->file().tensors()[i].offset, want->tensors()[i].offset)
          << want->tensors()[i].name;
    }
    // the same metadata: llama-quantize wrote it from the same source keys
    ASSERT_EQ(m->file().metadata().size(), want->metadata().size());
    for (size_t i = 0; i < want->metadata().size(); ++i) {
      const auto& [k, v] = want->metadata()[i];
      EXPECT_EQ(m->file().metadata()[i].first, k);
      EXPECT_EQ(m->file().metadata()[i].second.to_display(), v.to_display()) << k;
    }
    EXPECT_EQ(m->file().data_offset(), want->data_offset());
    // llama-quantize quantized the float original, we its Q8_0 copy: the two agree
    // closer than either's own quantization error (measured: Q4_0 0.039, Q4_K 0.055,
    // Q6_K 0.019 relative RMS; 4-bit formats alone err by 0.07-0.09)
    for (const auto& t : want->tensors()) {
      if (t.n_dims == 1) {
        continue;
      }
      const tensor_info* o = m->file().find_tensor(t.name);
      std::vector<float> x(static_cast<size_t>(t.n_elements())), y(x.size());
      cpu::dequantize_row(t.type, t.data, x.data(), t.n_elements());
      cpu::dequantize_row(o->type, o->data, y.data(), o->n_elements());
      EXPECT_LE(rms_error(x, y) / rms(x), t.type == ggml_type::q6_k ? 0.025 : 0.07) << t.name;
    }
  }
}

TEST(quantize_shared, tiny_q8_0_to_f32_is_dequantize_row_exactly) {
  BATON_REQUIRE_SHARED(shared);
  model_files f("shared-f32");
  const std::string in = (shared / "models/tiny-q8_0.gguf").string();
  auto src = model::open(in);
  ASSERT_TRUE(src.ok());
  auto m = convert(in, f.path("out.gguf"), {ftype::f32});
  ASSERT_TRUE(m);
  for (const auto& t : (*src)->file().tensors()) {
    const tensor_info* o = m->file().find_tensor(t.name);
    ASSERT_TRUE(o);
    ASSERT_EQ(o->type, ggml_type::f32) << t.name;
    std::vector<float> x(static_cast<size_t>(t.n_elements()));
    cpu::dequantize_row(t.type, t.data, x.data(), t.n_elements());
    ASSERT_EQ(o->n_bytes, x.size() * 4);
    EXPECT_EQ(std::memcmp(o->data, x.data(), o->n_bytes), 0) << t.name;
  }
}

}  // namespace
}  // namespace baton
