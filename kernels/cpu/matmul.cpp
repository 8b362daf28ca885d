// The scalar reference of matmul.hpp, and the dispatch to the SIMD twins. The scalar dot
// products follow ggml's generic C (ggml-cpu/quants.c, vec.cpp) operation by operation,
// float rounding order included, so the scalar variant computes what a build of
// llama.cpp without SIMD computes. Compiled without FP contraction. The per-block integer
// dots and the activation quantizers are kernels/blocks.hpp's, which the CUDA kernels
// run too.
#include "kernels/cpu/matmul.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

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
}  // namespace

void force_avx512_tiles(avx512_tiles t) { forced_tiles.store(t, std::memory_order_relaxed); }

avx512_tiles detail::forced_avx512_tiles() { return forced_tiles.load(std::memory_order_relaxed); }

bool has_packed_layout(isa v, ggml_type weight) {
  return v == isa::avx512 &&
         (weight == ggml_type::q4_0 || weight == ggml_type::q8_0 || weight == ggml_type::q4_k ||
          weight == ggml_type::q6_k);
}

namespace {

/// pack_rows of one row of Q4_0 or Q8_0 blocks (matmul.hpp): per whole group of 16
/// blocks, qs dword k of block l at 64k + 4l, then the 16 scales; the rest as it was.
template <class Block>
void pack_row_lanes(const uint8_t* src, uint8_t* out, int64_t nb) {
  constexpr int64_t dwords = sizeof(Block::qs) / 4;  // 4 (Q4_0) or 8 (Q8_0)
  constexpr int64_t group = 16 * sizeof(Block);
  const int64_t groups = nb / 16;
  for (int64_t g = 0; g < groups; ++g) {
    uint8_t* o = out + group * g;
    for (int64_t l = 0; l < 16; ++l) {
      const uint8_t* b = src + (16 * g + l) * sizeof(Block);
      for (int64_t k = 0; k < dwords; ++k) {
        std::memcpy(o + 64 * k + 4 * l, b + offsetof(Block, qs) + 4 * k, 4);
      }
      std::memcpy(o + 64 * dwords + 2 * l, b + offsetof(Block, d), 2);
    }
  }
  std::memcpy(out + group * groups, src + group * groups,
              static_cast<size_t>(nb - 16 * groups) * sizeof(Block));
}

/// pack_rows of one row of nsb Q4_K blocks (matmul.hpp): per whole group of two blocks,
/// one sub-block of 32 per lane l (block l / 8, sub-block l % 8): its quants' dword k at
/// 64k + 4l, byte i holding its elements i and 16 + i; then 16 bytes scale | (min >> 4) << 6,
/// 8 bytes of the mins' low nibbles (lane l at byte l % 8, nibble l / 8), the halves d and
/// dmin of each block; the last odd block as it was.
void pack_row_q4_k(const uint8_t* src, uint8_t* out, int64_t nsb) {
  const int64_t groups = nsb / 2;
  for (int64_t g = 0; g < groups; ++g) {
    uint8_t* o = out + 2 * sizeof(block_q4_k) * g;
    std::memset(o + 256 + 16, 0, 8);
    for (int l = 0; l < 16; ++l) {
      block_q4_k b;
      std::memcpy(&b, src + (2 * g + l / 8) * sizeof b, sizeof b);
      const int j = l % 8;
      // sub-block j: bytes 32 (j / 2) .. of qs, low nibbles for even j, high for odd
      const auto quant = [&b, j](int e) { return (b.qs[32 * (j / 2) + e] >> (4 * (j % 2))) & 15; };
      for (int i = 0; i < 16; ++i) {
        o[64 * (i / 4) + 4 * l + i % 4] = static_cast<uint8_t>(quant(i) | quant(16 + i) << 4);
      }
      uint8_t sc, m;
      q4_k_scale_min(j, b.scales, &sc, &m);
      o[256 + l] = static_cast<uint8_t>(sc | (m >> 4) << 6);
      o[256 + 16 + j] |= static_cast<uint8_t>((m & 15) << (4 * (l / 8)));
      if (j == 0) {
        std::memcpy(o + 256 + 24 + 4 * (l / 8), &b, 4);  // d, dmin
      }
    }
  }
  std::memcpy(out + 2 * sizeof(block_q4_k) * groups, src + 2 * sizeof(block_q4_k) * groups,
              static_cast<size_t>(nsb - 2 * groups) * sizeof(block_q4_k));
}

/// pack_rows of one row of nsb Q6_K blocks (matmul.hpp): each block in its own 210 bytes,
/// one 16-element piece per lane λ in the lane order of the AVX-512 kernel (piece
/// 4 (λ % 4) + λ / 4): its low 4 bits in dwords 64j + 4λ (j = 0, 1; byte i: elements
/// 4j + i, low nibble, and 8 + 4j + i), its top 2 bits in the dword at 128 + 4λ (byte i,
/// bits 2k: element 4k + i), its scale at 192 + λ, then d.
void pack_row_q6_k(const uint8_t* src, uint8_t* out, int64_t nsb) {
  for (int64_t i = 0; i < nsb; ++i) {
    block_q6_k b;
    std::memcpy(&b, src + i * sizeof b, sizeof b);
    uint8_t* o = out + i * sizeof b;
    std::memset(o + 128, 0, 64);
    for (int lane = 0; lane < 16; ++lane) {
      const int piece = 4 * (lane % 4) + lane / 4;
      const auto q = [&b, piece](int e) { return q6_k_quant(b, 16 * piece + e) + 32; };
      for (int j = 0; j < 2; ++j) {
        for (int k = 0; k < 4; ++k) {
          o[64 * j + 4 * lane + k] =
              static_cast<uint8_t>((q(4 * j + k) & 15) | (q(8 + 4 * j + k) & 15) << 4);
        }
      }
      for (int k = 0; k < 4; ++k) {
        for (int e = 0; e < 4; ++e) {
          o[128 + 4 * lane + e] |= static_cast<uint8_t>((q(4 * k + e) >> 4) << (2 * k));
        }
      }
      o[192 + lane] = static_cast<uint8_t>(b.scales[piece]);
    }
    std::memcpy(o + 208, &b.d, 2);
  }
}

}  // namespace

namespace {

/// Bytes of one whole group of a packed Q4_0, Q4_K or Q6_K row (16 blocks, two super-blocks,
/// one super-block), or of a float row's piece in blocks (64 bytes).
size_t packed_group_bytes(ggml_type weight) {
  switch (weight) {
    case ggml_type::q4_k:
      return 2 * sizeof(block_q4_k);
    case ggml_type::q6_k:
      return sizeof(block_q6_k);
    case ggml_type::q4_0:
      return 16 * sizeof(block_q4_0);
    default:
      return 64;
  }
}

/// Lays packed_block packed rows out as one block (matmul.hpp): `rows` holds them one after
/// another, `out` gets group g of row j at group packed_block · g + j, then the rows' tails.
void lay_out_block(const uint8_t* rows, uint8_t* out, size_t row, size_t group) {
  constexpr size_t n = packed_block;
  const size_t groups = row / group;
  const size_t tail = row - groups * group;
  for (size_t g = 0; g < groups; ++g) {
    for (size_t j = 0; j < n; ++j) {
      std::memcpy(out + (n * g + j) * group, rows + j * row + g * group, group);
    }
  }
  for (size_t j = 0; j < n; ++j) {
    std::memcpy(out + n * groups * group + j * tail, rows + j * row + groups * group, tail);
  }
}

}  // namespace

bool has_block_layout(isa v, ggml_type weight) {
  // as the AVX-512 kernels' block_tiles state (the groups' in_blocks, avx512/q8_0_groups.hpp
  // and q4_k_groups.hpp; avx512/k_quants.hpp for Q6_K; avx512/floats.hpp)
  return v == isa::avx512 && (weight == ggml_type::q4_0 || weight == ggml_type::q4_k ||
                              weight == ggml_type::q6_k || weight == ggml_type::f16 ||
                              weight == ggml_type::bf16 || weight == ggml_type::f32);
}

void pack_rows(isa v, ggml_type weight, const void* w, void* dst, int64_t n_in, int64_t n_rows,
               weight_layout layout) {
  const bool blocks = layout == weight_layout::packed_blocks;
  if (n_in <= 0 || n_in % traits(weight).block_size != 0 ||
      (layout == weight_layout::packed && !has_packed_layout(v, weight)) ||
      (blocks && !has_block_layout(v, weight)) || layout == weight_layout::ggml) {
    std::abort();  // a caller's bug: callers ask has_packed_layout first
  }
  const int64_t nb = n_in / 32;
  const size_t row = row_bytes(weight, static_cast<uint64_t>(n_in));
  const auto pack_row = [&](const uint8_t* src, uint8_t* out) {
    if (!has_packed_layout(v, weight)) {
      std::memcpy(out, src, row);  // a float row: its blocks alone rearrange it
    } else if (weight == ggml_type::q4_0) {
      pack_row_lanes<block_q4_0>(src, out, nb);
    } else if (weight == ggml_type::q4_k) {
      pack_row_q4_k(src, out, n_in / qk_k);
    } else if (weight == ggml_type::q6_k) {
      pack_row_q6_k(src, out, n_in / qk_k);
    } else {
      pack_row_lanes<block_q8_0>(src, out, nb);
    }
  };
  const int64_t block_rows = blocks ? n_rows / packed_block * packed_block : 0;
  std::vector<uint8_t> block(block_rows > 0 ? packed_block * row : 0);
  for (int64_t r = 0; r < n_rows;) {
    const auto* src = static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row;
    auto* out = static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * row;
    if (r < block_rows) {
      for (int64_t j = 0; j < packed_block; ++j) {
        pack_row(src + j * row, block.data() + j * row);
      }
      lay_out_block(block.data(), out, row, packed_group_bytes(weight));
      r += packed_block;
    } else {
      pack_row(src, out);
      r += 1;
    }
  }
}

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
