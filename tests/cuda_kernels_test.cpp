// kernels/cuda against the CPU scalar reference, on random inputs: decoders, activation
// conversion and per-block integer dots bit for bit (both run kernels/blocks.hpp);
// matmul, norms, softmax and attention within float rounding of the reference; and the
// invariance ops.cuh promises — a token's outputs are the same bits alone or in a batch.
// Every test that launches a kernel skips, saying why, where there is no device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/dequantize.cuh"
#include "kernels/cuda/ops.cuh"
#include "tests/gpu_util.hpp"
#include "tests/random_weights.hpp"

namespace baton {
namespace {

#define CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << cudaGetErrorString(x)


using cpu::isa;

const ggml_type k_quant_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k,
                                   ggml_type::q6_k};
const ggml_type k_all_types[] = {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_k, ggml_type::q6_k,
                                 ggml_type::f16,  ggml_type::bf16, ggml_type::f32};

std::string type_name(ggml_type t) { return std::string(traits(t).name); }

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
}

/// Device memory of `bytes`, freed on scope exit; `at(off)` is a byte offset into it
/// (for rows that start unaligned).
class dev_buf {
 public:
  explicit dev_buf(size_t bytes) { check(cudaMalloc(&p_, std::max<size_t>(bytes, 1)), "cudaMalloc"); }
  template <class T>
  explicit dev_buf(const std::vector<T>& host, size_t offset = 0)
      : dev_buf(host.size() * sizeof(T) + offset) {
    check(cudaMemcpy(static_cast<uint8_t*>(p_) + offset, host.data(), host.size() * sizeof(T),
                     cudaMemcpyHostToDevice),
          "upload");
  }
  dev_buf(const dev_buf&) = delete;
  dev_buf& operator=(const dev_buf&) = delete;
  ~dev_buf() { cudaFree(p_); }

  template <class T = void>
  T* get(size_t offset = 0) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(p_) + offset);
  }
  template <class T>
  std::vector<T> read(size_t n, size_t offset = 0) const {
    std::vector<T> out(n);
    check(cudaDeviceSynchronize(), "kernel");
    check(cudaMemcpy(out.data(), get<uint8_t>(offset), n * sizeof(T), cudaMemcpyDeviceToHost),
          "download");
    return out;
  }

 private:
  void* p_ = nullptr;
};

// -- random inputs (as tests/matmul_test.cpp makes them) --------------------------

/// Unit normal values, no outliers: attention's tolerances are absolute.
std::vector<float> plain_floats(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    v = nd(rng);
  }
  return x;
}

/// random_floats with exact halves now and then: the quantizers' rounding corner.
std::vector<float> random_floats(std::mt19937& rng, int64_t n) {
  auto x = test::random_floats(rng, n);
  for (auto& v : x) {
    if (rng() % 101 == 0) {
      v = std::round(v * 4.0f) + 0.5f;
    }
  }
  return x;
}

using test::random_weights;

/// n_tokens rows converted by the CPU scalar reference, rows activation_row_bytes apart.
std::vector<uint8_t> cpu_activations(ggml_type weight, const std::vector<float>& x, int64_t n_in,
                                     int64_t n_tokens) {
  const size_t xs = cpu::activation_row_bytes(weight, n_in);
  std::vector<uint8_t> xq(xs * static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    cpu::quantize_activation_row(isa::scalar, weight, x.data() + t * n_in, xq.data() + t * xs,
                                 n_in);
  }
  return xq;
}

/// The activation row as the floats it stands for.
std::vector<double> decoded_activation(ggml_type weight, const uint8_t* xq, int64_t n_in) {
  std::vector<double> out(static_cast<size_t>(n_in));
  if (cpu::activation_type(weight) == ggml_type::q8_k) {
    for (int64_t i = 0; i < n_in; ++i) {
      block_q8_k b;
      std::memcpy(&b, xq + (i / qk_k) * sizeof b, sizeof b);
      out[i] = static_cast<double>(b.d) * b.qs[i % qk_k];
    }
    return out;
  }
  std::vector<float> f(static_cast<size_t>(n_in));
  cpu::dequantize_row(cpu::activation_type(weight), xq, f.data(), n_in);
  std::copy(f.begin(), f.end(), out.begin());
  return out;
}

/// A weight row decoded to doubles. With `split_q4_k`, a q4_K row is decoded as
/// |d·sc·q| + |dmin·m| per element: the sizes of the two terms its dot subtracts.
std::vector<double> decoded_weights(ggml_type type, const uint8_t* row, int64_t n_in,
                                    bool split_q4_k) {
  std::vector<float> f(static_cast<size_t>(n_in));
  std::vector<double> out(static_cast<size_t>(n_in));
  if (!split_q4_k) {
    cpu::dequantize_row(type, row, f.data(), n_in);
    std::copy(f.begin(), f.end(), out.begin());
    return out;
  }
  std::vector<uint8_t> part(row, row + row_bytes(type, n_in));
  for (int pass = 0; pass < 2; ++pass) {
    std::copy(row, row + part.size(), part.begin());
    for (size_t b = 0; b < part.size(); b += sizeof(block_q4_k)) {
      const size_t zero = pass == 0 ? offsetof(block_q4_k, dmin) : offsetof(block_q4_k, d);
      std::memset(&part[b + zero], 0, 2);
    }
    cpu::dequantize_row(type, part.data(), f.data(), n_in);
    for (int64_t i = 0; i < n_in; ++i) {
      out[i] += std::fabs(static_cast<double>(f[i]));
    }
  }
  return out;
}

// -- shapes: no device needed --------------------------------------------------------

TEST(cuda_ops, bad_shapes_are_errors_and_empty_work_launches_nothing) {
  // neither case reaches the device, so this runs everywhere
  EXPECT_EQ(cuda::matmul(ggml_type::q4_0, nullptr, nullptr, nullptr, 33, 4, 1, 4, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::matmul(ggml_type::q4_1, nullptr, nullptr, nullptr, 32, 4, 1, 4, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::matmul(ggml_type::q4_k, nullptr, nullptr, nullptr, 256, 4, 2, 3, nullptr),
            cudaErrorInvalidValue);  // ldy < n_out
  EXPECT_EQ(cuda::matmul(ggml_type::q4_k, nullptr, nullptr, nullptr, 256, 0, 5, 0, nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::quantize_activations(ggml_type::q6_k, nullptr, nullptr, 32, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::quantize_activations(ggml_type::q6_k, nullptr, nullptr, 256, 0, nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::block_dot_ints(ggml_type::f16, nullptr, nullptr, 64, nullptr, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::get_rows(ggml_type::q8_0, nullptr, 48, nullptr, 1, nullptr, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::get_rows(ggml_type::q8_0, nullptr, 64, nullptr, 0, nullptr, nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::rms_norm(nullptr, nullptr, nullptr, 0, 1, 1e-5f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope(nullptr, 1, 1, 64, 64, 65, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope(nullptr, 1, 2, 64, 100, 64, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::softmax_rows(nullptr, 10, 0, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::add(nullptr, nullptr, 0, nullptr), cudaSuccess);
  cuda::paged_kv kv;
  int dummy = 0;
  kv.k = kv.v = &dummy;
  kv.n_blocks = 1;
  kv.block_size = 16;
  kv.n_head_kv = 2;
  kv.head_dim = 512;  // above the kernel's 256
  EXPECT_EQ(cuda::attention(kv, nullptr, 1, 8, nullptr, nullptr, nullptr, 1.0f, nullptr, nullptr),
            cudaErrorInvalidValue);
  kv.head_dim = 128;
  EXPECT_EQ(cuda::attention(kv, nullptr, 1, 7, nullptr, nullptr, nullptr, 1.0f, nullptr, nullptr),
            cudaErrorInvalidValue);  // 7 query heads over 2 KV heads
  EXPECT_EQ(cuda::attention(kv, nullptr, 0, 8, nullptr, nullptr, nullptr, 1.0f, nullptr, nullptr),
            cudaSuccess);
  kv.type = ggml_type::q8_0;
  EXPECT_EQ(cuda::kv_store(kv, nullptr, nullptr, nullptr, 1, nullptr), cudaErrorInvalidValue);
}

// -- decoding and conversion: bit for bit ---------------------------------------------

TEST(cuda_dequantize, matches_cpu_reference_bit_for_bit) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (auto type : {ggml_type::f16, ggml_type::bf16, ggml_type::q8_0, ggml_type::q4_0,
                    ggml_type::q4_k, ggml_type::q6_k}) {
    const int64_t n = 256 * 37;
    const uint64_t bytes = row_bytes(type, n);
    std::vector<uint8_t> x(bytes);
    for (auto& b : x) {
      b = static_cast<uint8_t>(rng());
    }
    // f16 data: clear the exponent's top bit so values stay finite (NaN payloads differ)
    if (type == ggml_type::f16) {
      for (size_t i = 1; i < x.size(); i += 2) {
        x[i] &= 0xbf;
      }
    }
    std::vector<float> want(static_cast<size_t>(n));
    cpu::dequantize_row(type, x.data(), want.data(), n);
    dev_buf dx(x);
    dev_buf dy(n * sizeof(float));
    CUDA_OK(cuda::dequantize_row(type, dx.get(), dy.get<float>(), n, nullptr));
    const auto got = dy.read<float>(n);
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(want[i])) {
        ASSERT_TRUE(std::isnan(got[i]));
        continue;
      }
      ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
          << traits(type).name << " element " << i << ": " << want[i] << " vs " << got[i];
    }
  }
}

TEST(cuda_ops, quantize_activations_writes_the_cpu_bytes) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(21);
  for (ggml_type type : k_all_types) {
    const int64_t n_in = 768, n_tokens = 5;
    auto x = random_floats(rng, n_in * n_tokens);
    std::fill(x.begin() + n_in, x.begin() + n_in + 256, 0.0f);  // an all-zero block
    const auto want = cpu_activations(type, x, n_in, n_tokens);
    dev_buf dx(x);
    dev_buf dq(want.size());
    CUDA_OK(cuda::quantize_activations(type, dx.get<float>(), dq.get(), n_in, n_tokens, nullptr));
    const auto got = dq.read<uint8_t>(want.size());
    ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size())) << type_name(type);
  }
}

TEST(cuda_ops, block_dot_ints_are_the_cpu_ints) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(22);
  for (ggml_type type : k_quant_types) {
    const int64_t n_in = 2048;
    const auto w = random_weights(rng, type, 1, n_in);
    const auto xq = cpu_activations(type, random_floats(rng, n_in), n_in, 1);
    const size_t n_out = n_in / traits(type).block_size * cpu::block_dot_ints_per_block(type);
    std::vector<int32_t> want(n_out);
    cpu::block_dot_ints(isa::scalar, type, w.data(), xq.data(), n_in, want.data());
    dev_buf dw(w, 1);  // an odd address: rows of file data need not be aligned
    dev_buf dx(xq);
    dev_buf dout(n_out * sizeof(int32_t));
    CUDA_OK(cuda::block_dot_ints(type, dw.get(1), dx.get(), n_in, dout.get<int32_t>(), nullptr));
    EXPECT_EQ(dout.read<int32_t>(n_out), want) << type_name(type);
  }
}

TEST(cuda_ops, get_rows_decodes_as_the_cpu) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(23);
  for (ggml_type type : k_all_types) {
    const int64_t n = 512, n_rows = 9;
    const auto table = random_weights(rng, type, n_rows, n);
    const std::vector<int32_t> ids = {7, 0, 3, 3, 8, 1};
    const size_t rb = row_bytes(type, n);
    std::vector<float> want(ids.size() * n);
    for (size_t i = 0; i < ids.size(); ++i) {
      cpu::dequantize_row(type, table.data() + ids[i] * rb, want.data() + i * n, n);
    }
    dev_buf dt(table);
    dev_buf di(ids);
    dev_buf dout(want.size() * sizeof(float));
    CUDA_OK(cuda::get_rows(type, dt.get(), n, di.get<int32_t>(), static_cast<int64_t>(ids.size()),
                           dout.get<float>(), nullptr));
    const auto got = dout.read<float>(want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(float_bits(got[i]), float_bits(want[i])) << type_name(type) << " " << i;
    }
  }
}

// -- matmul ---------------------------------------------------------------------------

struct matmul_case {
  std::vector<uint8_t> w;
  std::vector<uint8_t> xq;
  int64_t n_in;
  int64_t n_out;
  int64_t n_tokens;
};

matmul_case make_case(std::mt19937& rng, ggml_type type, int64_t n_in, int64_t n_out,
                      int64_t n_tokens) {
  return {random_weights(rng, type, n_out, n_in),
          cpu_activations(type, random_floats(rng, n_in * n_tokens), n_in, n_tokens), n_in, n_out,
          n_tokens};
}

/// The GPU's y[n_tokens × ldy]: weights placed `w_offset` bytes into their buffer.
std::vector<float> gpu_matmul(ggml_type type, const matmul_case& c, int64_t ldy,
                              size_t w_offset = 0) {
  dev_buf dw(c.w, w_offset);
  dev_buf dx(c.xq);
  dev_buf dy(static_cast<size_t>(c.n_tokens * ldy) * sizeof(float));
  check(cudaMemset(dy.get(), 0xff, static_cast<size_t>(c.n_tokens * ldy) * sizeof(float)),
        "memset");
  check(cuda::matmul(type, dw.get(w_offset), dx.get(), dy.get<float>(), c.n_in, c.n_out,
                     c.n_tokens, ldy, nullptr),
        "matmul");
  return dy.read<float>(static_cast<size_t>(c.n_tokens * ldy));
}

TEST(cuda_ops, matmul_matches_cpu_within_rounding) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(24);
  for (ggml_type type : k_all_types) {
    const auto c = make_case(rng, type, 2304, 37, 11);  // 72 q8_0 blocks, 9 q4_K blocks
    const size_t offset = traits(type).quantized ? 2 : 0;  // q blocks at a non-word address
    const auto got = gpu_matmul(type, c, c.n_out, offset);
    std::vector<float> want(static_cast<size_t>(c.n_tokens * c.n_out));
    cpu::matmul(isa::scalar, type, c.w.data(), c.xq.data(), want.data(), c.n_in, c.n_tokens,
                c.n_out, 0, c.n_out);
    const size_t rb = row_bytes(type, c.n_in);
    const size_t xs = cpu::activation_row_bytes(type, c.n_in);
    // each side rounds a few times per block term and once per addition of n_terms terms,
    // each rounding at most 2^-24 of Σ|terms|
    const int64_t n_terms = c.n_in / traits(type).block_size;
    const double bound = 2.0 * static_cast<double>(n_terms + 10) * std::ldexp(1.0, -24);
    for (int64_t r = 0; r < c.n_out; ++r) {
      const uint8_t* row = c.w.data() + r * rb;
      const auto wf = decoded_weights(type, row, c.n_in, false);
      // q4_K's terms are d·Σ(sc·q·x) and dmin·Σ(m·x), which may nearly cancel: their own sizes
      const auto parts = type == ggml_type::q4_k ? decoded_weights(type, row, c.n_in, true) : wf;
      for (int64_t t = 0; t < c.n_tokens; ++t) {
        const auto xf = decoded_activation(type, c.xq.data() + t * xs, c.n_in);
        double exact = 0.0, mag = 0.0;
        for (int64_t i = 0; i < c.n_in; ++i) {
          exact += wf[i] * xf[i];
          mag += std::fabs(parts[i] * xf[i]);
        }
        const float g = got[t * c.n_out + r];
        const float cref = want[t * c.n_out + r];
        ASSERT_NEAR(g, cref, bound * mag) << type_name(type) << " row " << r << " token " << t;
        ASSERT_NEAR(g, exact, bound * mag) << type_name(type) << " row " << r << " token " << t;
      }
    }
  }
}

TEST(cuda_ops, matmul_element_does_not_depend_on_the_batch) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(25);
  for (ggml_type type : k_all_types) {
    const int64_t n_in = 1024, n_out = 29, n_tokens = 37, ldy = 41;
    const auto c = make_case(rng, type, n_in, n_out, n_tokens);
    const auto all = gpu_matmul(type, c, ldy);
    const size_t rb = row_bytes(type, n_in);
    const size_t xs = cpu::activation_row_bytes(type, n_in);
    for (int64_t t : {int64_t{0}, int64_t{13}, int64_t{36}}) {
      // token t alone, over rows [5, 17) only
      matmul_case one{std::vector<uint8_t>(c.w.begin() + 5 * rb, c.w.begin() + 17 * rb),
                      std::vector<uint8_t>(c.xq.begin() + t * xs, c.xq.begin() + (t + 1) * xs),
                      n_in, 12, 1};
      const auto alone = gpu_matmul(type, one, 12);
      for (int64_t r = 0; r < 12; ++r) {
        ASSERT_EQ(float_bits(alone[r]), float_bits(all[t * ldy + 5 + r]))
            << type_name(type) << " token " << t << " row " << 5 + r;
      }
    }
    // tokens [3, 12): token 3 + k lands in another tile slot than in the full batch
    matmul_case mid{c.w, std::vector<uint8_t>(c.xq.begin() + 3 * xs, c.xq.begin() + 12 * xs), n_in,
                    n_out, 9};
    const auto part = gpu_matmul(type, mid, n_out);
    for (int64_t k = 0; k < 9; ++k) {
      for (int64_t r = 0; r < n_out; ++r) {
        ASSERT_EQ(float_bits(part[k * n_out + r]), float_bits(all[(3 + k) * ldy + r]))
            << type_name(type) << " token " << 3 + k << " row " << r;
      }
    }
  }
}

// -- row and element-wise ops ----------------------------------------------------------

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-30) << what << " " << i;
  }
}

TEST(cuda_ops, norm_rope_silu_add_softmax_match_cpu) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(26);
  const int64_t n = 4096 + 7, n_rows = 3;
  const auto x = random_floats(rng, n * n_rows);
  const auto w = random_floats(rng, n);
  const auto u = random_floats(rng, n * n_rows);

  std::vector<float> want(x.size());
  for (int64_t r = 0; r < n_rows; ++r) {
    cpu::rms_norm(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-5f);
  }
  dev_buf dx(x), dw(w), du(u), dy(x.size() * sizeof(float));
  CUDA_OK(cuda::rms_norm(dx.get<float>(), dw.get<float>(), dy.get<float>(), n, n_rows, 1e-5f,
                         nullptr));
  expect_close(dy.read<float>(x.size()), want, 1e-6, "rms_norm");

  for (size_t i = 0; i < x.size(); i += static_cast<size_t>(n)) {
    cpu::silu_mul(x.data() + i, u.data() + i, want.data() + i, n);
  }
  CUDA_OK(cuda::silu_mul(dx.get<float>(), du.get<float>(), dy.get<float>(),
                         static_cast<int64_t>(x.size()), nullptr));
  expect_close(dy.read<float>(x.size()), want, 2e-6, "silu_mul");  // device expf: an ulp or two

  for (size_t i = 0; i < x.size(); ++i) {
    want[i] = x[i] + u[i];
  }
  CUDA_OK(cudaMemcpy(dy.get(), x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_OK(cuda::add(dy.get<float>(), du.get<float>(), static_cast<int64_t>(x.size()), nullptr));
  expect_close(dy.read<float>(x.size()), want, 0.0, "add");

  std::vector<float> s(x.begin(), x.end());
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t i = 0; i < n; ++i) {
      s[r * n + i] *= 3.0f;  // a peaked row: exp underflows for most of it
    }
  }
  want = s;
  for (int64_t r = 0; r < n_rows; ++r) {
    cpu::softmax(want.data() + r * n, n);
  }
  dev_buf ds(s);
  CUDA_OK(cuda::softmax_rows(ds.get<float>(), n, n_rows, nullptr));
  const auto got = ds.read<float>(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 * want[i] + 1e-37) << "softmax " << i;
  }
}

TEST(cuda_ops, rope_rotates_as_the_cpu) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(27);
  const int64_t n_tokens = 5, n_heads = 6, head_dim = 128, n_rot = 96;
  const int64_t stride = n_heads * head_dim + 64;  // rows with something else after the heads
  auto x = random_floats(rng, n_tokens * stride);
  std::vector<float> cs(static_cast<size_t>(n_tokens * n_rot));
  std::vector<float> factors(n_rot / 2, 1.0f);  // Llama 3 style: low frequencies stretched
  std::fill(factors.begin() + 32, factors.end(), 8.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    cpu::rope_cache(static_cast<int32_t>(100 * t + 3), n_rot, 500000.0f, factors.data(),
                    cs.data() + t * n_rot);
  }
  auto want = x;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      cpu::rope_apply(want.data() + t * stride + h * head_dim, n_rot, cs.data() + t * n_rot);
    }
  }
  dev_buf dx(x), dcs(cs);
  CUDA_OK(cuda::rope(dx.get<float>(), n_tokens, n_heads, head_dim, stride, n_rot, dcs.get<float>(),
                     nullptr));
  const auto got = dx.read<float>(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(float_bits(got[i]), float_bits(want[i])) << i;  // the same four roundings
  }
}

// -- K/V cache and attention --------------------------------------------------------------

/// A batch over a paged cache: three sequences with shuffled block tables; the batch holds
/// a decode token of each of A and B and a prefill chunk of C.
struct attn_batch {
  int64_t block_size = 16;
  int64_t n_blocks = 24;
  int64_t n_head_kv = 2;
  int64_t n_head = 8;  // GQA: 4 query heads per KV head
  int64_t head_dim;
  std::vector<int32_t> tables;        // all sequences' tables, back to back
  std::vector<int32_t> seq_offset;    // where each sequence's table starts
  std::vector<int32_t> seq_len;       // positions each sequence has in the cache
  std::vector<int32_t> tok_seq;       // the batch: sequence of token t
  std::vector<int32_t> tok_n_kv;      // ... and its n_kv (its position + 1)
};

attn_batch make_batch(std::mt19937& rng, int64_t head_dim) {
  attn_batch b;
  b.head_dim = head_dim;
  std::vector<int32_t> pool(static_cast<size_t>(b.n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  b.seq_len = {45, 1, 140};
  size_t next = 0;
  for (int32_t len : b.seq_len) {
    b.seq_offset.push_back(static_cast<int32_t>(b.tables.size()));
    for (int64_t i = 0; i < (len + b.block_size - 1) / b.block_size; ++i) {
      b.tables.push_back(pool[next++]);
    }
  }
  b.tok_seq = {0, 2, 2, 2, 2, 2, 1};
  b.tok_n_kv = {45, 136, 137, 138, 139, 140, 1};
  return b;
}

struct host_cache {
  std::vector<uint8_t> k, v;  // [n_blocks][block_size][n_head_kv][head_dim] of the type
};

/// Fills the cache of every sequence through cuda::kv_store (one call per sequence, a
/// prefill of all its positions), checks the stored bytes against the rounding the CPU
/// does, and returns the cache as the host sees it.
host_cache fill_cache(std::mt19937& rng, const attn_batch& b, const cuda::paged_kv& kv) {
  const int64_t row = b.n_head_kv * b.head_dim;
  const size_t elem = kv.type == ggml_type::f16 ? 2 : 4;
  host_cache want{std::vector<uint8_t>(static_cast<size_t>(b.n_blocks * b.block_size * row) * elem),
                  {}};
  want.v = want.k;
  for (size_t s = 0; s < b.seq_len.size(); ++s) {
    const int64_t len = b.seq_len[s];
    const auto k = plain_floats(rng, len * row);
    const auto v = plain_floats(rng, len * row);
    std::vector<int32_t> slots(static_cast<size_t>(len));
    for (int64_t p = 0; p < len; ++p) {
      slots[p] = static_cast<int32_t>(b.tables[b.seq_offset[s] + p / b.block_size] * b.block_size +
                                      p % b.block_size);
      for (int64_t i = 0; i < row; ++i) {
        const size_t at = (static_cast<size_t>(slots[p]) * row + i) * elem;
        if (elem == 2) {
          const uint16_t hk = fp32_to_fp16(k[p * row + i]), hv = fp32_to_fp16(v[p * row + i]);
          std::memcpy(&want.k[at], &hk, 2);
          std::memcpy(&want.v[at], &hv, 2);
        } else {
          std::memcpy(&want.k[at], &k[p * row + i], 4);
          std::memcpy(&want.v[at], &v[p * row + i], 4);
        }
      }
    }
    dev_buf dk(k), dv(v), ds(slots);
    check(cuda::kv_store(kv, dk.get<float>(), dv.get<float>(), ds.get<int32_t>(), len, nullptr),
          "kv_store");
    check(cudaDeviceSynchronize(), "kv_store");
  }
  host_cache got{std::vector<uint8_t>(want.k.size()), std::vector<uint8_t>(want.v.size())};
  check(cudaMemcpy(got.k.data(), kv.k, got.k.size(), cudaMemcpyDeviceToHost), "download");
  check(cudaMemcpy(got.v.data(), kv.v, got.v.size(), cudaMemcpyDeviceToHost), "download");
  // slots never written are whatever cudaMemset left: compare the written ones via want
  for (size_t s = 0; s < b.seq_len.size(); ++s) {
    for (int64_t p = 0; p < b.seq_len[s]; ++p) {
      const int64_t slot = b.tables[b.seq_offset[s] + p / b.block_size] * b.block_size + p % b.block_size;
      const size_t at = static_cast<size_t>(slot * row) * elem, n = static_cast<size_t>(row) * elem;
      if (std::memcmp(&got.k[at], &want.k[at], n) != 0 || std::memcmp(&got.v[at], &want.v[at], n) != 0) {
        throw std::runtime_error("kv_store: sequence " + std::to_string(s) + " position " +
                                 std::to_string(p) + " differs from the CPU's rounding");
      }
    }
  }
  return got;
}

/// cuda::attention over tokens `toks` of the batch; out [toks, n_head × head_dim].
std::vector<float> gpu_attention(const attn_batch& b, const cuda::paged_kv& kv,
                                 const std::vector<float>& q_all, const std::vector<int>& toks,
                                 float scale) {
  const int64_t qrow = b.n_head * b.head_dim;
  std::vector<float> q;
  std::vector<int32_t> offs, nkv;
  for (int t : toks) {
    q.insert(q.end(), q_all.begin() + t * qrow, q_all.begin() + (t + 1) * qrow);
    offs.push_back(b.seq_offset[b.tok_seq[t]]);
    nkv.push_back(b.tok_n_kv[t]);
  }
  dev_buf dq(q), dt(b.tables), doff(offs), dn(nkv), dout(q.size() * sizeof(float));
  check(cuda::attention(kv, dq.get<float>(), static_cast<int64_t>(toks.size()), b.n_head,
                        dt.get<int32_t>(), doff.get<int32_t>(), dn.get<int32_t>(), scale,
                        dout.get<float>(), nullptr),
        "attention");
  return dout.read<float>(q.size());
}

void run_attention_case(ggml_type type, int64_t head_dim, uint32_t seed) {
  std::mt19937 rng(seed);
  const attn_batch b = make_batch(rng, head_dim);
  const size_t elem = type == ggml_type::f16 ? 2 : 4;
  const size_t cache_bytes = static_cast<size_t>(b.n_blocks * b.block_size * b.n_head_kv * head_dim) * elem;
  dev_buf dk(cache_bytes), dv(cache_bytes);
  check(cudaMemset(dk.get(), 0, cache_bytes), "memset");
  check(cudaMemset(dv.get(), 0, cache_bytes), "memset");
  cuda::paged_kv kv;
  kv.k = dk.get();
  kv.v = dv.get();
  kv.n_blocks = b.n_blocks;
  kv.block_size = b.block_size;
  kv.n_head_kv = b.n_head_kv;
  kv.head_dim = head_dim;
  kv.type = type;
  const host_cache cache = fill_cache(rng, b, kv);

  const int64_t n_tok = static_cast<int64_t>(b.tok_seq.size());
  auto q = plain_floats(rng, n_tok * b.n_head * head_dim);
  for (auto& v : q) {
    v *= 2.0f;  // sharper softmax than unit scores give
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<int> all(static_cast<size_t>(n_tok));
  std::iota(all.begin(), all.end(), 0);
  const auto got = gpu_attention(b, kv, q, all, scale);

  // the CPU reference over the same cache bytes
  std::vector<const void*> kb, vb;
  for (int64_t i = 0; i < b.n_blocks; ++i) {
    kb.push_back(cache.k.data() + static_cast<size_t>(i * b.block_size * b.n_head_kv * head_dim) * elem);
    vb.push_back(cache.v.data() + static_cast<size_t>(i * b.block_size * b.n_head_kv * head_dim) * elem);
  }
  std::vector<float> scratch(1024), want(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < n_tok; ++t) {
    const int32_t s = b.tok_seq[t];
    std::vector<const void*> tk, tv;
    for (int32_t i = b.seq_offset[s]; i < b.seq_offset[s] + (b.seq_len[s] + 15) / 16; ++i) {
      tk.push_back(kb[b.tables[i]]);
      tv.push_back(vb[b.tables[i]]);
    }
    const cpu::kv_view kview{tk.data(), b.block_size, b.n_head_kv, head_dim, type};
    const cpu::kv_view vview{tv.data(), b.block_size, b.n_head_kv, head_dim, type};
    for (int64_t h = 0; h < b.n_head; ++h) {
      const float* qh = q.data() + (t * b.n_head + h) * head_dim;
      cpu::attention_head(qh, kview, vview, h / (b.n_head / b.n_head_kv), b.tok_n_kv[t], scale,
                          scratch.data(), want.data());
      for (int64_t i = 0; i < head_dim; ++i) {
        // |v| < ~5: an f16 probability rounded the other way moves the output by 2^-11 of
        // that probability × v; f32 differs only by the scores' summation order
        const double tol = type == ggml_type::f16 ? 4e-3 : 1e-4;
        ASSERT_NEAR(got[(t * b.n_head + h) * head_dim + i], want[i], tol)
            << type_name(type) << " head_dim " << head_dim << " token " << t << " head " << h
            << " dim " << i;
      }
    }
  }

  // invariance: each token alone, and the prefill chunk with the decode tokens removed
  const int64_t qrow = b.n_head * head_dim;
  for (int t = 0; t < n_tok; ++t) {
    const auto alone = gpu_attention(b, kv, q, {t}, scale);
    for (int64_t i = 0; i < qrow; ++i) {
      ASSERT_EQ(float_bits(alone[i]), float_bits(got[t * qrow + i]))
          << type_name(type) << " token " << t << " alone, element " << i;
    }
  }
  const auto chunk = gpu_attention(b, kv, q, {5, 3, 1}, scale);
  for (int k = 0; k < 3; ++k) {
    const int t = 5 - 2 * k;
    for (int64_t i = 0; i < qrow; ++i) {
      ASSERT_EQ(float_bits(chunk[k * qrow + i]), float_bits(got[t * qrow + i]))
          << type_name(type) << " token " << t << " in another batch, element " << i;
    }
  }
}

TEST(cuda_ops, attention_matches_cpu_and_is_batch_invariant_f16) {
  BATON_REQUIRE_GPU();
  run_attention_case(ggml_type::f16, 128, 31);
  run_attention_case(ggml_type::f16, 80, 32);  // a head_dim that leaves lanes idle
}

TEST(cuda_ops, attention_matches_cpu_and_is_batch_invariant_f32) {
  BATON_REQUIRE_GPU();
  run_attention_case(ggml_type::f32, 128, 33);
  run_attention_case(ggml_type::f32, 256, 34);
}

}  // namespace
}  // namespace baton
