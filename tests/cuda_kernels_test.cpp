// kernels/cuda against the CPU scalar reference, as an op table (after llama.cpp's
// test-backend-ops): each row is one op on one type and shape, its own GoogleTest case
// (op/cuda_kernel.matches_cpu/<row>), run on the backend this file is built against —
// nvcc's objects in test_cuda_kernels, the CPU emulation in test_cuda_emu_kernels — and
// compared with the reference within the op's tolerance: decoders, activation conversion,
// per-block integer dots, row gathers, rope, add and the K/V store bit for bit (both sides
// run kernels/blocks.hpp or ops_math.hpp); matmul, norms, softmax and attention within
// float rounding. Adding a shape is one row of op_table(); adding an op is one struct
// with name() and run() and its rows. After the table: what is not an op-vs-reference
// comparison — bad shapes, and the invariance ops.cuh promises (a token's outputs are the
// same bits alone or in a batch). Every test that launches a kernel skips, saying why,
// where there is no device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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

// -- comparison ------------------------------------------------------------------------

/// How far an op's output may be from the CPU reference, per element:
/// |got − want| ≤ abs + rel × |want|; with both zero, the same bits. Where the reference
/// is NaN the op's output must be NaN too (NaN payloads may differ).
struct tolerance {
  double abs = 0.0;
  double rel = 0.0;
  bool exact() const { return abs == 0.0 && rel == 0.0; }
};

void expect_within(const std::vector<float>& got, const std::vector<float>& want, tolerance tol,
                   const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      ASSERT_TRUE(std::isnan(got[i])) << what << " element " << i << ": " << got[i] << " vs NaN";
    } else if (tol.exact()) {
      ASSERT_EQ(float_bits(got[i]), float_bits(want[i]))
          << what << " element " << i << ": " << got[i] << " vs " << want[i];
    } else {
      ASSERT_NEAR(got[i], want[i], tol.abs + tol.rel * std::fabs(want[i]))
          << what << " element " << i;
    }
  }
}

void expect_same_bytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
  ASSERT_TRUE(diff.first == got.end())
      << what << ": byte " << (diff.first - got.begin()) << " is " << int{*diff.first}
      << ", the CPU wrote " << int{*diff.second};
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

/// matmul's tolerance, as a fraction of Σ|terms| of the dot: each side rounds a few times
/// per block term and once per addition of n_terms terms, each rounding at most 2^-24 of
/// Σ|terms|.
double matmul_bound(ggml_type type, int64_t n_in) {
  const int64_t n_terms = n_in / traits(type).block_size;
  return 2.0 * static_cast<double>(n_terms + 10) * std::ldexp(1.0, -24);
}

/// got [n_tokens × n_out] within matmul_bound of the CPU reference and of the exact dot of
/// the decoded inputs.
void expect_matmul_matches_cpu(ggml_type type, const matmul_case& c, const std::vector<float>& got,
                               const std::string& what) {
  std::vector<float> want(static_cast<size_t>(c.n_tokens * c.n_out));
  cpu::matmul(isa::scalar, type, c.w.data(), c.xq.data(), want.data(), c.n_in, c.n_tokens,
              c.n_out, 0, c.n_out);
  const size_t rb = row_bytes(type, c.n_in);
  const size_t xs = cpu::activation_row_bytes(type, c.n_in);
  const double bound = matmul_bound(type, c.n_in);
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
      ASSERT_NEAR(g, want[t * c.n_out + r], bound * mag) << what << " row " << r << " token " << t;
      ASSERT_NEAR(g, exact, bound * mag) << what << " row " << r << " token " << t;
    }
  }
}

// -- K/V cache and attention --------------------------------------------------------------

/// A batch of tokens over a paged cache whose sequences have shuffled block tables.
struct attn_batch {
  int64_t block_size = 16;
  int64_t n_blocks = 24;
  int64_t n_head_kv = 2;
  int64_t n_head = 8;  // GQA: 4 query heads per KV head
  int64_t head_dim = 0;
  std::vector<int32_t> tables;        // all sequences' tables, back to back
  std::vector<int32_t> seq_offset;    // where each sequence's table starts
  std::vector<int32_t> seq_len;       // positions each sequence has in the cache
  std::vector<int32_t> tok_seq;       // the batch: sequence of token t
  std::vector<int32_t> tok_n_kv;      // ... and its n_kv (its position + 1)
};

int64_t blocks_for(const attn_batch& b, int64_t len) {
  return (len + b.block_size - 1) / b.block_size;
}

/// b.tables for b.seq_len, the cache's blocks taken in shuffled order.
void place_sequences(std::mt19937& rng, attn_batch& b) {
  std::vector<int32_t> pool(static_cast<size_t>(b.n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  size_t next = 0;
  for (int32_t len : b.seq_len) {
    b.seq_offset.push_back(static_cast<int32_t>(b.tables.size()));
    for (int64_t i = 0; i < blocks_for(b, len); ++i) {
      b.tables.push_back(pool[next++]);
    }
  }
}

/// Three sequences; the batch holds a decode token of each of A and B and a prefill chunk
/// of C.
attn_batch make_batch(std::mt19937& rng, int64_t head_dim) {
  attn_batch b;
  b.head_dim = head_dim;
  b.seq_len = {45, 1, 140};
  place_sequences(rng, b);
  b.tok_seq = {0, 2, 2, 2, 2, 2, 1};
  b.tok_n_kv = {45, 136, 137, 138, 139, 140, 1};
  return b;
}

/// One sequence of n_kv positions, in a cache with a few blocks to spare; the batch is
/// its last n_tokens positions (a decode step for 1, a prefill chunk for more).
attn_batch one_sequence(std::mt19937& rng, int64_t head_dim, int64_t n_head, int64_t n_head_kv,
                        int64_t n_kv, int64_t n_tokens) {
  attn_batch b;
  b.head_dim = head_dim;
  b.n_head = n_head;
  b.n_head_kv = n_head_kv;
  b.n_blocks = blocks_for(b, n_kv) + 3;
  b.seq_len = {static_cast<int32_t>(n_kv)};
  place_sequences(rng, b);
  for (int64_t t = 0; t < n_tokens; ++t) {
    b.tok_seq.push_back(0);
    b.tok_n_kv.push_back(static_cast<int32_t>(n_kv - n_tokens + 1 + t));
  }
  return b;
}

size_t kv_elem_bytes(ggml_type type) { return type == ggml_type::f16 ? 2 : 4; }

/// Bytes of K (or V): [n_blocks][block_size][n_head_kv][head_dim] of the type.
size_t cache_bytes(const attn_batch& b, ggml_type type) {
  return static_cast<size_t>(b.n_blocks * b.block_size * b.n_head_kv * b.head_dim) *
         kv_elem_bytes(type);
}

/// The batch's K and V caches on the device, zeroed, and the paged_kv that names them.
struct device_kv {
  device_kv(const attn_batch& b, ggml_type type)
      : k(cache_bytes(b, type)), v(cache_bytes(b, type)) {
    check(cudaMemset(k.get(), 0, cache_bytes(b, type)), "memset");
    check(cudaMemset(v.get(), 0, cache_bytes(b, type)), "memset");
    kv.k = k.get();
    kv.v = v.get();
    kv.n_blocks = b.n_blocks;
    kv.block_size = b.block_size;
    kv.n_head_kv = b.n_head_kv;
    kv.head_dim = b.head_dim;
    kv.type = type;
  }

  dev_buf k, v;
  cuda::paged_kv kv;
};

struct host_cache {
  std::vector<uint8_t> k, v;  // [n_blocks][block_size][n_head_kv][head_dim] of the type
};

/// Fills the cache of every sequence through cuda::kv_store (one call per sequence, a
/// prefill of all its positions), checks the stored bytes against the rounding the CPU
/// does, and returns the cache as the host sees it.
host_cache fill_cache(std::mt19937& rng, const attn_batch& b, const cuda::paged_kv& kv) {
  const int64_t row = b.n_head_kv * b.head_dim;
  const size_t elem = kv_elem_bytes(kv.type);
  host_cache want{std::vector<uint8_t>(cache_bytes(b, kv.type)), {}};
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

/// Queries for every token of the batch, [n_tokens, n_head × head_dim]: twice unit
/// scale, a sharper softmax than unit scores give.
std::vector<float> attention_queries(std::mt19937& rng, const attn_batch& b) {
  auto q = plain_floats(rng, static_cast<int64_t>(b.tok_seq.size()) * b.n_head * b.head_dim);
  for (auto& v : q) {
    v *= 2.0f;
  }
  return q;
}

float attention_scale(const attn_batch& b) {
  return 1.0f / std::sqrt(static_cast<float>(b.head_dim));
}

std::vector<int> all_tokens(const attn_batch& b) {
  std::vector<int> all(b.tok_seq.size());
  std::iota(all.begin(), all.end(), 0);
  return all;
}

/// cuda::attention over tokens `toks` of the batch; out [toks, n_head × head_dim].
std::vector<float> gpu_attention(const attn_batch& b, const cuda::paged_kv& kv,
                                 const std::vector<float>& q_all, const std::vector<int>& toks) {
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
                        dt.get<int32_t>(), doff.get<int32_t>(), dn.get<int32_t>(),
                        attention_scale(b), dout.get<float>(), nullptr),
        "attention");
  return dout.read<float>(q.size());
}

/// Attention's tolerance, absolute: |v| < ~5, so an f16 probability rounded the other way
/// moves the output by 2^-11 of that probability × v; f32 differs only by the scores'
/// summation order.
tolerance attention_tolerance(ggml_type type) {
  return {type == ggml_type::f16 ? 4e-3 : 1e-4, 0.0};
}

/// got (every token of the batch) against cpu::attention_head over the same cache bytes.
void expect_attention_matches_cpu(const attn_batch& b, const host_cache& cache,
                                  ggml_type type, const std::vector<float>& q,
                                  const std::vector<float>& got, const std::string& what) {
  const size_t block_bytes = cache_bytes(b, type) / static_cast<size_t>(b.n_blocks);
  const int64_t max_len = *std::max_element(b.seq_len.begin(), b.seq_len.end());
  std::vector<float> scratch(static_cast<size_t>(max_len)), want(static_cast<size_t>(b.head_dim));
  const int64_t qrow = b.n_head * b.head_dim;
  for (size_t t = 0; t < b.tok_seq.size(); ++t) {
    const int32_t s = b.tok_seq[t];
    std::vector<const void*> tk, tv;
    for (int64_t i = 0; i < blocks_for(b, b.seq_len[s]); ++i) {
      const size_t block = static_cast<size_t>(b.tables[b.seq_offset[s] + i]);
      tk.push_back(cache.k.data() + block * block_bytes);
      tv.push_back(cache.v.data() + block * block_bytes);
    }
    const cpu::kv_view kview{tk.data(), b.block_size, b.n_head_kv, b.head_dim, type};
    const cpu::kv_view vview{tv.data(), b.block_size, b.n_head_kv, b.head_dim, type};
    for (int64_t h = 0; h < b.n_head; ++h) {
      const float* qh = q.data() + t * qrow + h * b.head_dim;
      cpu::attention_head(qh, kview, vview, h / (b.n_head / b.n_head_kv), b.tok_n_kv[t],
                          attention_scale(b), scratch.data(), want.data());
      const auto first = got.begin() + static_cast<int64_t>(t) * qrow + h * b.head_dim;
      ASSERT_NO_FATAL_FAILURE(expect_within(
          std::vector<float>(first, first + b.head_dim), want, attention_tolerance(type),
          what + " token " + std::to_string(t) + " head " + std::to_string(h)));
    }
  }
}

// -- the ops ---------------------------------------------------------------------------
// One struct per op: its type and shape as fields (m, n, k as test-backend-ops names
// them where they fit), name(), and run(), which makes random inputs, runs the op on
// the device and checks it against the CPU reference within the op's tolerance.

using row_dims = std::initializer_list<std::pair<const char*, int64_t>>;

/// A row's name: the op, then each dimension as letter(s) and value ("rms_norm_n3_k4103");
/// letters, digits and '_' only, as GoogleTest needs.
std::string row_name(std::string_view op, row_dims dims) {
  std::string name(op);
  for (const auto& [letter, value] : dims) {
    name += std::string("_") + letter + std::to_string(value);
  }
  return name;
}

/// ... with the op's type, lower case, after the op ("matmul_q4_k_m37_n11_k2304").
std::string row_name(std::string_view op, ggml_type type, row_dims dims) {
  std::string t = type_name(type);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  return row_name(std::string(op) + "_" + t, dims);
}

/// cuda::dequantize_row of random bytes (any value of every field).
struct dequantize_op {
  ggml_type type;
  int64_t k;  // elements, whole blocks of the type
  static constexpr tolerance tol{};  // both decode with kernels/blocks.hpp

  std::string name() const { return row_name("dequantize", type, {{"k", k}}); }
  void run(std::mt19937& rng) const {
    std::vector<uint8_t> x(row_bytes(type, k));
    for (auto& b : x) {
      b = static_cast<uint8_t>(rng());
    }
    // f16 data: clear the exponent's top bit so values stay finite (NaN payloads differ)
    if (type == ggml_type::f16) {
      for (size_t i = 1; i < x.size(); i += 2) {
        x[i] &= 0xbf;
      }
    }
    std::vector<float> want(static_cast<size_t>(k));
    cpu::dequantize_row(type, x.data(), want.data(), k);
    dev_buf dx(x);
    dev_buf dy(want.size() * sizeof(float));
    CUDA_OK(cuda::dequantize_row(type, dx.get(), dy.get<float>(), k, nullptr));
    expect_within(dy.read<float>(want.size()), want, tol, name());
  }
};

/// cuda::quantize_activations for weights of `type`; the last row starts with an
/// all-zero block. Tolerance: none, the bytes cpu::quantize_activation_row writes.
struct quantize_activations_op {
  ggml_type type;  // of the weights
  int64_t n;       // tokens
  int64_t k;       // n_in

  std::string name() const { return row_name("quantize_activations", type, {{"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    auto x = random_floats(rng, n * k);
    std::fill_n(x.begin() + (n - 1) * k, std::min<int64_t>(k, qk_k), 0.0f);
    const auto want = cpu_activations(type, x, k, n);
    dev_buf dx(x);
    dev_buf dq(want.size());
    CUDA_OK(cuda::quantize_activations(type, dx.get<float>(), dq.get(), k, n, nullptr));
    expect_same_bytes(dq.read<uint8_t>(want.size()), want, name());
  }
};

/// cuda::block_dot_ints of one weight row, at an odd address (rows of file data need
/// not be aligned), with one activation row. Tolerance: none, the CPU's integers.
struct block_dot_ints_op {
  ggml_type type;  // a quantized type
  int64_t k;       // n_in

  std::string name() const { return row_name("block_dot_ints", type, {{"k", k}}); }
  void run(std::mt19937& rng) const {
    const auto w = random_weights(rng, type, 1, k);
    const auto xq = cpu_activations(type, random_floats(rng, k), k, 1);
    const size_t n_out = k / traits(type).block_size * cpu::block_dot_ints_per_block(type);
    std::vector<int32_t> want(n_out);
    cpu::block_dot_ints(isa::scalar, type, w.data(), xq.data(), k, want.data());
    dev_buf dw(w, 1);
    dev_buf dx(xq);
    dev_buf dout(n_out * sizeof(int32_t));
    CUDA_OK(cuda::block_dot_ints(type, dw.get(1), dx.get(), k, dout.get<int32_t>(), nullptr));
    EXPECT_EQ(dout.read<int32_t>(n_out), want) << name();
  }
};

/// cuda::get_rows of n ids into a table of m rows: the last row, the first, a repeated
/// id, then random ones.
struct get_rows_op {
  ggml_type type;
  int64_t m;  // table rows
  int64_t n;  // ids
  int64_t k;  // elements per row
  static constexpr tolerance tol{};  // both decode with kernels/blocks.hpp

  std::string name() const { return row_name("get_rows", type, {{"m", m}, {"n", n}, {"k", k}}); }
  std::vector<int32_t> ids(std::mt19937& rng) const {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) {
      id = static_cast<int32_t>(rng() % static_cast<uint32_t>(m));
    }
    ids[0] = static_cast<int32_t>(m - 1);
    if (n > 1) {
      ids[1] = 0;
    }
    if (n > 3) {
      ids[3] = ids[2];
    }
    return ids;
  }
  void run(std::mt19937& rng) const {
    const auto table = random_weights(rng, type, m, k);
    const auto id = ids(rng);
    const size_t rb = row_bytes(type, k);
    std::vector<float> want(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < n; ++i) {
      cpu::dequantize_row(type, table.data() + id[i] * rb, want.data() + i * k, k);
    }
    dev_buf dt(table);
    dev_buf di(id);
    dev_buf dout(want.size() * sizeof(float));
    CUDA_OK(cuda::get_rows(type, dt.get(), k, di.get<int32_t>(), n, dout.get<float>(), nullptr));
    expect_within(dout.read<float>(want.size()), want, tol, name());
  }
};

/// cuda::matmul, y [n × m] = W [m × k] · x [n × k], quantized weights at a non-word
/// address. Tolerance: matmul_bound of Σ|terms|, from the CPU and from the exact dot.
struct matmul_op {
  ggml_type type;  // of the weights
  int64_t m;       // n_out
  int64_t n;       // tokens
  int64_t k;       // n_in

  std::string name() const { return row_name("matmul", type, {{"m", m}, {"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    const auto c = make_case(rng, type, k, m, n);
    const size_t offset = traits(type).quantized ? 2 : 0;
    expect_matmul_matches_cpu(type, c, gpu_matmul(type, c, m, offset), name());
  }
};

/// cuda::rms_norm of n rows of k.
struct rms_norm_op {
  int64_t n;  // rows
  int64_t k;  // row length
  static constexpr tolerance tol{1e-30, 1e-6};

  std::string name() const { return row_name("rms_norm", {{"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    const auto x = random_floats(rng, n * k);
    const auto w = random_floats(rng, k);
    std::vector<float> want(x.size());
    for (int64_t r = 0; r < n; ++r) {
      cpu::rms_norm(x.data() + r * k, w.data(), want.data() + r * k, k, 1e-5f);
    }
    dev_buf dx(x), dw(w), dy(x.size() * sizeof(float));
    CUDA_OK(
        cuda::rms_norm(dx.get<float>(), dw.get<float>(), dy.get<float>(), k, n, 1e-5f, nullptr));
    expect_within(dy.read<float>(x.size()), want, tol, name());
  }
};

/// cuda::silu_mul over n × k elements.
struct silu_mul_op {
  int64_t n;
  int64_t k;
  static constexpr tolerance tol{1e-30, 2e-6};  // device expf: an ulp or two

  std::string name() const { return row_name("silu_mul", {{"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    const auto gate = random_floats(rng, n * k);
    const auto up = random_floats(rng, n * k);
    std::vector<float> want(gate.size());
    cpu::silu_mul(gate.data(), up.data(), want.data(), n * k);
    dev_buf dg(gate), du(up), dy(gate.size() * sizeof(float));
    CUDA_OK(cuda::silu_mul(dg.get<float>(), du.get<float>(), dy.get<float>(), n * k, nullptr));
    expect_within(dy.read<float>(gate.size()), want, tol, name());
  }
};

/// cuda::add over n × k elements.
struct add_op {
  int64_t n;
  int64_t k;
  static constexpr tolerance tol{};  // one rounding on both sides

  std::string name() const { return row_name("add", {{"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    const auto x = random_floats(rng, n * k);
    const auto y = random_floats(rng, n * k);
    std::vector<float> want(x.size());
    std::transform(x.begin(), x.end(), y.begin(), want.begin(), std::plus<float>());
    dev_buf dx(x), dy(y);
    CUDA_OK(cuda::add(dx.get<float>(), dy.get<float>(), n * k, nullptr));
    expect_within(dx.read<float>(x.size()), want, tol, name());
  }
};

/// cuda::softmax_rows of n peaked rows of k: exp underflows for most of a row.
struct softmax_op {
  int64_t n;  // rows
  int64_t k;  // row length
  static constexpr tolerance tol{1e-37, 1e-5};

  std::string name() const { return row_name("softmax", {{"n", n}, {"k", k}}); }
  void run(std::mt19937& rng) const {
    auto x = random_floats(rng, n * k);
    for (auto& v : x) {
      v *= 3.0f;
    }
    auto want = x;
    for (int64_t r = 0; r < n; ++r) {
      cpu::softmax(want.data() + r * k, k);
    }
    dev_buf dx(x);
    CUDA_OK(cuda::softmax_rows(dx.get<float>(), k, n, nullptr));
    expect_within(dx.read<float>(x.size()), want, tol, name());
  }
};

/// cuda::rope of n tokens' h heads of d, the first r of each rotated, in rows with
/// something else after the heads; Llama 3 style factors (pairs from the 32nd on
/// stretched ×8), token t at position 100·t + 3.
struct rope_op {
  int64_t n;  // tokens
  int64_t h;  // heads
  int64_t d;  // head_dim
  int64_t r;  // n_rot
  static constexpr tolerance tol{};  // the same four roundings

  std::string name() const { return row_name("rope", {{"n", n}, {"h", h}, {"d", d}, {"r", r}}); }
  void run(std::mt19937& rng) const {
    const int64_t stride = h * d + 64;
    const auto x = random_floats(rng, n * stride);
    std::vector<float> factors(static_cast<size_t>(r / 2), 1.0f);
    std::fill(factors.begin() + std::min<int64_t>(32, r / 2), factors.end(), 8.0f);
    std::vector<float> cs(static_cast<size_t>(n * r));
    for (int64_t t = 0; t < n; ++t) {
      cpu::rope_cache(static_cast<int32_t>(100 * t + 3), r, 500000.0f, factors.data(),
                      cs.data() + t * r);
    }
    auto want = x;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < h; ++i) {
        cpu::rope_apply(want.data() + t * stride + i * d, r, cs.data() + t * r);
      }
    }
    dev_buf dx(x), dcs(cs);
    CUDA_OK(cuda::rope(dx.get<float>(), n, h, d, stride, r, dcs.get<float>(), nullptr));
    expect_within(dx.read<float>(x.size()), want, tol, name());
  }
};

/// cuda::kv_store of one sequence's n positions into a paged cache of `type` with a
/// shuffled block table. Tolerance: none, the CPU's rounding to the cache type
/// (fill_cache checks it).
struct kv_store_op {
  ggml_type type;   // of the cache: f16 or f32
  int64_t d;        // head_dim
  int64_t hkv;      // KV heads
  int64_t n;        // positions

  std::string name() const {
    return row_name("kv_store", type, {{"d", d}, {"hkv", hkv}, {"n", n}});
  }
  void run(std::mt19937& rng) const {
    const attn_batch b = one_sequence(rng, d, hkv, hkv, n, 1);
    const device_kv cache(b, type);
    fill_cache(rng, b, cache.kv);
  }
};

/// cuda::attention of the last n positions of one sequence of kv positions, h query
/// heads over hkv KV heads of d, the cache of `type` filled by kv_store. Tolerance:
/// attention_tolerance.
struct attention_op {
  ggml_type type;  // of the cache: f16 or f32
  int64_t d;       // head_dim
  int64_t h;       // query heads
  int64_t hkv;     // KV heads
  int64_t kv;      // the sequence's positions
  int64_t n;       // tokens queried

  std::string name() const {
    return row_name("attention", type, {{"d", d}, {"h", h}, {"hkv", hkv}, {"kv", kv}, {"n", n}});
  }
  void run(std::mt19937& rng) const {
    const attn_batch b = one_sequence(rng, d, h, hkv, kv, n);
    const device_kv cache(b, type);
    const host_cache host = fill_cache(rng, b, cache.kv);
    const auto q = attention_queries(rng, b);
    const auto got = gpu_attention(b, cache.kv, q, all_tokens(b));
    expect_attention_matches_cpu(b, host, type, q, got, name());
  }
};

// -- the table ---------------------------------------------------------------------------

/// One row of the table, of any op: its name and how to run and check it.
struct op_case {
  template <class Op>
  op_case(Op op)  // NOLINT(google-explicit-constructor): a row is written as its op
      : name(op.name()), run([op](std::mt19937& rng) { op.run(rng); }) {}

  std::string name;
  std::function<void(std::mt19937&)> run;
};

/// GoogleTest prints a row by its name (in --gtest_list_tests and failures).
void PrintTo(const op_case& row, std::ostream* os) { *os << row.name; }

/// Inputs depend on the row's name only (FNV-1a), not on where it sits in the table.
uint32_t seed_of(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) {
    h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  }
  return h;
}

/// First each op at the shapes the hand-written tests had, for every type it takes;
/// then edges: n = 1 (a decode step, and matmul's one-token kernel), rows not a multiple
/// of the kernels' blocks, tiles or warps, and grids of more than one CTA. The kernels'
/// own sizes (kernels/cuda): element-wise and row kernels 256 threads a CTA; block_dot_ints
/// 128; matmul 4 weight rows (one a warp) × 8 tokens a CTA, rows streamed 32 blocks (or
/// elements) a chunk; attention 4 warps over positions, head_dim ≤ 256 split over 32 lanes.
std::vector<op_case> op_table() {
  using enum ggml_type;
  return {
      // dequantize: type, k
      dequantize_op{f32, 9472},
      dequantize_op{f16, 9472},
      dequantize_op{bf16, 9472},
      dequantize_op{q8_0, 9472},
      dequantize_op{q4_0, 9472},
      dequantize_op{q4_k, 9472},
      dequantize_op{q6_k, 9472},
      dequantize_op{q8_0, 32},     // one block, one thread
      dequantize_op{q4_k, 256},    // one block
      dequantize_op{q6_k, 65792},  // 257 blocks: a second CTA with one thread working

      // quantize_activations: type of the weights, n tokens, k
      quantize_activations_op{f32, 5, 768},
      quantize_activations_op{f16, 5, 768},
      quantize_activations_op{bf16, 5, 768},
      quantize_activations_op{q8_0, 5, 768},
      quantize_activations_op{q4_0, 5, 768},
      quantize_activations_op{q4_k, 5, 768},
      quantize_activations_op{q6_k, 5, 768},
      quantize_activations_op{f32, 1, 256},
      quantize_activations_op{f16, 1, 256},
      quantize_activations_op{bf16, 1, 256},
      quantize_activations_op{q8_0, 1, 256},
      quantize_activations_op{q4_0, 1, 256},
      quantize_activations_op{q4_k, 1, 256},
      quantize_activations_op{q6_k, 1, 256},
      quantize_activations_op{q8_0, 11, 1024},  // 352 q8_0 blocks: two CTAs
      quantize_activations_op{q4_k, 9, 8192},   // 288 q8_K blocks: two CTAs

      // block_dot_ints: type, k
      block_dot_ints_op{q8_0, 2048},
      block_dot_ints_op{q4_0, 2048},
      block_dot_ints_op{q4_k, 2048},
      block_dot_ints_op{q6_k, 2048},
      block_dot_ints_op{q8_0, 32},     // one block
      block_dot_ints_op{q4_k, 256},    // one block, its two integers
      block_dot_ints_op{q4_0, 4128},   // 129 blocks: two CTAs
      block_dot_ints_op{q6_k, 33024},  // 129 blocks: two CTAs

      // get_rows: type, m table rows, n ids, k
      get_rows_op{f32, 9, 6, 512},
      get_rows_op{f16, 9, 6, 512},
      get_rows_op{bf16, 9, 6, 512},
      get_rows_op{q8_0, 9, 6, 512},
      get_rows_op{q4_0, 9, 6, 512},
      get_rows_op{q4_k, 9, 6, 512},
      get_rows_op{q6_k, 9, 6, 512},
      get_rows_op{f16, 4, 1, 64},     // one id, fewer elements than a CTA's threads
      get_rows_op{q4_k, 9, 1, 256},   // one id, one block
      get_rows_op{q8_0, 9, 20, 512},  // 320 blocks: two CTAs

      // matmul: type of the weights, m = n_out, n tokens, k = n_in
      matmul_op{f32, 37, 11, 2304},  // 72 q8_0 blocks, 9 q4_K; 37 = 9 CTAs × 4 + 1; 2 tiles
      matmul_op{f16, 37, 11, 2304},
      matmul_op{bf16, 37, 11, 2304},
      matmul_op{q8_0, 37, 11, 2304},
      matmul_op{q4_0, 37, 11, 2304},
      matmul_op{q4_k, 37, 11, 2304},
      matmul_op{q6_k, 37, 11, 2304},
      matmul_op{f32, 37, 1, 2304},
      matmul_op{f16, 37, 1, 2304},
      matmul_op{bf16, 37, 1, 2304},
      matmul_op{q8_0, 37, 1, 2304},
      matmul_op{q4_0, 37, 1, 2304},
      matmul_op{q4_k, 37, 1, 2304},
      matmul_op{q6_k, 37, 1, 2304},
      matmul_op{q4_k, 5, 3, 8448},  // 33 blocks: a second chunk holding one
      matmul_op{q6_k, 5, 3, 8448},
      matmul_op{q4_k, 3, 64, 512},  // one CTA with a warp idle, eight token tiles
      matmul_op{bf16, 1, 9, 40},    // lanes with one element and with two

      // rms_norm, silu_mul, add, softmax: n rows, k
      rms_norm_op{3, 4103},
      rms_norm_op{1, 100},  // fewer elements than the CTA's threads
      rms_norm_op{2, 256},
      silu_mul_op{3, 4103},
      silu_mul_op{1, 100},
      add_op{3, 4103},
      add_op{1, 100},
      softmax_op{3, 4103},
      softmax_op{1, 100},
      softmax_op{4, 1},  // a row of one: exactly 1

      // rope: n tokens, h heads, d = head_dim, r = n_rot
      rope_op{5, 6, 128, 96},
      rope_op{1, 4, 64, 64},  // a decode token, whole heads rotated
      rope_op{3, 2, 80, 32},

      // kv_store: type of the cache, d = head_dim, hkv KV heads, n positions
      kv_store_op{f16, 128, 2, 45},
      kv_store_op{f32, 80, 2, 17},
      kv_store_op{f16, 256, 1, 1},

      // attention: type of the cache, d = head_dim, h query heads, hkv KV heads, kv
      // positions, n tokens queried (batches of several sequences: cuda_ops.attention_* below)
      attention_op{f16, 64, 4, 1, 17, 1},   // decode, one KV head for all; 17 = 4 warps × 4 + 1
      attention_op{f32, 32, 2, 2, 1, 1},    // the first position; a KV head each; a dim a lane
      attention_op{f16, 96, 4, 2, 40, 3},   // a prefill chunk over three cache blocks
      attention_op{f32, 256, 2, 1, 33, 2},  // the widest head
  };
}

class cuda_kernel : public ::testing::TestWithParam<op_case> {};

TEST_P(cuda_kernel, matches_cpu) {
  BATON_REQUIRE_GPU();
  std::mt19937 rng(seed_of(GetParam().name));
  GetParam().run(rng);
}

INSTANTIATE_TEST_SUITE_P(op, cuda_kernel, ::testing::ValuesIn(op_table()),
                         [](const ::testing::TestParamInfo<op_case>& row) {
                           return row.param.name;
                         });

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

// -- invariance: a token's outputs alone and in a batch ----------------------------------

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

/// Each token of the batch alone, and the prefill chunk (tokens 5, 3, 1) without the
/// decode tokens around it, give the bits `got` holds for them.
void expect_attention_batch_invariant(const attn_batch& b, const cuda::paged_kv& kv,
                                      const std::vector<float>& q, const std::vector<float>& got,
                                      const std::string& what) {
  const int64_t qrow = b.n_head * b.head_dim;
  for (int t = 0; t < static_cast<int>(b.tok_seq.size()); ++t) {
    const auto alone = gpu_attention(b, kv, q, {t});
    for (int64_t i = 0; i < qrow; ++i) {
      ASSERT_EQ(float_bits(alone[i]), float_bits(got[t * qrow + i]))
          << what << " token " << t << " alone, element " << i;
    }
  }
  const auto chunk = gpu_attention(b, kv, q, {5, 3, 1});
  for (int k = 0; k < 3; ++k) {
    const int t = 5 - 2 * k;
    for (int64_t i = 0; i < qrow; ++i) {
      ASSERT_EQ(float_bits(chunk[k * qrow + i]), float_bits(got[t * qrow + i]))
          << what << " token " << t << " in another batch, element " << i;
    }
  }
}

/// make_batch's three sequences (decode tokens and a prefill chunk in one launch) against
/// the CPU, then batch invariance.
void run_attention_case(ggml_type type, int64_t head_dim, uint32_t seed) {
  std::mt19937 rng(seed);
  const attn_batch b = make_batch(rng, head_dim);
  const device_kv cache(b, type);
  const host_cache host = fill_cache(rng, b, cache.kv);
  const auto q = attention_queries(rng, b);
  const auto got = gpu_attention(b, cache.kv, q, all_tokens(b));
  const std::string what = type_name(type) + " head_dim " + std::to_string(head_dim);
  ASSERT_NO_FATAL_FAILURE(expect_attention_matches_cpu(b, host, type, q, got, what));
  expect_attention_batch_invariant(b, cache.kv, q, got, what);
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
