// pack_rows (matmul.hpp): weight rows rearranged once at load into the layouts the
// AVX-512 kernels read without shuffles — packed (Q4_0, Q8_0, Q4_K, Q6_K) and in blocks of
// packed_block rows (Q4_0, Q4_K, Q6_K, F16, BF16, F32) — with the same quants and scales.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/matmul.hpp"

namespace baton::cpu {

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

/// Bytes of one whole group of a packed Q4_0, Q8_0, Q4_K or Q6_K row (16 blocks, two
/// super-blocks, one super-block), or of a float row's piece in blocks (64 bytes).
size_t packed_group_bytes(ggml_type weight) {
  switch (weight) {
    case ggml_type::q4_k:
      return 2 * sizeof(block_q4_k);
    case ggml_type::q6_k:
      return sizeof(block_q6_k);
    case ggml_type::q4_0:
      return 16 * sizeof(block_q4_0);
    case ggml_type::q8_0:
      return 16 * sizeof(block_q8_0);
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
  return v == isa::avx512 &&
         (weight == ggml_type::q4_0 || weight == ggml_type::q8_0 || weight == ggml_type::q4_k ||
          weight == ggml_type::q6_k || weight == ggml_type::f16 || weight == ggml_type::bf16 ||
          weight == ggml_type::f32);
}

// Rows in blocks (has_block_layout) let a decode tile hold its activations in registers for
// 8 rows and read one stream (Zen 4: without a software prefetch): Zen 4, bench_decode_read,
// decode over read in 30-42 GB/s stretches, Q4_0 0.92-0.95 -> 0.99-1.00, Q4_K 0.91-0.93 ->
// 0.97-0.99, Q6_K 0.92 -> 0.99-1.00 (0.85 -> 1.03 in 54-70 GB/s ones), F16 0.80-0.88 ->
// 0.92-0.98 in 60-70 GB/s ones. A prefill tile's rows are then strided across the blocks:
// Q4_0 and Q4_K prefill as fast, F16 1 % slower (taken: its decode is what misses the
// goal), Q6_K's 2 × 8 tiles 1.4-2.4 % slower (Q4_K_M pp128, whose FFN down is half Q6_K).
// So Q6_K is in blocks for the head alone, which a prefill runs for one row per sequence,
// and Q8_0 (no decode gain, prefill 2-6 % slower) not on Zen 4 (bench/RESULTS.md, eleventh
// session). On Zen 5 (AMD family 1Ah), whose decode tiles prefetch into L1
// (automatic_prefetch_plan), Q8_0 in blocks decodes at 0.90 of the read against 0.66
// alone (tg64 39 -> 50 t/s) for 1-2 % of pp128: in blocks there, and so is every Q6_K
// tensor (Q4_K_M tg64 69.9-72.3 -> 73.3-75.5 t/s, pp128 347.0 -> 343.4, medians of four;
// twelfth session).
weight_layout preferred_layout(isa v, ggml_type weight, bool head) {
  const bool zen5 = this_core() == core_kind::zen5;
  if (has_block_layout(v, weight) && (weight != ggml_type::q6_k || head || zen5) &&
      (weight != ggml_type::q8_0 || zen5)) {
    return weight_layout::packed_blocks;
  }
  return has_packed_layout(v, weight) ? weight_layout::packed : weight_layout::ggml;
}

void pack_rows(isa v, ggml_type weight, const void* w, void* dst, int64_t n_in, int64_t n_rows,
               weight_layout layout) {
  const bool blocks = layout == weight_layout::packed_blocks;
  if (n_in <= 0 || n_in % traits(weight).block_size != 0 ||
      (layout == weight_layout::packed && !has_packed_layout(v, weight)) ||
      (blocks && !has_block_layout(v, weight)) || layout == weight_layout::ggml) {
    std::abort();  // a caller's bug: callers ask has_packed_layout / has_block_layout first
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

}  // namespace baton::cpu
