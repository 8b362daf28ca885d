// Matrix multiply of quantized weights by activations, as llama.cpp computes it:
// activations are first converted to the weight type's partner format (Q8_0 blocks for
// Q4_0/Q8_0 weights, Q8_K for Q4_K/Q6_K, f16 for F16, bf16 for BF16, f32 for F32) and
// every output element is one dot product of a weight row with an activation row.
//
// Invariance: an element's value depends only on (isa, weight type, n_in, the two
// rows) — never on n_tokens, on the row range a thread computes, or on other rows —
// so batch composition and thread count cannot change a sequence's logits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa.hpp"
#include "kernels/ggml_type.hpp"

namespace baton::cpu {

/// Whether matmul handles weights of `weight` type: f32, f16, bf16, q4_0, q8_0, q4_K, q6_K.
bool has_matmul(ggml_type weight);

/// The activation format that weights of `weight` type are dotted with.
ggml_type activation_type(ggml_type weight);

/// Bytes of one activation row of n_in elements in activation_type(weight).
size_t activation_row_bytes(ggml_type weight, int64_t n_in);

/// xq = x[n_in] converted for weights of type `weight`; bit-identical for every isa.
void quantize_activation_row(isa v, ggml_type weight, const float* x, void* xq, int64_t n_in);

/// y = Q8_K blocks of x[n] (ggml's quantize_row_q8_K_ref: d = max/−127 of the value
/// largest in magnitude, q = min(127, round-half-even(x/d)), bsums of 16). A block of
/// zeros gets d = 0 and zero sums.
void quantize_row_q8_k(const float* x, void* y, int64_t n);

/// One output element: dot(weight row, activation row) of n_in elements.
float vec_dot(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in);

/// How weight rows lie in memory: as in the GGUF file (ggml's blocks), or repacked once at
/// load into the layout an isa's kernels read without shuffling (pack_rows). A packed row
/// has the size of its ggml row and the same quants and scales, rearranged (Q4_K's scales
/// and mins re-encoded), and matmul computes every element with the same operations from
/// either: the same bits.
/// packed_blocks: packed, and the rows then laid out in blocks of packed_block rows
/// (pack_rows), where has_block_layout says the isa reads them so.
enum class weight_layout { ggml, packed, packed_blocks };

/// Whether isa v has a packed layout for `weight` (AVX-512: Q4_0, Q8_0, Q4_K, Q6_K).
bool has_packed_layout(isa v, ggml_type weight);

/// Whether isa v has weight_layout::packed_blocks for `weight` (AVX-512: Q4_0, Q8_0, Q4_K,
/// Q6_K, F16, BF16, F32).
bool has_block_layout(isa v, ggml_type weight);

/// The layout a CPU stage keeps `weight` in on this core (`head`: the output head):
/// packed_blocks where has_block_layout (but other than on Zen 5, AMD family 1Ah, Q6_K
/// for the head alone and Q8_0 not at all); else packed where has_packed_layout; else
/// ggml's (the measurements: pack_rows.cpp).
weight_layout preferred_layout(isa v, ggml_type weight, bool head);

/// dst = n_rows rows of w (ggml layout) in isa v's packed layout, in the bytes w takes.
/// Each row, alone: per whole group of 16 blocks (nb = n_in / 32 blocks, G = nb / 16
/// groups), in the group's own bytes (288 for Q4_0, 544 for Q8_0), the qs dword k of block
/// l at 64k + 4l (k < 4 for Q4_0, 8 for Q8_0), then the 16 scales (halves) at 256 + 2l or
/// 512 + 2l; then the last nb − 16G blocks as they were (the row's tail). Q4_K: per whole
/// group of two super-blocks (288 bytes), one sub-block of 32 per lane, the layout that
/// avx512/q4_k_groups.hpp's q4_k_group states; a last odd block as its tail. Q6_K: each
/// block in its own 210 bytes, the lane order of avx512/k_quants.hpp.
/// In `layout` packed_blocks (has_block_layout: Q4_0, Q8_0, Q4_K, Q6_K, and F16, BF16, F32 rows
/// as they are, in 64-byte groups) the rows are then laid out in blocks of packed_block
/// rows: rows 8i .. 8i + 7 fill their 8 rows' bytes with group g (Q6_K: its super-block g)
/// of row 8i + j at 8g + j groups from the block's start, then the 8 tails one after
/// another; the last n_rows % 8 rows stay alone. A decode tile of a block reads one
/// sequential stream and loads each group of activations once for its 8 rows (with the
/// loads of a row's own, L1 hits beside the weights' stream, it needed a software prefetch
/// that cost 5-30 % of the read on Zen 4). A matrix may be packed in parts that start on
/// multiples of 8 rows: the same bytes. `layout`: packed (where has_packed_layout) or
/// packed_blocks.
void pack_rows(isa v, ggml_type weight, const void* w, void* dst, int64_t n_in, int64_t n_rows,
               weight_layout layout);

/// Rows a block of the packed layout holds.
constexpr int64_t packed_block = 8;


/// The AVX-512 Q4_0/Q8_0/Q4_K prefill tile shapes: this core's (automatic: 2 rows × 6 tokens
/// on AMD families 19h (Zen 4) and 1Ah (Zen 5); 1 × 16 elsewhere), or
/// one forced for the whole process. A tile's shape changes no bit, and tests force both
/// to prove it on whichever machine runs them.
enum class avx512_tiles { automatic, wide, split };
void force_avx512_tiles(avx512_tiles t);

/// The tokens of a row block's first token tile in those AVX-512 prefill tiles: the tile
/// that brings the block's weights from memory (the others find them in L2 and are as wide
/// as the shape allows). Automatic: 4 for Q4_0's and Q4_K's 2 × 6 tiles on Zen 5, whose
/// 6-token first tiles streamed the weights slower; the shape's width elsewhere. Forcing a
/// width for the whole process (clamped to 2 .. the shape's width; 0: automatic again)
/// changes no bit.
void force_first_tile_tokens(int tokens);

/// How the AVX-512 tiles prefetch weights in software, a distance ahead of the bytes they
/// read: into L1 (prefetcht0) or L2 (prefetcht1), or not at all (distance 0). `rows`: decode
/// tiles of rows alone; `blocks`: decode tiles of a block of packed_block quantized rows
/// (float blocks prefetch nothing); `first_tile`: tiles of several tokens that are their
/// row block's first token tile, which brings the block's weights from memory;
/// `later_tiles`: its other token tiles, which find them in L2, and `later_made_tiles`
/// those of a kernel that makes rows for them (Q4_K's scales: run_matmul's made_row_bytes).
/// Automatic (this core's, by cpuid family): AMD family 1Ah (Zen 5) rows, blocks and first
/// tiles 6, 6 and 12 KiB into L1, later tiles none and later made tiles 8 KiB into L2 —
/// without it a Q4_0 or Q4_K decode thread there read half the bandwidth, a 2-token tile
/// 0.6 of it — elsewhere (Zen 4, the kind measured most) rows 8 KiB into L2, blocks none,
/// and every tile of several tokens 8 KiB into L2. `block_streams`: how many whole blocks
/// of float rows (F16, BF16, F32; no software prefetch) a decode call reads in lockstep, one
/// from each of as many equal parts of its blocks — streams of weights for the hardware
/// prefetcher: 3 on Zen 5 (one thread reads more from several streams there), 1 elsewhere.
/// Forcing a plan for the whole process changes no bit (benchmarks compare plans with it);
/// nullptr: automatic again.
struct weight_prefetch {
  int64_t distance = 0;  // bytes; 0: none
  bool into_l1 = false;
};
struct prefetch_plan {
  weight_prefetch rows;
  weight_prefetch blocks;
  weight_prefetch first_tile;
  weight_prefetch later_tiles;
  weight_prefetch later_made_tiles;
  int block_streams = 1;
};
prefetch_plan automatic_prefetch_plan();
void force_prefetch_plan(const prefetch_plan* plan);

/// y[t * ldy + r] = vec_dot(W row r, xq row t) for r in [r0, r1), t in [0, n_tokens).
/// W: n_rows rows of n_in elements, row_bytes(weight, n_in) apart (ggml's [n_in, n_rows]),
/// in `layout` (packed, packed_blocks: made by pack_rows for this v from all n_rows rows;
/// n_rows ≥ r1, which packed_blocks needs to tell its blocks of rows from the last rows).
/// xq: n_tokens rows, activation_row_bytes(weight, n_in) apart.
/// prepared: the n_tokens rows of xq as prepare_row made them for this v,
/// prepared_row_bytes(v, weight, n_in, n_tokens) apart — threads that share a matmul
/// prepare its rows once — or nullptr: each call prepares them itself (when that size is
/// not 0). Either way the same bits.
void matmul(isa v, ggml_type weight, const void* w, const void* xq, float* y, int64_t n_in,
            int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1,
            weight_layout layout = weight_layout::ggml, int64_t n_rows = 0,
            const void* prepared = nullptr);

/// Bytes of one activation row (of a matmul of n_tokens rows) as isa v's tile kernels
/// read it, prepared from its xq row by prepare_row: a multiple of 64; 0 where they read
/// the xq rows as they are (scalar, F32, a lone F16/BF16 row on AVX-512).
size_t prepared_row_bytes(isa v, ggml_type weight, int64_t n_in, int64_t n_tokens);

/// out (64-byte aligned) = one xq row prepared for isa v's kernels in a matmul of
/// n_tokens rows: prepared_row_bytes(v, weight, n_in, n_tokens) bytes, nothing where that
/// is 0.
void prepare_row(isa v, ggml_type weight, const void* xq, void* out, int64_t n_in,
                 int64_t n_tokens);

/// Integers per block that block_dot_ints writes: 2 for q4_K (scaled sum, min sum), else 1.
int block_dot_ints_per_block(ggml_type weight);

/// The exact integer part of each block's dot product, as isa `v` computes it:
/// q4_0, q8_0: Σ q·y per 32; q6_K: Σ scale·Σ q·y per 256; q4_K: per 256 the pair
/// (Σ scale·Σ q·y, Σ min·bsum). Identical for every isa; this is what tests compare.
/// out[n_in / block size × block_dot_ints_per_block]. Aborts for float weight types.
void block_dot_ints(isa v, ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                    int32_t* out);

}  // namespace baton::cpu
