// The scalar reference of matmul.hpp, and the dispatch to the SIMD twins. The scalar dot
// products follow ggml's generic C (ggml-cpu/quants.c, vec.cpp) operation by operation,
// float rounding order included, so the scalar variant computes what a build of
// llama.cpp without SIMD computes. Compiled without FP contraction. The per-block integer
// dots and the activation quantizers are kernels/blocks.hpp's, which the CUDA kernels
// run too.
#include "kernels/cpu/matmul.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu {

namespace {

template <class T>
T load(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // rows from a file need not be aligned
  return v;
}

// -- scalar dot products (ggml generic order) -------------------------------------

float vec_dot_scalar(ggml_type weight, const uint8_t* w, const uint8_t* x, int64_t n) {
  switch (weight) {
    case ggml_type::f32: {
      double sumf = 0.0;  // ggml_float
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(load<float>(w + 4 * i) * load<float>(x + 4 * i));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::f16: {
      double sumf = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(fp16_to_fp32(load<uint16_t>(w + 2 * i)) *
                                    fp16_to_fp32(load<uint16_t>(x + 2 * i)));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::bf16: {
      double sumf = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        sumf += static_cast<double>(bf16_to_fp32(load<uint16_t>(w + 2 * i)) *
                                    bf16_to_fp32(load<uint16_t>(x + 2 * i)));
      }
      return static_cast<float>(sumf);
    }
    case ggml_type::q4_0: {
      float sumf = 0.0f;
      for (int64_t ib = 0; ib < n / qk4_0; ++ib) {
        const auto xb = load<block_q4_0>(w + ib * sizeof(block_q4_0));
        const auto yb = load<block_q8_0>(x + ib * sizeof(block_q8_0));
        const int sumi = dot_q4_0(xb, yb);
        sumf += static_cast<float>(sumi) * fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d);
      }
      return sumf;
    }
    case ggml_type::q8_0: {
      float sumf = 0.0f;
      for (int64_t ib = 0; ib < n / qk8_0; ++ib) {
        const auto xb = load<block_q8_0>(w + ib * sizeof(block_q8_0));
        const auto yb = load<block_q8_0>(x + ib * sizeof(block_q8_0));
        const int sumi = dot_q8_0(xb, yb);
        sumf += static_cast<float>(sumi) * (fp16_to_fp32(xb.d) * fp16_to_fp32(yb.d));
      }
      return sumf;
    }
    case ggml_type::q4_k: {
      float sums[8] = {};
      float sumf = 0.0f;
      for (int64_t i = 0; i < n / qk_k; ++i) {
        const auto xb = load<block_q4_k>(w + i * sizeof(block_q4_k));
        const auto yb = load<block_q8_k>(x + i * sizeof(block_q8_k));
        int32_t aux32[8];
        const int32_t sumi = dot_q4_k(xb, yb, aux32);
        const float d = fp16_to_fp32(xb.d) * yb.d;
        for (int l = 0; l < 8; ++l) {
          sums[l] += d * static_cast<float>(aux32[l]);
        }
        const float dmin = fp16_to_fp32(xb.dmin) * yb.d;
        sumf -= dmin * static_cast<float>(sumi);
      }
      for (int l = 0; l < 8; ++l) {
        sumf += sums[l];
      }
      return sumf;
    }
    case ggml_type::q6_k: {
      float sums[8] = {};
      float sumf = 0.0f;
      for (int64_t i = 0; i < n / qk_k; ++i) {
        const auto xb = load<block_q6_k>(w + i * sizeof(block_q6_k));
        const auto yb = load<block_q8_k>(x + i * sizeof(block_q8_k));
        int32_t aux32[8];
        dot_q6_k(xb, yb, aux32);
        const float d = fp16_to_fp32(xb.d) * yb.d;
        for (int l = 0; l < 8; ++l) {
          sums[l] += d * static_cast<float>(aux32[l]);
        }
      }
      for (int l = 0; l < 8; ++l) {
        sumf += sums[l];
      }
      return sumf;
    }
    default:
      std::abort();  // callers check has_matmul first
  }
}

void block_dot_ints_scalar(ggml_type weight, const uint8_t* w, const uint8_t* x, int64_t n,
                           int32_t* out) {
  switch (weight) {
    case ggml_type::q4_0:
      for (int64_t ib = 0; ib < n / qk4_0; ++ib) {
        out[ib] = dot_q4_0(load<block_q4_0>(w + ib * sizeof(block_q4_0)),
                           load<block_q8_0>(x + ib * sizeof(block_q8_0)));
      }
      return;
    case ggml_type::q8_0:
      for (int64_t ib = 0; ib < n / qk8_0; ++ib) {
        out[ib] = dot_q8_0(load<block_q8_0>(w + ib * sizeof(block_q8_0)),
                           load<block_q8_0>(x + ib * sizeof(block_q8_0)));
      }
      return;
    case ggml_type::q4_k:
      for (int64_t i = 0; i < n / qk_k; ++i) {
        int32_t aux32[8];
        out[2 * i + 1] = dot_q4_k(load<block_q4_k>(w + i * sizeof(block_q4_k)),
                                  load<block_q8_k>(x + i * sizeof(block_q8_k)), aux32);
        out[2 * i] = 0;
        for (int l = 0; l < 8; ++l) {
          out[2 * i] += aux32[l];
        }
      }
      return;
    case ggml_type::q6_k:
      for (int64_t i = 0; i < n / qk_k; ++i) {
        int32_t aux32[8];
        dot_q6_k(load<block_q6_k>(w + i * sizeof(block_q6_k)),
                 load<block_q8_k>(x + i * sizeof(block_q8_k)), aux32);
        out[i] = 0;
        for (int l = 0; l < 8; ++l) {
          out[i] += aux32[l];
        }
      }
      return;
    default:
      std::abort();
  }
}

void matmul_scalar(ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
                   int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1) {
  const size_t w_stride = row_bytes(weight, static_cast<uint64_t>(n_in));
  const size_t x_stride = activation_row_bytes(weight, n_in);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xq);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      y[t * ldy + r] = vec_dot_scalar(weight, wb + r * w_stride, xb + t * x_stride, n_in);
    }
  }
}

}  // namespace

bool has_matmul(ggml_type weight) {
  switch (weight) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16:
    case ggml_type::q4_0:
    case ggml_type::q8_0:
    case ggml_type::q4_k:
    case ggml_type::q6_k:
      return true;
    default:
      return false;
  }
}

ggml_type activation_type(ggml_type weight) {
  switch (weight) {
    case ggml_type::q4_0:
    case ggml_type::q8_0:
      return ggml_type::q8_0;
    case ggml_type::q4_k:
    case ggml_type::q6_k:
      return ggml_type::q8_k;
    case ggml_type::f16:
      return ggml_type::f16;
    case ggml_type::bf16:
      return ggml_type::bf16;
    case ggml_type::f32:
      return ggml_type::f32;
    default:
      std::abort();  // callers check has_matmul first
  }
}

size_t activation_row_bytes(ggml_type weight, int64_t n_in) {
  return row_bytes(activation_type(weight), static_cast<uint64_t>(n_in));
}

void quantize_row_q8_k(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  for (int64_t i = 0; i < n / qk_k; ++i) {
    block_q8_k b;
    quantize_block_q8_k(x + i * qk_k, b);
    std::memcpy(out + i * sizeof b, &b, sizeof b);
  }
}

void quantize_activation_row(isa v, ggml_type weight, const float* x, void* xq, int64_t n_in) {
  if (v != isa::scalar) {
    // the AVX2 conversions are bit-identical to the scalar ones and not worth a third copy
    return detail::quantize_activation_row_avx2(weight, x, xq, n_in);
  }
  switch (activation_type(weight)) {
    case ggml_type::q8_0:
      return quantize_row_q8_0(x, xq, n_in);
    case ggml_type::q8_k:
      return quantize_row_q8_k(x, xq, n_in);
    case ggml_type::f16:
      return convert_row_f16(x, static_cast<uint16_t*>(xq), n_in);
    case ggml_type::bf16:
      return convert_row_bf16(x, static_cast<uint16_t*>(xq), n_in);
    default:
      std::memcpy(xq, x, static_cast<size_t>(n_in) * sizeof(float));
      return;
  }
}

float vec_dot(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in) {
  if (v == isa::scalar) {
    return vec_dot_scalar(weight, static_cast<const uint8_t*>(w_row),
                          static_cast<const uint8_t*>(x_row), n_in);
  }
  // the 1 × 1 tile of matmul: by construction what matmul gives this element
  float y = 0.0f;
  matmul(v, weight, w_row, x_row, &y, n_in, 1, 1, 0, 1);
  return y;
}

namespace {
std::atomic<avx512_tiles> forced_tiles{avx512_tiles::automatic};
std::atomic<int> forced_first_tokens{0};
}  // namespace

void force_avx512_tiles(avx512_tiles t) { forced_tiles.store(t, std::memory_order_relaxed); }

avx512_tiles detail::forced_avx512_tiles() { return forced_tiles.load(std::memory_order_relaxed); }

void force_first_tile_tokens(int tokens) {
  forced_first_tokens.store(std::max(tokens, 0), std::memory_order_relaxed);
}

int detail::forced_first_tile_tokens() { return forced_first_tokens.load(std::memory_order_relaxed); }

prefetch_plan automatic_prefetch_plan() {
  // Zen 5, bench_decode_read, two threads, decode over the read of the same milliseconds
  // (reads of 60-80 GB/s), 2048 x 8192: Q4_0 in blocks 0.45 with no prefetch, 0.87-0.90
  // 4.5-9 KiB into L1, 0.46-0.65 8 KiB into L2, 0.49-0.85 prefetchnta; Q4_K in blocks
  // 0.41 -> 0.85-0.87; Q6_K in blocks 0.62-0.70 -> 0.70-0.85; rows alone: Q6_K 8192 x 2048
  // 0.61 into L2, 0.70 none, 0.71 into L1; Q4_0 0.68 none, 0.76 into L1; Q8_0 as fast
  // either way (bench/RESULTS.md, twelfth session). Zen 4 ran blocks best with none and
  // rows alone into L2.
  // Tiles of several tokens on Zen 5 (bench/RESULTS.md, fifteenth session): a row block's
  // first token tile streamed Q4_0 from memory at 12-20 GB/s a thread 8 KiB ahead into
  // L2, against 30-40 for decode; 8-24 KiB into L1 ran one thread's 2-token tiles 1.5-1.6x
  // as fast and its 6-token tiles 1.1x. The later token tiles' prefetches only took load
  // slots from the tile (Q8_0's 2 x 6 tiles ask for 17 lines a group beside 64 loads):
  // one thread, 128 tokens, 2048 x 16384, without them Q8_0 +12 %, Q6_K +5 %, Q4_0 the
  // same, but Q4_K -3 % (its later tiles also read the rows made for them).
  // Float blocks in three streams on Zen 5 (eighteenth session): F16 2048 x 8192, two
  // threads, decode over read 0.63-0.76 -> 0.81-0.85 (BF16 0.56-0.59 -> 0.74-0.77); the
  // model's tg64 1.21x. Zen 4 read its one stream at 0.93-1.00 already.
  if (this_core() == core_kind::zen5) {
    return {{6144, true}, {6144, true}, {12288, true}, {0, false}, {8192, false}, 3};
  }
  // prefill tiles 8 KiB into L2: into L1 evicted the tokens' activations there (Zen 4)
  return {{8192, false}, {0, false}, {8192, false}, {8192, false}, {8192, false}};
}

namespace {

/// The plan in force, each field of its five prefetches and its block streams read on its
/// own once a matmul call (run_matmul puts them in tile_args::prefetch); forced between
/// matmuls only.
struct plan_in_force {
  static constexpr size_t n = 5;
  std::array<std::atomic<int64_t>, n> distance;
  std::array<std::atomic<bool>, n> into_l1;
  std::atomic<int> block_streams;

  explicit plan_in_force(const prefetch_plan& p) { store(p); }

  static std::array<weight_prefetch*, n> fields(prefetch_plan& p) {
    return {&p.rows, &p.blocks, &p.first_tile, &p.later_tiles, &p.later_made_tiles};
  }
  void store(prefetch_plan p) {
    const auto f = fields(p);
    for (size_t i = 0; i < n; ++i) {
      distance[i].store(f[i]->distance, std::memory_order_relaxed);
      into_l1[i].store(f[i]->into_l1, std::memory_order_relaxed);
    }
    block_streams.store(p.block_streams, std::memory_order_relaxed);
  }
  prefetch_plan load() const {
    prefetch_plan p;
    const auto f = fields(p);
    for (size_t i = 0; i < n; ++i) {
      *f[i] = {distance[i].load(std::memory_order_relaxed),
               into_l1[i].load(std::memory_order_relaxed)};
    }
    p.block_streams = block_streams.load(std::memory_order_relaxed);
    return p;
  }
};

plan_in_force& in_force() {
  static plan_in_force plan(automatic_prefetch_plan());
  return plan;
}

}  // namespace

void force_prefetch_plan(const prefetch_plan* plan) {
  in_force().store(plan != nullptr ? *plan : automatic_prefetch_plan());
}

prefetch_plan detail::prefetch_now() { return in_force().load(); }

size_t prepared_row_bytes(isa v, ggml_type weight, int64_t n_in, int64_t n_tokens) {
  if (!has_matmul(weight) || n_in <= 0 || n_in % traits(weight).block_size != 0) {
    std::abort();  // a caller's bug: shapes come from checked model files
  }
  switch (v) {
    case isa::scalar:
      return 0;
    case isa::avx2:
      return detail::prepared_row_bytes_avx2(weight, n_in, n_tokens);
    case isa::avx512:
      return detail::prepared_row_bytes_avx512(weight, n_in, n_tokens);
  }
  return 0;
}

void prepare_row(isa v, ggml_type weight, const void* xq, void* out, int64_t n_in,
                 int64_t n_tokens) {
  if (prepared_row_bytes(v, weight, n_in, n_tokens) == 0) {
    return;
  }
  if (reinterpret_cast<uintptr_t>(out) % 64 != 0) {
    std::abort();  // a caller's bug: the kernels load prepared rows aligned
  }
  switch (v) {
    case isa::scalar:
      return;
    case isa::avx2:
      return detail::prepare_row_avx2(weight, xq, out, n_in);
    case isa::avx512:
      return detail::prepare_row_avx512(weight, xq, out, n_in);
  }
}

void matmul(isa v, ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
            int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1, weight_layout layout,
            int64_t n_rows, const void* prepared) {
  const bool packed = layout == weight_layout::packed;
  const bool blocks = layout == weight_layout::packed_blocks;
  if (!has_matmul(weight) || n_in <= 0 || n_in % traits(weight).block_size != 0 || r0 > r1 ||
      n_tokens < 0 || (packed && !has_packed_layout(v, weight)) ||
      (blocks && (!has_block_layout(v, weight) || n_rows < r1))) {
    std::abort();  // a caller's bug: shapes come from checked model files
  }
  if (r0 == r1 || n_tokens == 0) {
    return;
  }
  switch (v) {
    case isa::scalar:
      return matmul_scalar(weight, w, xq, y, n_in, n_tokens, ldy, r0, r1);
    case isa::avx2:
      return detail::matmul_avx2(weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1);
    case isa::avx512:
      return detail::matmul_avx512(weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1,
                                   layout != weight_layout::ggml,
                                   blocks ? n_rows / packed_block * packed_block : 0);
  }
}

int block_dot_ints_per_block(ggml_type weight) { return weight == ggml_type::q4_k ? 2 : 1; }

void block_dot_ints(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                    int32_t* out) {
  switch (v) {
    case isa::scalar:
      return block_dot_ints_scalar(weight, static_cast<const uint8_t*>(w_row),
                                   static_cast<const uint8_t*>(x_row), n_in, out);
    case isa::avx2:
      return detail::block_dot_ints_avx2(weight, w_row, x_row, n_in, out);
    case isa::avx512:
      return detail::block_dot_ints_avx512(weight, w_row, x_row, n_in, out);
  }
}

}  // namespace baton::cpu
