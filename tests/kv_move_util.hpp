// What a reshard relies on when a layer changes owner: the KV rows a stage exports
// (stage_compute::export_kv) make a fresh stage that imports them compute exactly what
// the old owner would have. Shared by the CPU test (forward_test.cpp) and the CUDA one
// (cuda_stage_test.cpp, on a GPU or the emulation).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/compute/stage_compute.hpp"

namespace baton::test {

/// A stage over layers [first, last) of `m` on `device`, 8 KV blocks of 16 tokens.
inline std::unique_ptr<stage_compute> kv_move_stage(std::shared_ptr<const model> m,
                                                    const std::string& device, int64_t first,
                                                    int64_t last) {
  stage_compute_options o;
  o.m = std::move(m);
  o.first_layer = first;
  o.last_layer = last;
  o.device = device;
  o.n_blocks = 8;
  o.block_size = 16;
  o.kv_type = ggml_type::f16;
  o.n_threads = 1;
  o.kernels = cpu::best_isa();
  auto s = make_stage_compute(o);
  EXPECT_TRUE(s) << s.err().message;
  return s ? std::move(*s) : nullptr;
}

/// `tokens` at positions from `pos` of the sequence with blocks `table`, logits for the last.
inline batch kv_move_batch(const std::vector<int32_t>& table, const std::vector<int32_t>& tokens,
                           int32_t pos) {
  batch b;
  b.block_tables.push_back(&table);
  for (size_t i = 0; i < tokens.size(); ++i) {
    b.add(0, tokens[i], pos + static_cast<int32_t>(i), i + 1 == tokens.size());
  }
  return b;
}

/// Runs `b` through `stages` in order; the last one's logits.
inline std::vector<float> kv_move_run(const std::vector<stage_compute*>& stages, const batch& b) {
  std::vector<float> hidden, logits;
  for (stage_compute* s : stages) {
    auto ok = s->forward(b, hidden, logits);
    EXPECT_TRUE(ok) << ok.err().message;
  }
  return logits;
}

/// A whole-model stage prefills a prompt; two fresh half stages import its KV rows layer
/// by layer and decode the next token bit-identically to it; without the rows they would
/// not; rows that do not fit are refused by name and change nothing.
inline void expect_kv_rows_move_between_stages(std::shared_ptr<const model> m,
                                               const std::string& device) {
  const int64_t n_layer = m->config().n_layer;
  ASSERT_GE(n_layer, 2);
  const int64_t mid = n_layer / 2;
  const std::vector<int32_t> table = {5, 2};  // 20 prompt tokens span two blocks
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 20; ++i) {
    prompt.push_back((i * 37 + 11) % 300);
  }
  auto whole = kv_move_stage(m, device, 0, n_layer);
  auto front = kv_move_stage(m, device, 0, mid);
  auto back = kv_move_stage(m, device, mid, n_layer);
  auto cold = kv_move_stage(m, device, mid, n_layer);
  ASSERT_TRUE(whole && front && back && cold);
  kv_move_run({whole.get()}, kv_move_batch(table, prompt, 0));
  for (int64_t layer = 0; layer < n_layer; ++layer) {
    auto rows = whole->export_kv(layer, table);
    ASSERT_TRUE(rows) << rows.err().message;
    auto ok = (layer < mid ? front : back)->import_kv(layer, table, *rows);
    ASSERT_TRUE(ok) << ok.err().message;
    if (layer < mid) {
      continue;
    }
    // a half stage refuses rows it cannot hold, by name, and keeps what it has
    auto outside = front->import_kv(layer, table, *rows);
    ASSERT_FALSE(outside);
    EXPECT_NE(outside.err().message.find("layer " + std::to_string(layer)), std::string::npos)
        << outside.err().message;
    std::vector<uint8_t> short_rows(rows->begin(), rows->end() - 1);
    auto truncated = back->import_kv(layer, table, short_rows);
    ASSERT_FALSE(truncated);
    EXPECT_NE(truncated.err().message.find("bytes"), std::string::npos);
    const std::vector<int32_t> bad_block = {5, 8};
    auto beyond = back->import_kv(layer, bad_block, *rows);
    ASSERT_FALSE(beyond);
    EXPECT_NE(beyond.err().message.find("block 8"), std::string::npos) << beyond.err().message;
  }
  const batch next = kv_move_batch(table, {42}, 20);
  const auto want = kv_move_run({whole.get()}, next);
  // a front half with the moved rows but a back half without: other logits
  auto front_copy = kv_move_stage(m, device, 0, mid);
  for (int64_t layer = 0; layer < mid; ++layer) {
    ASSERT_TRUE(front_copy->import_kv(layer, table, *whole->export_kv(layer, table)));
  }
  // the two halves with the moved rows: the whole stage's logits
  const auto got = kv_move_run({front.get(), back.get()}, next);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(got, want) << device << ": logits after moving the KV rows";
  const auto without = kv_move_run({front_copy.get(), cold.get()}, next);
  EXPECT_NE(without, want) << device << ": the back half's rows made no difference";
}

}  // namespace baton::test
