// The pipeline simulator (runtime/sim): the real scheduler with modelled stages and links.
// Cases whose answer is known by hand: one stage's cadence, a pipeline's bubble, a slow
// link's latency on every step, a KV pool that must preempt; and its scheduler trace
// replays like the live router's.
#include <gtest/gtest.h>

#include "runtime/serving/sched_trace.hpp"
#include "runtime/serving/step_pump.hpp"
#include "runtime/sim/pipeline_sim.hpp"

namespace baton {
namespace {

/// `n` stages that each take `ms` milliseconds a step whatever it does.
sim_setup fixed_stages(int n, double ms) {
  sim_setup s;
  s.sched.max_num_seqs = 64;
  s.sched.max_num_batched_tokens = 256;
  s.sched.block_size = 16;
  s.sched.n_blocks = 4096;
  s.sched.n_ctx = 1024;
  s.sched.micro_batches = n > 1 ? 2 * n : 1;
  for (int i = 0; i < n; ++i) {
    sim_stage st;
    st.device.fixed_s = ms / 1e3;
    st.device.weight_bytes_per_s = 1e30;
    st.device.flops_per_s = 1e30;
    st.device.kv_bytes_per_s = 1e30;
    s.stages.push_back(st);
  }
  s.n_embd = 64;
  s.work.streams = 1;
  s.work.requests_per_stream = 1;
  s.work.prompt_tokens = 100;
  s.work.gen_tokens = 20;
  return s;
}

TEST(sim, one_stage_one_stream_takes_one_step_per_token) {
  const auto r = simulate(fixed_stages(1, 1.0));
  // the prompt in one step (it yields the first token), then 19 decode steps
  EXPECT_EQ(r.steps, 20u);
  EXPECT_NEAR(r.seconds, 0.020, 1e-9);
  EXPECT_NEAR(r.ttft_s.mean, 0.001, 1e-9);
  EXPECT_NEAR(r.tpot_s.mean, 0.001, 1e-9);
  EXPECT_NEAR(r.output_tokens_per_s, 1000.0, 1e-6);
  EXPECT_NEAR(r.stage_busy.at(0), 1.0, 1e-9);
}

TEST(sim, a_lone_stream_leaves_a_two_stage_pipeline_half_idle_and_two_streams_fill_it) {
  auto one = fixed_stages(2, 1.0);
  const auto r1 = simulate(one);
  EXPECT_NEAR(r1.tpot_s.mean, 0.002, 1e-9);  // each token crosses both stages
  EXPECT_NEAR(r1.stage_busy[0], 0.5, 0.01);
  auto two = fixed_stages(2, 1.0);
  two.work.streams = 2;  // one micro-batch each: the stages work on both at once
  const auto r2 = simulate(two);
  EXPECT_GT(r2.stage_busy[0], 0.9);
  EXPECT_NEAR(r2.output_tokens_per_s, 2 * r1.output_tokens_per_s, 0.1 * r1.output_tokens_per_s);
}

TEST(sim, a_slow_link_and_the_control_message_add_their_latency_to_every_step) {
  auto s = fixed_stages(2, 1.0);
  s.hops = {sim_link{0.010, 1e12}};
  s.control = sim_link{0.001, 1e12};
  const auto r = simulate(s);
  // descriptor 1 ms, stage 0 1 ms, hop 10 ms, stage 1 1 ms, result 1 ms
  EXPECT_NEAR(r.tpot_s.mean, 0.014, 1e-9);
}

TEST(sim, the_routers_turn_comes_between_a_result_and_the_next_step_and_layers_cost_their_share) {
  auto s = fixed_stages(1, 1.0);
  s.router_s = 0.0005;
  s.router_row_s = 0.0001;
  const auto r = simulate(s);
  // stage 1 ms, then the router's turn for one row: 0.6 ms before the token and the next step
  EXPECT_NEAR(r.tpot_s.mean, 0.0016, 1e-9);
  EXPECT_NEAR(r.ttft_s.mean, 0.0016, 1e-9);
  auto layered = fixed_stages(1, 1.0);
  layered.stages[0].n_layers = 4;
  layered.stages[0].device.layer_s = 0.00025;
  EXPECT_NEAR(simulate(layered).tpot_s.mean, 0.002, 1e-9);
}

TEST(sim, the_serving_defaults_resolve_as_the_live_server_resolves_them) {
  serving_config sv;
  sv.n_ctx = 100;
  sv.block_size = 16;
  auto one = resolve_serving(sv, 1, 4096);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->micro_batches, 1);
  EXPECT_EQ(one->n_blocks, 7);  // one sequence of the whole context
  auto four = resolve_serving(sv, 4, 4096);
  ASSERT_TRUE(four.ok());
  EXPECT_EQ(four->micro_batches, default_micro_batches(4));
  EXPECT_FALSE(resolve_serving(sv, 1, 64).ok());  // longer than the training context
  sv.max_num_seqs = 0;
  EXPECT_FALSE(resolve_serving(sv, 1, 4096).ok());
}

TEST(sim, a_step_is_bound_by_its_weights_or_its_math_plus_the_kv_it_reads) {
  sim_stage st;
  st.device.fixed_s = 0.001;
  st.device.weight_bytes_per_s = 1e9;
  st.device.flops_per_s = 1e10;
  st.device.kv_bytes_per_s = 1e9;
  st.weight_bytes = 1000000;         // 1 ms
  st.flops_per_token = 1e6;          // 0.1 ms a token
  st.kv_bytes_per_position = 1000;   // 1 us a position
  st.head_flops_per_row = 1e7;       // 1 ms a sampled row
  // 10 tokens and a sampled row: 2 ms of math outlast 1 ms of weights; 0.1 ms of KV
  EXPECT_NEAR(stage_step_seconds(st, 10, 100, 1), 0.001 + 0.002 + 0.0001, 1e-12);
  // one token: the weights bound it
  EXPECT_NEAR(stage_step_seconds(st, 1, 1, 0), 0.001 + 0.001 + 0.000001, 1e-12);
  // prefill-like: 1000 tokens of math (0.1 s) outlast the weights
  EXPECT_NEAR(stage_step_seconds(st, 1000, 0, 0), 0.001 + 0.1, 1e-12);
}

TEST(sim, a_small_kv_pool_preempts_and_still_finishes_every_request) {
  auto s = fixed_stages(2, 1.0);
  s.work.streams = 16;
  s.sched.n_blocks = 64;  // 16 requests of 120 tokens need 128 blocks at the end
  const auto r = simulate(s);
  EXPECT_EQ(r.requests, 16u);
  EXPECT_EQ(r.output_tokens, 16u * 20u);
  EXPECT_GT(r.preemptions, 0u);
  EXPECT_GT(r.kv_usage_mean, 0.5);
}

TEST(sim, its_scheduler_trace_replays_like_the_live_routers) {
  auto s = fixed_stages(3, 1.0);
  s.work.streams = 8;
  s.work.requests_per_stream = 2;
  s.sched.n_blocks = 48;
  std::vector<trace_event> events;
  const auto r = simulate(s, [&](const trace_event& e) { events.push_back(e); });
  EXPECT_EQ(r.requests, 16u);
  EXPECT_EQ(replay_trace(s.sched, {}, events), "");
}

}  // namespace
}  // namespace baton
