// The step metadata a GPU stage uploads (runtime/compute/step_metadata): for random batches of
// prefill chunks and decode tokens over shuffled block tables, every array says what the
// CUDA kernels take it to say. Runs on every machine: an earlier version wrote these
// arrays through pointers that appending the tables had moved.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "runtime/compute/step_metadata.hpp"

namespace baton {
namespace {

TEST(step_metadata, every_token_finds_its_slot_its_table_and_its_length) {
  std::mt19937 rng(7);
  constexpr int32_t bs = 16;
  constexpr int64_t n_vocab = 1000;
  for (int trial = 0; trial < 200; ++trial) {
    // up to 12 sequences, each with a shuffled table of distinct blocks
    const int n_seqs = 1 + static_cast<int>(rng() % 12);
    std::vector<int32_t> all(4096);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<std::vector<int32_t>> tables(static_cast<size_t>(n_seqs));
    batch b;
    size_t next_block = 0;
    for (int s = 0; s < n_seqs; ++s) {
      const int32_t len = 1 + static_cast<int32_t>(rng() % 300);  // tokens so far
      auto& t = tables[static_cast<size_t>(s)];
      t.assign(all.begin() + static_cast<std::ptrdiff_t>(next_block),
               all.begin() + static_cast<std::ptrdiff_t>(next_block + (len + bs - 1) / bs));
      next_block += t.size();
      b.block_tables.push_back(&t);
      // a decode token, or a prefill chunk ending at len
      const int32_t chunk = rng() % 2 ? 1 : 1 + static_cast<int32_t>(rng() % len);
      for (int32_t p = len - chunk; p < len; ++p) {
        b.add(s, static_cast<int32_t>(rng() % n_vocab), p, p + 1 == len);
      }
    }
    step_metadata m;
    auto ok = build_step_metadata(b, bs, n_vocab, true, true, m);
    ASSERT_TRUE(ok) << ok.err().message;
    const int64_t n = b.n_tokens();
    ASSERT_EQ(m.n_tokens, n);
    ASSERT_EQ(m.n_logits, b.n_logits());
    int64_t r = 0;
    for (int64_t t = 0; t < n; ++t) {
      const auto& table = *b.block_tables[static_cast<size_t>(b.seq[static_cast<size_t>(t)])];
      const int32_t pos = b.pos[static_cast<size_t>(t)];
      EXPECT_EQ(m.token()[t], b.token[static_cast<size_t>(t)]);
      EXPECT_EQ(m.slot()[t], table[static_cast<size_t>(pos / bs)] * bs + pos % bs);
      EXPECT_EQ(m.n_kv()[t], pos + 1);
      // attention reads tables[offset + p / bs] for every p < n_kv: each is the table's
      const int32_t* mine = m.tables() + m.table_offset()[t];
      for (int32_t p = 0; p <= pos; p += bs) {
        ASSERT_EQ(mine[p / bs], table[static_cast<size_t>(p / bs)]) << "token " << t;
      }
      if (b.logits[static_cast<size_t>(t)]) {
        EXPECT_EQ(m.logit_rows()[r++], t);
      }
    }
    EXPECT_EQ(static_cast<int64_t>(m.ints.size()),
              step_metadata::offset_of_tables(n) + static_cast<int64_t>(next_block));
  }
}

TEST(step_metadata, a_middle_stage_leaves_tokens_and_logit_rows_out) {
  std::vector<int32_t> table = {5, 9};
  batch b;
  b.block_tables.push_back(&table);
  b.add(0, 77, 17, true);
  step_metadata m;
  ASSERT_TRUE(build_step_metadata(b, 16, 100, false, false, m));
  EXPECT_EQ(m.token()[0], 0);
  EXPECT_EQ(m.n_logits, 0);
  EXPECT_EQ(m.slot()[0], 9 * 16 + 1);
}

TEST(step_metadata, bad_positions_and_token_ids_are_named) {
  std::vector<int32_t> table = {3};
  batch b;
  b.block_tables.push_back(&table);
  b.add(0, 5, 16, true);  // block 1 of a one-block table
  step_metadata m;
  auto no_block = build_step_metadata(b, 16, 100, true, true, m);
  ASSERT_FALSE(no_block);
  EXPECT_NE(no_block.err().message.find("position 16 has no KV block"), std::string::npos)
      << no_block.err().message;
  batch c;
  c.block_tables.push_back(&table);
  c.add(0, 100, 0, true);
  auto bad_id = build_step_metadata(c, 16, 100, true, true, m);
  ASSERT_FALSE(bad_id);
  EXPECT_NE(bad_id.err().message.find("token id 100 is outside the vocabulary (100)"),
            std::string::npos)
      << bad_id.err().message;
}

}  // namespace
}  // namespace baton
