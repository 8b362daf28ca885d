// Internal to kernels/cpu: what the SIMD twins (matmul_avx2.cpp, matmul_avx512.cpp)
// export to the dispatcher in matmul.cpp, and the tiling driver they share. A kernel
// computes an NR rows × NT tokens tile of outputs over the whole of n_in; every element
// of a tile runs the very instruction sequence the 1 × 1 tile runs for it, so tiling
// (and so n_tokens and the row range) cannot change a bit of any element.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>

#include "kernels/cpu/matmul.hpp"
#include "kernels/ggml_type.hpp"

namespace baton::cpu::detail {

// -- per-isa entry points (each defined in its twin's file) -----------------------

void quantize_activation_row_avx2(ggml_type weight, const float* x, void* xq, int64_t n_in);
void matmul_avx2(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                 int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1);
size_t prepared_row_bytes_avx2(ggml_type weight, int64_t n_in, int64_t n_tokens);
void prepare_row_avx2(ggml_type weight, const void* xq, void* out, int64_t n_in);
void block_dot_ints_avx2(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                         int32_t* out);

/// What force_avx512_tiles last set (matmul.hpp).
avx512_tiles forced_avx512_tiles();
/// What force_first_tile_tokens last set (matmul.hpp): 0 automatic.
int forced_first_tile_tokens();
/// The prefetch plan in force (matmul.hpp: force_prefetch_plan, else automatic).
prefetch_plan prefetch_now();

/// packed: w in pack_rows' layout for isa::avx512, its first block_rows rows in blocks
/// (weight_layout::packed_blocks).
void matmul_avx512(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                   int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1,
                   bool packed, int64_t block_rows);
size_t prepared_row_bytes_avx512(ggml_type weight, int64_t n_in, int64_t n_tokens);
void prepare_row_avx512(ggml_type weight, const void* xq, void* out, int64_t n_in);
void block_dot_ints_avx512(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                           int32_t* out);

// -- scratch --------------------------------------------------------------------

/// A 64-byte-aligned per-thread buffer of at least `bytes`; grows, never shrinks, and is
/// only valid until the next call on the same thread.
inline uint8_t* scratch(size_t bytes) {
  struct aligned_free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<uint8_t, aligned_free> buf;
  thread_local size_t cap = 0;
  if (bytes > cap) {
    cap = (std::max(bytes, cap * 2) + 63) / 64 * 64;
    buf.reset(static_cast<uint8_t*>(std::aligned_alloc(64, cap)));
    if (!buf) {
      std::abort();
    }
  }
  return buf.get();
}

// -- the tiling driver ------------------------------------------------------------

/// Where a tile reads and writes: weight rows `w_stride` bytes apart, prepared token rows
/// `x_stride` bytes apart, y[t * ldy + r] relative to the tile's first row and token.
/// The matrix's rows below block_rows lie in blocks (pack_rows): a kernel that reads that
/// layout finds the tile's row r, the matrix's row0 + r, from the matrix at w − row0 ·
/// w_stride.
/// A kernel with k_pass may be run over [k0, k1) of n_in at a time: it starts from the
/// partial sums in `part` unless k0 = 0 and leaves them there unless k1 = n_in (element
/// (r, t) at part + (r · part_ld + t) · part_floats), so an element's operations and
/// their order are those of one pass.
struct tile_args {
  const uint8_t* w;
  size_t w_stride;
  const uint8_t* x;
  size_t x_stride;
  float* y;
  int64_t ldy;
  int64_t n_in;
  int64_t k0 = 0;
  int64_t k1 = n_in;
  float* part = nullptr;
  int64_t part_ld = 0;
  uint8_t* rows_made = nullptr;  // made_row_bytes per row for the tile's first row, or
  size_t rows_made_stride = 0;   // nullptr where the driver keeps none
  bool first_token_tile = false; // the row block's first token tile: it brings the
                                 // weights from memory and writes rows made; the others
                                 // read them
  int64_t row0 = 0;              // the tile's first row in the matrix
  int64_t block_rows = 0;        // the matrix's rows in blocks of packed_block
  prefetch_plan prefetch{};      // prefetch_now() as the call began (read once a call)
  weight_prefetch tokens_prefetch{};  // a tile of several tokens': the plan's first_tile
                                      // or a later one's (chosen in the tile instead, Q4_0's
                                      // 2 x 6 tiles ran 10 % slower: GCC's code for it)
  int repeat = 1;                // tiles of this shape from row0 on, rows one after another
};

/// Whether kernel K reads a lone token's row as the caller gave it (decode_unprepared).
template <class K>
constexpr bool reads_decode_row_unprepared = requires(const K& k, const tile_args& a) {
  k.decode_unprepared(a, 1);
};

/// Bytes of one token's row prepared for K in a matmul of n_tokens rows (a multiple of 64,
/// so that every row starts on a cache line); 0 where K reads the caller's rows.
template <class K>
size_t prepared_row_bytes(const K& k, int64_t n_in, int64_t n_tokens) {
  if (reads_decode_row_unprepared<K> && n_tokens == 1) {
    return 0;
  }
  return (k.prep_bytes(n_in) + 63) / 64 * 64;
}

/// Runs kernel K over rows [r0, r1) × tokens [0, n_tokens). K provides:
///   static constexpr int max_rows_1, max_rows, max_tokens;  // tile shape limits
///   size_t prep_bytes(int64_t n_in) const;                 // 0: xq used as it is
///   void prep(const uint8_t* xq_row, uint8_t* out, int64_t n_in) const;
///   template <int NR, int NT> void tile(const tile_args&) const;
///   void decode_unprepared(const tile_args&, int nr) const;  // optional: an nr × 1 tile
///       (nr ≤ max_rows_1) of one token's unprepared row, the same operations as
///       tile<nr, 1> on the prepared one
///   static constexpr bool block_tiles;  // optional: it reads rows in blocks of
///       // packed_block (pack_rows): no tile crosses a block's end, and a one-token tile
///       // is a whole block (max_rows_1 rows) from its first row, or one row
/// and optionally, for prefill tiles run over n_in in several passes
///   int64_t k_pass(int64_t n_in) const;  // n_in per pass (a multiple of its blocks)
///   static constexpr int part_floats;    // partial-sum floats per element
/// and optionally, for the row block's first token tile, which brings its weights from memory
///   int first_tokens;  // its tokens (2 .. max_tokens; the others max_tokens, the last
///       // what remains)
/// and optionally, for work on a weight row that every token tile would repeat
///   size_t made_row_bytes(int64_t n_in) const;  // per row (a multiple of 64), made by
///       // the row block's first token tile (tile_args::first_token_tile) and read by the others
///       // whose tiles have its shape: every token tile but a last lone token's
/// Rows are visited in blocks that stay in L2 while every token tile passes over them; with
/// k_pass, each token tile's prepared activations pass by in slices that stay in L1
/// while all the block's rows use them. `prepared`: the n_tokens rows already prepared,
/// prepared_row_bytes(k, n_in, n_tokens) apart (threads sharing one matmul prepare them
/// once), or nullptr: prepared here into this thread's scratch.
template <class K>
void run_matmul(const K& k, ggml_type weight, const void* w, const void* xq,
                const void* prepared, float* y, int64_t n_in, int64_t n_tokens, int64_t ldy,
                int64_t r0, int64_t r1, size_t xq_stride, int64_t block_rows = 0) {
  constexpr int mt = K::max_tokens;
  constexpr int mr = std::max(K::max_rows_1, K::max_rows);
  constexpr bool block_tiles = [] {
    if constexpr (requires { K::block_tiles; }) {
      return K::block_tiles;
    } else {
      return false;
    }
  }();
  using tile_fn = void (*)(const K&, const tile_args&);
  // table[nr - 1][nt - 1] = the NR × NT instantiation, for the shapes the driver runs
  static constexpr auto table = []<int... I>(std::integer_sequence<int, I...>) {
    return std::array<tile_fn, sizeof...(I)>{[]() -> tile_fn {
      constexpr int nr = I / mt + 1, nt = I % mt + 1;
      constexpr bool runs = nt > 1 ? nr <= K::max_rows
                                   : (block_tiles ? nr == 1 || nr == K::max_rows_1
                                                     : nr <= K::max_rows_1);
      if constexpr (runs && nt > 1 && nr > 1) {
        // a.repeat tiles in one call, the loop flattened into the tile: each call from
        // the driver cost about a 512-element group's work (one thread, 128 tokens, Q4_0
        // 2 × 6: 2048 × 1024 481 -> 538-557, 1024 × 2048 391 -> 512 GFLOP/s; 1 × 16 tiles
        // ran 2048 × 2048 4 % slower so and are called one by one)
        return [](const K& kk, const tile_args& a) __attribute__((flatten)) {
          tile_args b = a;
          for (int p = 0; p < a.repeat; ++p) {
            kk.template tile<nr, nt>(b);
            b.w += nr * a.w_stride;
            b.y += nr;
            b.row0 += nr;
            if constexpr (requires { K::part_floats; }) {
              if (b.part != nullptr) {
                b.part += nr * a.part_ld * K::part_floats;
              }
            }
            if (b.rows_made != nullptr) {
              b.rows_made += nr * a.rows_made_stride;
            }
          }
        };
      } else if constexpr (runs) {
        return [](const K& kk, const tile_args& a) { kk.template tile<nr, nt>(a); };
      } else {
        return nullptr;
      }
    }()...};
  }
  (std::make_integer_sequence<int, mr * mt>{});
  // the rows of a tile of a kernel with block_tiles from row r, up to `rows` of [r, end):
  // with one token the block from r when r starts a whole one in [r, end), else row r
  // alone; with more, not past the end of r's block
  const auto block_tile_rows = [block_rows](int64_t r, int64_t end, int rows, int nt) {
    if (nt == 1) {
      const bool whole = r % packed_block == 0 && r + packed_block <= std::min(end, block_rows);
      return whole ? static_cast<int>(packed_block) : 1;
    }
    const int64_t n = r < block_rows ? std::min(end, (r / packed_block + 1) * packed_block) - r
                                     : end - r;
    return static_cast<int>(std::min<int64_t>(rows, n));
  };

  const size_t w_stride = row_bytes(weight, static_cast<uint64_t>(n_in));
  const prefetch_plan prefetch = prefetch_now();
  // a kernel whose prepared activations only widen them exactly (F16, BF16) reads a lone
  // token's row as it is: widened it would take twice the bytes of L1 beside the stream
  // of weights (32 KiB of f32 at n_in 8192: all of a Zen 4's L1d); F32's need nothing
  if constexpr (reads_decode_row_unprepared<K>) {
    if (n_tokens == 1) {
      const auto* wb = static_cast<const uint8_t*>(w);
      const auto args = [&](int64_t r) {
        tile_args a{wb + r * w_stride, w_stride, static_cast<const uint8_t*>(xq),
                    xq_stride,         y + r,    ldy,
                    n_in};
        a.row0 = r;
        a.block_rows = block_rows;
        a.prefetch = prefetch;
        return a;
      };
      // rows [from, to) a tile at a time: a whole block, or a row
      const auto one_by_one = [&](int64_t from, int64_t to) {
        for (int64_t r = from; r < to;) {
          int nr = static_cast<int>(std::min<int64_t>(K::max_rows_1, to - r));
          if (block_tiles) {
            nr = block_tile_rows(r, to, K::max_rows_1, 1);
          }
          k.decode_unprepared(args(r), nr);
          r += nr;
        }
      };
      int64_t r = r0;
      if constexpr (requires { K::max_block_streams; }) {
        // the whole blocks in [r0, r1) in `streams` equal parts, a block of each in
        // lockstep; the parts' remainder and the rows around one by one
        const int streams = std::clamp(prefetch.block_streams, 1, K::max_block_streams);
        const int64_t b0 = (r0 + packed_block - 1) / packed_block * packed_block;
        const int64_t b1 = std::min(r1, block_rows) / packed_block * packed_block;
        const int64_t part = b1 > b0 ? (b1 - b0) / packed_block / streams : 0;
        if (streams > 1 && part > 0) {
          one_by_one(r0, b0);
          for (int64_t i = 0; i < part; ++i) {
            tile_args a[K::max_block_streams];
            for (int j = 0; j < streams; ++j) {
              a[j] = args(b0 + (j * part + i) * packed_block);
            }
            k.decode_blocks(a, streams);
          }
          r = b0 + streams * part * packed_block;
        }
      }
      one_by_one(r, r1);
      return;
    }
  }
  // ~256 KiB of weights per row block: L2 holds them while all token tiles pass
  // Several tokens (a prefill, or a decode step of several sequences — even one token
  // tile of them) pass over row blocks, and with k_pass in slices of n_in; one token
  // reads its rows straight through.
  const bool blocked = n_tokens > 1;
  int64_t rows_per_block = r1 - r0;
  if (blocked) {
    // whole prefill tiles (a one-token tile of packed_block rows may find its row block
    // ends before its block does, and takes the rows one by one)
    constexpr int64_t tr = K::max_rows;
    rows_per_block = std::max<int64_t>(mr, static_cast<int64_t>((256u << 10) / w_stride) / tr * tr);
  }
  int64_t k_step = n_in;
  int64_t part_floats = 0;
  if constexpr (requires { k.k_pass(n_in); }) {
    if (blocked) {
      k_step = k.k_pass(n_in);
      part_floats = K::part_floats;
    }
  }
  const size_t part_bytes =
      k_step < n_in ? static_cast<size_t>(rows_per_block * mt * part_floats) * sizeof(float) : 0;
  int first_tokens = mt;
  if constexpr (requires { k.first_tokens; }) {
    // not one token: a lone token's tile reads rows as decode does and makes no rows
    first_tokens = std::clamp(k.first_tokens, std::min(2, mt), mt);
  }
  size_t made_row = 0;
  if constexpr (requires { k.made_row_bytes(n_in); }) {
    if (n_tokens > first_tokens) {  // more than one token tile to read them
      made_row = k.made_row_bytes(n_in);
    }
  }
  const size_t made_bytes = made_row * static_cast<size_t>(rows_per_block);
  // scratch: [n_tokens prepared rows][partial sums][rows made]
  const uint8_t* x = static_cast<const uint8_t*>(xq);
  size_t x_stride = xq_stride;
  const size_t pb = prepared_row_bytes(k, n_in, n_tokens);
  const size_t prep_here = prepared == nullptr ? pb * static_cast<size_t>(n_tokens) : 0;
  const size_t scratch_bytes = prep_here + part_bytes + made_bytes;
  uint8_t* buf = scratch_bytes > 0 ? scratch(scratch_bytes) : nullptr;
  float* part = part_bytes > 0 ? reinterpret_cast<float*>(buf + prep_here) : nullptr;
  uint8_t* made = made_bytes > 0 ? buf + prep_here + part_bytes : nullptr;
  if (pb > 0) {
    x_stride = pb;
    if (prepared != nullptr) {
      x = static_cast<const uint8_t*>(prepared);
    } else {
      for (int64_t t = 0; t < n_tokens; ++t) {
        k.prep(x + t * xq_stride, buf + t * x_stride, n_in);
      }
      x = buf;
    }
  }
  // the tokens of the token tile from token t: mt but the first (it brings the row block
  // from memory) and the last (what remains)
  const auto tile_tokens = [&](int64_t t) {
    return static_cast<int>(std::min<int64_t>(t == 0 ? first_tokens : mt, n_tokens - t));
  };
  const auto* wb = static_cast<const uint8_t*>(w);
  for (int64_t rb = r0; rb < r1; rb += rows_per_block) {
    const int64_t re = std::min(r1, rb + rows_per_block);
    for (int64_t t = 0; t < n_tokens; t += tile_tokens(t)) {
      const int nt = tile_tokens(t);
      const int rows = nt == 1 ? K::max_rows_1 : K::max_rows;
      for (int64_t k0 = 0; k0 < n_in; k0 += k_step) {
        const int64_t k1 = std::min(n_in, k0 + k_step);
        for (int64_t r = rb; r < re;) {
          int nr = static_cast<int>(std::min<int64_t>(rows, re - r));
          if (block_tiles) {
            nr = block_tile_rows(r, re, rows, nt);
          }
          float* pr = part_bytes > 0 ? part + (r - rb) * mt * part_floats : nullptr;
          uint8_t* made_at = made != nullptr ? made + (r - rb) * made_row : nullptr;
          tile_args a{wb + r * w_stride, w_stride, x + t * x_stride, x_stride,
                      y + t * ldy + r,   ldy,      n_in, k0, k1, pr, mt, made_at, made_row,
                      t == 0,           r,        block_rows, prefetch};
          a.tokens_prefetch = t == 0                ? prefetch.first_tile
                              : made_at != nullptr ? prefetch.later_made_tiles
                                                   : prefetch.later_tiles;
          if (nt > 1 && nr > 1 && nr == K::max_rows) {
            // the whole tiles of this shape that follow, in one call: to the end of the row
            // block, or of the rows in blocks, whose tiles never cross a block's end
            const int64_t end = r < block_rows ? std::min(re, block_rows) : re;
            const bool in_step =
                !block_tiles || r >= block_rows || (packed_block % nr == 0 && r % nr == 0);
            a.repeat = in_step ? static_cast<int>(std::max<int64_t>(1, (end - r) / nr)) : 1;
          }
          table[static_cast<size_t>((nr - 1) * mt + (nt - 1))](k, a);
          r += static_cast<int64_t>(nr) * a.repeat;
        }
      }
    }
  }
}

}  // namespace baton::cpu::detail
