// topology/memory_plan: each number checked against the same arithmetic done by hand for
// a 4-layer fixture model (n_embd 128, 4 heads of 32, 2 KV heads, n_ff 192, vocab 320):
// one step's scratch, the KV blocks a byte budget holds, what a process gets from a
// memory budget (bound by the budget, by what its sequences need, or planned), and the
// router's block count of a planned pipeline.
#include <gtest/gtest.h>

#include <limits>
#include <memory>

#include "runtime/model/model_builder.hpp"
#include "tests/fixture_model.hpp"
#include "topology/memory_plan.hpp"

namespace baton {
namespace {

constexpr uint64_t MiB = 1024ull * 1024;

/// The tests' fixture model (tests/fixture_model.hpp), built once.
std::shared_ptr<const model> small_model() {
  static const std::shared_ptr<const model> m = test::open_model(test::fixture_options());
  return m;
}

// Per token, by hand: activations 3*128 + 2*128 (q) + 2*64 (k, v of 2 heads x 32) +
// 2*192 + max(128, 192) + 32 (rope) = 1376 floats = 5504 bytes; KV (f16) 4 layers x 2
// heads x (32 + 32) x 2 bytes = 1024 bytes, a block of 16 tokens 16384 bytes.
constexpr uint64_t k_step_per_token = 5504;
constexpr uint64_t k_kv_per_token = 1024;
constexpr uint64_t k_kv_per_block = 16 * k_kv_per_token;

TEST(memory_plan, per_token_sizes_are_the_hand_computed_ones) {
  EXPECT_EQ(small_model()->config().step_bytes_per_token(), k_step_per_token);
  EXPECT_EQ(small_model()->config().kv_bytes_per_token(ggml_type::f16), k_kv_per_token);
  EXPECT_EQ(small_model()->config().kv_bytes_per_token(ggml_type::f32), 2 * k_kv_per_token);
}

TEST(memory_plan, a_reshard_s_new_cpu_stages_hold_their_layers_kv) {
  const model& m = *small_model();
  // layers [0, 1) and [2, 4) of 4 on the CPU: 3 of 4 layers' KV, in 100 blocks
  EXPECT_EQ(cpu_stage_kv_bytes(m, {{0, 1}, {2, 4}}, 100, 16, ggml_type::f16),
            100 * k_kv_per_block * 3 / 4);
  EXPECT_EQ(cpu_stage_kv_bytes(m, {{0, 4}}, 100, 16, ggml_type::f32), 200 * k_kv_per_block);
  EXPECT_EQ(cpu_stage_kv_bytes(m, {}, 100, 16, ggml_type::f16), 0u);  // every stage on a GPU
}

TEST(memory_plan, step_buffer_is_activations_logits_and_metadata) {
  const model& m = *small_model();
  const uint64_t metadata = 4 * m.file().data_offset();
  EXPECT_GT(metadata, 0u);
  EXPECT_EQ(step_buffer_bytes(m, 512, 1, true), 512 * 5504 + 1 * 320 * 4 + metadata);
  EXPECT_EQ(step_buffer_bytes(m, 2048, 256, false), 2048 * 5504 + 256 * 320 * 4);
  EXPECT_EQ(step_buffer_bytes(m, 64, 0, false), 64u * 5504);  // a stage without the head
}

TEST(memory_plan, block_counts) {
  EXPECT_EQ(kv_blocks_for(0, 16), 0);
  EXPECT_EQ(kv_blocks_for(1, 16), 1);
  EXPECT_EQ(kv_blocks_for(16, 16), 1);
  EXPECT_EQ(kv_blocks_for(17, 16), 2);
  EXPECT_EQ(kv_blocks_needed(3, 100, 16), 21);  // 7 blocks of 16 per 100-token sequence
  EXPECT_EQ(kv_blocks_needed(1, 4096, 16), 256);
  EXPECT_EQ(kv_blocks_in(MiB, k_kv_per_token, 16), 64);           // 1 MiB / 16 KiB
  EXPECT_EQ(kv_blocks_in(MiB - 1, k_kv_per_token, 16), 63);       // whole blocks only
  EXPECT_EQ(kv_blocks_in(std::numeric_limits<uint64_t>::max(), 1, 1),
            std::numeric_limits<int32_t>::max());
  // bench batch: 4 requests of 32 + 32 tokens: 4 x 4 blocks, one spare each, and 8
  EXPECT_EQ(kv_blocks_for_requests(4, 64, 16), 28);
  EXPECT_EQ(kv_blocks_for_requests(1, 33, 16), 3 + 1 + 8);
}

process_memory_request request(int64_t n_ctx, int32_t n_seqs) {
  process_memory_request r;
  r.kv_type = ggml_type::f16;
  r.block_size = 16;
  r.n_ctx = n_ctx;
  r.batch_tokens = 64;
  r.n_seqs = n_seqs;
  r.memory_utilization = 0.5;
  return r;
}

TEST(memory_plan, a_process_gets_what_the_budget_leaves_up_to_what_its_sequences_need) {
  const model& m = *small_model();
  const uint64_t buffers = 64 * 5504 + 64 * 320 * 4 + 4 * m.file().data_offset();
  // 64 sequences of 2048 tokens need 64 x 128 blocks (128 MiB): the 32 MiB share bounds it
  auto p = plan_process_memory(m, request(2048, 64), 64 * MiB);
  ASSERT_TRUE(p.ok()) << p.err().message;
  EXPECT_EQ(p->buffer_bytes, buffers);
  EXPECT_EQ(p->kv_bytes_per_token, k_kv_per_token);
  EXPECT_EQ(p->kv_bytes_per_block, k_kv_per_block);
  EXPECT_EQ(p->n_blocks,
            static_cast<int32_t>((32 * MiB - m.weight_bytes() - buffers) / k_kv_per_block));
  // one sequence of 100 tokens needs 7 blocks, however much memory there is
  auto one = plan_process_memory(m, request(100, 1), 64 * MiB);
  ASSERT_TRUE(one.ok()) << one.err().message;
  EXPECT_EQ(one->n_blocks, 7);
  // an explicit KV size is taken as is: 10 whole blocks and 5 bytes
  auto r = request(100, 1);
  r.kv_cache_bytes = 10 * k_kv_per_block + 5;
  r.n_seqs = 4;  // 28 blocks needed
  auto ex = plan_process_memory(m, r, 64 * MiB);
  ASSERT_TRUE(ex.ok()) << ex.err().message;
  EXPECT_EQ(ex->n_blocks, 10);
  // planned on other devices: what the sequences need, the budget unread
  r.planned = true;
  auto planned = plan_process_memory(m, r, 0);
  ASSERT_TRUE(planned.ok());
  EXPECT_EQ(planned->n_blocks, 28);
}

TEST(memory_plan, a_budget_below_weights_buffers_and_one_sequence_is_an_error) {
  const model& m = *small_model();
  auto p = plan_process_memory(m, request(2048, 1), 2 * m.weight_bytes());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.err().message.find("cannot hold the weights"), std::string::npos)
      << p.err().message;
}

TEST(memory_plan, the_router_gets_the_plans_blocks_up_to_what_its_sequences_need) {
  pipeline_plan plan;
  plan.resolved.pipeline.max_num_seqs = 4;
  plan.resolved.pipeline.max_model_len = 100;  // 7 blocks each: 28 needed
  plan.resolved.pipeline.block_size = 16;
  plan.n_blocks = 1000;
  EXPECT_EQ(pipeline_kv_blocks(plan, 0), 28);
  EXPECT_EQ(pipeline_kv_blocks(plan, 20), 20);  // the command needs no more
  plan.n_blocks = 12;
  EXPECT_EQ(pipeline_kv_blocks(plan, 0), 12);
  EXPECT_EQ(pipeline_kv_blocks(plan, 20), 12);
}

}  // namespace
}  // namespace baton
