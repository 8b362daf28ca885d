// kernels/cpu/matmul within one isa: an element's bits do not depend on n_tokens, the row
// range, the tile it lands in, the row blocks a prefill passes in, the weights' layout
// (ggml's or pack_rows') or whether its activations were prepared once for all threads —
// what makes a sequence's outputs independent of its batch and topology.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/ggml_type.hpp"
#include "tests/matmul_test_util.hpp"
#include "tests/random_weights.hpp"

namespace baton {
namespace {

using cpu::isa;
using test::forced_tiles;
using test::k_all_types;
using test::matmul_cases;
using test::random_activations;
using test::random_weights;
using test::simd;
using test::tile_name;
using test::tile_shapes;
using test::type_name;

/// The packed layouts isa v has for `type`: packed, then packed_blocks where it has that.
std::vector<cpu::weight_layout> packed_layouts(isa v, ggml_type type) {
  std::vector<cpu::weight_layout> out;
  if (cpu::has_packed_layout(v, type)) {
    out.push_back(cpu::weight_layout::packed);
  }
  if (cpu::has_block_layout(v, type)) {
    out.push_back(cpu::weight_layout::packed_blocks);
  }
  return out;
}

/// w (ggml's layout) in each packed layout isa v has for `type`, then as it is.
std::vector<std::pair<cpu::weight_layout, std::vector<uint8_t>>> in_every_layout(
    isa v, ggml_type type, const std::vector<uint8_t>& w, int64_t n_in, int64_t n_out) {
  std::vector<std::pair<cpu::weight_layout, std::vector<uint8_t>>> out;
  for (const auto layout : packed_layouts(v, type)) {
    std::vector<uint8_t> packed(w.size());
    cpu::pack_rows(v, type, w.data(), packed.data(), n_in, n_out, layout);
    out.emplace_back(layout, std::move(packed));
  }
  out.emplace_back(cpu::weight_layout::ggml, w);
  return out;
}

const char* layout_name(cpu::weight_layout l) {
  return l == cpu::weight_layout::ggml ? "ggml" : l == cpu::weight_layout::packed ? "packed" : "packed_blocks";
}

TEST_P(simd, elements_do_not_depend_on_tokens_rows_or_tiles) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    std::mt19937 rng(24);
    for (auto [type, n_in] : matmul_cases()) {
      const int64_t n_out = 37, n_tokens = 17, ldy = n_out + 3;
      const auto w = random_weights(rng, type, n_out, n_in);
      const auto xq = random_activations(rng, type, n_tokens, n_in);
      const size_t xs = cpu::activation_row_bytes(type, n_in);
      const size_t ws = row_bytes(type, static_cast<uint64_t>(n_in));
      const std::string what = type_name(type) + " n_in " + std::to_string(n_in);

      std::vector<float> all(ldy * n_tokens, NAN);
      cpu::matmul(GetParam(), type, w.data(), xq.data(), all.data(), n_in, n_tokens, ldy, 0, n_out);

      // rows split at random points, a call per range
      std::vector<float> split(ldy * n_tokens, NAN);
      for (int64_t r0 = 0; r0 < n_out;) {
        const int64_t r1 = std::min<int64_t>(n_out, r0 + 1 + rng() % 9);
        cpu::matmul(GetParam(), type, w.data(), xq.data(), split.data(), n_in, n_tokens, ldy, r0, r1);
        r0 = r1;
      }
      // token windows (first, count), so that every tile width up to 6 gets used
      const std::pair<int64_t, int64_t> windows[] = {{2, 5}, {9, 3}, {13, 2}, {0, 6}, {11, 4}};
      std::vector<std::vector<float>> window_y;
      for (auto [first, count] : windows) {
        window_y.emplace_back(ldy * count, NAN);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + first * xs, window_y.back().data(), n_in,
                    count, ldy, 0, n_out);
      }

      for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<float> one(n_out, NAN);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + t * xs, one.data(), n_in, 1, n_out, 0,
                    n_out);
        for (int64_t r = 0; r < n_out; ++r) {
          const float e = all[t * ldy + r];
          const float dot =
              cpu::vec_dot(GetParam(), type, w.data() + r * ws, xq.data() + t * xs, n_in);
          ASSERT_EQ(float_bits(e), float_bits(split[t * ldy + r]))
              << what << " t " << t << " r " << r;
          ASSERT_EQ(float_bits(e), float_bits(one[r])) << what << " t " << t << " r " << r;
          ASSERT_EQ(float_bits(e), float_bits(dot)) << what << " t " << t << " r " << r;
          for (size_t i = 0; i < std::size(windows); ++i) {
            const auto [first, count] = windows[i];
            if (t >= first && t < first + count) {
              ASSERT_EQ(float_bits(e), float_bits(window_y[i][(t - first) * ldy + r]))
                  << what << " t " << t << " window " << i;
            }
          }
        }
      }
      // nothing outside [0, n_out) of each ldy row is written
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = n_out; r < ldy; ++r) {
          ASSERT_TRUE(std::isnan(all[t * ldy + r])) << what;
        }
      }
    }
  }
}

TEST_P(simd, many_tokens_use_row_blocks_without_changing_elements) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    // enough tokens and rows that the driver blocks rows for L2 and, for AVX-512 Q4_0,
    // Q8_0, Q4_K and Q6_K, runs n_in in slices (more than one token tile; 87 blocks: a
    // partial last group of 16; 167 blocks: slices of 4096 (Q4_0 on Zen 5) and a partial
    // last one; 9 and 19 super-blocks: a partial last slice, of 2048 or of Q4_K's 4096 on
    // Zen 5), a last token tile of
    // one token among them (19 = 3 × 6 + 1, 17 = 2 × 8 + 1: Q6_K's tiles); elements as
    // alone
    std::mt19937 rng(25);
    const std::pair<ggml_type, int64_t> cases[] = {{ggml_type::q4_0, 4096},
                                                   {ggml_type::q4_0, 32 * 87},
                                                   {ggml_type::q4_0, 32 * 167},
                                                   {ggml_type::q8_0, 4096},
                                                   {ggml_type::q8_0, 32 * 87},
                                                   {ggml_type::q4_k, 4096},
                                                   {ggml_type::q4_k, 256 * 9},
                                                   {ggml_type::q4_k, 256 * 19},
                                                   {ggml_type::q6_k, 4096},
                                                   {ggml_type::q6_k, 256 * 9},
                                                   {ggml_type::f16, 4096}};
    for (auto [type, n_in] : cases) {
      const int64_t n_out = 301, n_tokens = type == ggml_type::q6_k ? 17 : 19;
      const auto w = random_weights(rng, type, n_out, n_in);
      const auto xq = random_activations(rng, type, n_tokens, n_in);
      const size_t xs = cpu::activation_row_bytes(type, n_in);
      std::vector<float> all(n_out * n_tokens);
      cpu::matmul(GetParam(), type, w.data(), xq.data(), all.data(), n_in, n_tokens, n_out, 0, n_out);
      for (const auto layout : packed_layouts(GetParam(), type)) {
        // several row blocks of packed rows (Q4_K: scales made once per block), rows from 5
        std::vector<uint8_t> packed(w.size());
        cpu::pack_rows(GetParam(), type, w.data(), packed.data(), n_in, n_out, layout);
        std::vector<float> got(n_out * n_tokens, NAN);
        cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in, n_tokens, n_out,
                    5, n_out, layout, n_out);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int64_t r = 5; r < n_out; ++r) {
            ASSERT_EQ(float_bits(all[t * n_out + r]), float_bits(got[t * n_out + r]))
                << type_name(type) << " " << layout_name(layout) << ", t " << t << " r " << r;
          }
        }
      }
      for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<float> one(n_out);
        cpu::matmul(GetParam(), type, w.data(), xq.data() + t * xs, one.data(), n_in, 1, n_out, 0,
                    n_out);
        for (int64_t r = 0; r < n_out; ++r) {
          ASSERT_EQ(float_bits(all[t * n_out + r]), float_bits(one[r])) << type_name(type);
        }
      }
    }
  }
}

TEST_P(simd, packed_weights_give_the_same_bits_as_ggml_s_layout) {
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    // pack_rows rearranges a row's bits; every element, any tile, any token count, the same
    // bits
    std::mt19937 rng(26);
    int n_packed = 0;
    for (ggml_type type : k_all_types) {
      if (packed_layouts(GetParam(), type).empty()) {
        continue;
      }
      ++n_packed;
      // no whole group of 16 blocks (Q4_K: of two), one, 4 + a partial one, 5 + 7 blocks,
      // FFN down's; Q4_K: one lone block, a group and one, nine; float rows in blocks:
      // pieces and a tail of 4, of 24 (a whole 16 and a partial one)
      for (int64_t n_in : {32 * 7, 512, 2048, 4096 + 32 * 3, 32 * 87, 8192, 256, 256 * 3,
                           256 * 9, 100, 2048 + 24}) {
        if (n_in % traits(type).block_size != 0) {
          continue;
        }
        const int64_t n_out = 41;
        const auto w = random_weights(rng, type, n_out, n_in);
        for (const auto layout : packed_layouts(GetParam(), type)) {
          SCOPED_TRACE(layout_name(layout));
          std::vector<uint8_t> packed(w.size());
          cpu::pack_rows(GetParam(), type, w.data(), packed.data(), n_in, n_out, layout);
          if (n_in >= 512) {
            EXPECT_NE(0, std::memcmp(packed.data(), w.data(), w.size())) << "nothing moved";
          }
          // packed in parts that start on multiples of packed_block rows, as a CPU stage's
          // threads pack a matrix: the same bytes
          {
            const size_t row = w.size() / n_out;
            const int64_t cut = 2 * cpu::packed_block;
            std::vector<uint8_t> parts(w.size());
            cpu::pack_rows(GetParam(), type, w.data(), parts.data(), n_in, cut, layout);
            cpu::pack_rows(GetParam(), type, w.data() + cut * row, parts.data() + cut * row, n_in,
                           n_out - cut, layout);
            EXPECT_EQ(0, std::memcmp(packed.data(), parts.data(), w.size()))
                << type_name(type) << " n_in " << n_in;
          }
          for (int64_t n_tokens : {1, 3, 16, 19}) {
            const auto xq = random_activations(rng, type, n_tokens, n_in);
            std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens);
            cpu::matmul(GetParam(), type, w.data(), xq.data(), want.data(), n_in, n_tokens, n_out, 0,
                        n_out);
            // in row ranges, as threads take them: on blocks of packed_block rows, or across
            // them (rows of a block computed alone), and the last rows that are in none
            for (const auto& cuts : {std::vector<int64_t>{0, 16, n_out},
                                     std::vector<int64_t>{0, 5, 21, 40, n_out}}) {
              std::fill(got.begin(), got.end(), NAN);
              for (size_t c = 0; c + 1 < cuts.size(); ++c) {
                cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in, n_tokens,
                            n_out, cuts[c], cuts[c + 1], layout, n_out);
              }
              for (size_t i = 0; i < want.size(); ++i) {
                ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                    << type_name(type) << " n_in " << n_in << " n_tokens " << n_tokens
                    << " element " << i << " cuts " << cuts[1];
              }
            }
          }
        }
      }
    }
    if (n_packed == 0) {
      GTEST_SKIP() << cpu::isa_name(GetParam()) << " has no packed layout";
    }
  }
}

TEST_P(simd, prefetch_plans_change_no_bit) {
  // a plan only says which lines are asked for early and how many blocks a float decode
  // reads in lockstep: every plan, every layout, row ranges that start in a block or on
  // one, the bits of the automatic plan's one call (decode tiles of rows alone and of
  // blocks, a prefill)
  const cpu::weight_prefetch none{}, l1{6144, true}, l2{8192, false}, near{64, true};
  const cpu::prefetch_plan plans[] = {{none, none, none, none, none, 1},
                                      {l1, l1, l1, l1, l1, 2},
                                      {l2, none, near, none, l1, 3},
                                      {near, l2, l2, near, none, 4}};
  std::mt19937 rng(27);
  for (ggml_type type : k_all_types) {
    for (int64_t n_in : {512, 2048 + 256, 1000}) {
      if (n_in % traits(type).block_size != 0) {
        continue;
      }
      const int64_t n_out = 41;
      const auto w = random_weights(rng, type, n_out, n_in);
      for (const auto& [layout, packed] : in_every_layout(GetParam(), type, w, n_in, n_out)) {
        for (int64_t n_tokens : {1, 19}) {
          const auto xq = random_activations(rng, type, n_tokens, n_in);
          std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens);
          cpu::matmul(GetParam(), type, packed.data(), xq.data(), want.data(), n_in, n_tokens,
                      n_out, 0, n_out, layout, n_out);
          for (const auto& plan : plans) {
            for (int64_t cut : {0, 3, 16}) {  // [0, cut) and [cut, n_out) in two calls
              cpu::force_prefetch_plan(&plan);
              std::fill(got.begin(), got.end(), NAN);
              for (const auto [r0, r1] : {std::pair{int64_t{0}, cut}, std::pair{cut, n_out}}) {
                cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in,
                            n_tokens, n_out, r0, r1, layout, n_out);
              }
              cpu::force_prefetch_plan(nullptr);
              for (size_t i = 0; i < want.size(); ++i) {
                ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                    << type_name(type) << " " << layout_name(layout) << " n_in " << n_in
                    << " n_tokens " << n_tokens << " rows distance " << plan.rows.distance
                    << " first tile distance " << plan.first_tile.distance << " block streams "
                    << plan.block_streams << " rows from " << cut << " element " << i;
              }
            }
          }
        }
      }
    }
  }
}

TEST_P(simd, first_tile_widths_change_no_bit) {
  // a row block's first token tile may be narrower than the others (force_first_tile_tokens):
  // every width (1 runs as 2: a lone token's tile makes no rows for the later tiles, which
  // Q4_K's read), every tile shape and layout, the bits of the automatic width's call
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    std::mt19937 rng(31);
    for (ggml_type type : k_all_types) {
      const int64_t n_in = 2048 + 256, n_out = 43;
      if (n_in % traits(type).block_size != 0) {
        continue;
      }
      const auto w = random_weights(rng, type, n_out, n_in);
      for (const auto& [layout, packed] : in_every_layout(GetParam(), type, w, n_in, n_out)) {
        for (int64_t n_tokens : {7, 16, 19}) {
          const auto xq = random_activations(rng, type, n_tokens, n_in);
          std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens);
          cpu::matmul(GetParam(), type, packed.data(), xq.data(), want.data(), n_in, n_tokens,
                      n_out, 0, n_out, layout, n_out);
          for (int first : {1, 2, 3, 4, 5, 6, 16}) {
            cpu::force_first_tile_tokens(first);
            std::fill(got.begin(), got.end(), NAN);
            // on a thread of its own: its scratch holds nothing the automatic call made
            std::thread([&, &packed = packed] {
              cpu::matmul(GetParam(), type, packed.data(), xq.data(), got.data(), n_in,
                          n_tokens, n_out, 0, n_out, layout, n_out);
            }).join();
            cpu::force_first_tile_tokens(0);
            for (size_t i = 0; i < want.size(); ++i) {
              ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                  << type_name(type) << " " << layout_name(layout) << " n_tokens " << n_tokens
                  << " first tile " << first << " element " << i;
            }
          }
        }
      }
    }
  }
}

TEST_P(simd, rows_prepared_once_give_the_same_bits) {
  // threads sharing a matmul prepare its activation rows once (prepare_row) and each
  // takes its rows from them: the same bits as a matmul that prepares them itself
  for (auto tiles : tile_shapes(GetParam())) {
    const forced_tiles scope(tiles);
    SCOPED_TRACE(tile_name(tiles));
    std::mt19937 rng(27);
    int n_prepared = 0;
    for (ggml_type type : k_all_types) {
      for (int64_t n_in : {256 * 3, 2048, 4096 + 256}) {
        const int64_t n_out = 37;
        const auto w = random_weights(rng, type, n_out, n_in);
        for (int64_t n_tokens : {1, 2, 7, 19}) {
          const auto xq = random_activations(rng, type, n_tokens, n_in);
          const size_t xs = cpu::activation_row_bytes(type, n_in);
          const size_t pb = cpu::prepared_row_bytes(GetParam(), type, n_in, n_tokens);
          ASSERT_EQ(0u, pb % 64) << type_name(type);
          n_prepared += pb > 0 ? 1 : 0;
          // 64-byte aligned rows, filled with a pattern that no kernel may read past
          std::vector<uint8_t> buf(pb * static_cast<size_t>(n_tokens) + 64, 0xa5);
          uint8_t* prepared = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
          for (int64_t t = 0; t < n_tokens; ++t) {
            cpu::prepare_row(GetParam(), type, xq.data() + t * xs, prepared + t * pb, n_in,
                             n_tokens);
          }
          std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens, NAN);
          cpu::matmul(GetParam(), type, w.data(), xq.data(), want.data(), n_in, n_tokens, n_out, 0,
                      n_out);
          // from ggml's layout, and from the packed ones as a CPU stage keeps its weights
          std::vector<cpu::weight_layout> layouts = packed_layouts(GetParam(), type);
          layouts.insert(layouts.begin(), cpu::weight_layout::ggml);
          std::vector<uint8_t> packed(w.size());
          for (const auto layout : layouts) {
            const bool is_packed = layout != cpu::weight_layout::ggml;
            if (is_packed) {
              cpu::pack_rows(GetParam(), type, w.data(), packed.data(), n_in, n_out, layout);
            }
            std::fill(got.begin(), got.end(), NAN);
            for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 16}, {16, 32}, {32, n_out}}) {
              cpu::matmul(GetParam(), type, is_packed ? packed.data() : w.data(), xq.data(),
                          got.data(), n_in, n_tokens, n_out, r0, r1, layout, n_out,
                          pb > 0 ? prepared : nullptr);
            }
            for (size_t i = 0; i < want.size(); ++i) {
              ASSERT_EQ(float_bits(want[i]), float_bits(got[i]))
                  << type_name(type) << " n_in " << n_in << " n_tokens " << n_tokens
                  << " element " << i << " " << layout_name(layout);
            }
          }
        }
      }
    }
    EXPECT_GT(n_prepared, 0) << "no kernel of " << cpu::isa_name(GetParam()) << " prepares rows";
  }
}

}  // namespace
}  // namespace baton
