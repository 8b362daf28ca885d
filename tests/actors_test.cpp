// The actor system in one process (shards, router, admission) on a fixture model with a
// byte-level vocabulary: concurrent requests (seeded sampling) give exactly the tokens they
// give alone, with
// 1, 2 and 4 stages and under preemption; stages overlap; admission refuses with reasons
// and their kinds; cancel returns every block; a stage's death ends every request and
// returns every block, and after begin_stop() it reads as the shutdown; the snapshot
// follows the router without asking it.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "actors/local_server.hpp"
#include "runtime/serving/sched_trace.hpp"
#include "runtime/compute/engine.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/serving/scheduler.hpp"
#include "tests/byte_fixture.hpp"
#include "tests/fixture_model.hpp"

namespace baton {
namespace {

using test::fixture;

std::vector<int32_t> prompt(int i) {
  std::vector<int32_t> p = {256};
  for (int j = 0; j < 5 + (i * 7) % 23; ++j) {
    p.push_back((i * 31 + j * 17 + 3) % 256);
  }
  return p;
}

/// Sampled (seeded) so that the random fixture's output is not one repeated token.
sampling_params seeded(int i) {
  sampling_params sp;
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = 1000 + static_cast<uint64_t>(i);
  return sp;
}

/// The tokens of one request computed alone by the single-process engine.
std::vector<int32_t> alone(const std::vector<int32_t>& p, int n, const sampling_params& sp) {
  engine_options o;
  o.n_threads = 1;
  o.n_ctx = 512;
  auto e = std::move(*engine::create(fixture().m, o));
  sequence s;
  auto l = *e->prefill(s, p);
  std::vector<int32_t> out;
  sampler smp(sp);
  for (int i = 0; i < n; ++i) {
    out.push_back(smp.sample(l, {}, static_cast<uint64_t>(i)));
    feed_item it{&s, std::span<const int32_t>(&out.back(), 1), true};
    l = std::move((*e->feed(std::span<const feed_item>(&it, 1)))[0]);
  }
  return out;
}

gen_request greedy_request(std::vector<int32_t> p, int n, std::string key = "",
                           int sample_seed = -1) {
  gen_request r;
  r.prompt = std::move(p);
  r.max_tokens = n;
  r.sampling.temperature = 0.0f;
  if (sample_seed >= 0) {
    r.sampling = seeded(sample_seed);
  }
  r.ignore_eos = true;
  r.key = std::move(key);
  return r;
}

/// Reads a stream to its end: tokens and the final event.
std::pair<std::vector<int32_t>, gen_event> drain(event_stream& s) {
  std::vector<int32_t> toks;
  for (;;) {
    auto e = s.next(std::chrono::seconds(120));
    if (!e) {
      ADD_FAILURE() << "no event within 120 s";
      return {toks, gen_event{}};
    }
    if (e->token >= 0) {
      toks.push_back(e->token);
    }
    if (e->finish != finish_reason::none) {
      return {toks, *e};
    }
  }
}

server_options options(int stages, int n_blocks = 0) {
  server_options o;
  o.n_stages = stages;
  o.n_threads = 2;
  o.serving.n_ctx = 512;
  o.serving.n_blocks = n_blocks;
  o.serving.max_num_batched_tokens = 64;
  return o;
}

/// What requests 0..n-1 give alone (n_gen tokens each, seeded): the reference a busy or
/// resharded server must match.
std::vector<std::vector<int32_t>> alone_all(int n, int n_gen) {
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(alone(prompt(i), n_gen, seeded(i)));
  }
  return out;
}

/// Requests 0..n-1 submitted at once.
std::vector<std::shared_ptr<event_stream>> submit_all(local_server& srv, int n, int n_gen) {
  std::vector<std::shared_ptr<event_stream>> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(srv.submit(greedy_request(prompt(i), n_gen, "", i)));
  }
  return out;
}

/// Every stream ends at its length with the tokens it gives alone.
void expect_as_alone(const std::vector<std::shared_ptr<event_stream>>& streams,
                     const std::vector<std::vector<int32_t>>& want) {
  for (size_t i = 0; i < streams.size(); ++i) {
    auto [toks, fin] = drain(*streams[i]);
    EXPECT_EQ(fin.finish, finish_reason::length) << fin.error;
    EXPECT_EQ(toks, want[i]) << "request " << i;
  }
}

TEST(actors, concurrent_requests_give_the_tokens_they_give_alone) {
  constexpr int n_req = 32, n_gen = 10;
  const auto want = alone_all(n_req, n_gen);
  std::set<int32_t> distinct(want[0].begin(), want[0].end());
  EXPECT_GT(distinct.size(), 3u) << "the fixture should not repeat one token";
  for (int stages : {1, 2, 4}) {
    auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(stages, 256)));
    const auto streams = submit_all(*srv, n_req, n_gen);
    for (int i = 0; i < n_req; ++i) {
      auto [toks, fin] = drain(*streams[static_cast<size_t>(i)]);
      EXPECT_EQ(fin.finish, finish_reason::length) << fin.error;
      EXPECT_EQ(toks, want[static_cast<size_t>(i)]) << "request " << i << ", " << stages
                                                   << " stages";
    }
    const auto st = srv->stats();
    EXPECT_EQ(st.free_blocks, st.total_blocks);  // everything returned
  }
}

TEST(actors, a_recorded_live_schedule_replays_decision_for_decision_and_a_changed_one_does_not) {
  // a live 2-stage run with a small KV pool (preemption, chunked prefill, micro-batches)
  std::mutex mu;
  std::vector<trace_event> events;
  auto o = options(2, 24);
  o.trace = [&](const trace_event& e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(e);
  };
  scheduler_config used;
  {
    auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
    used = srv->options().serving;  // resolved (micro_batches)
    expect_as_alone(submit_all(*srv, 12, 40), alone_all(12, 40));
    EXPECT_GT(srv->stats().preemptions, 0u);
  }
  std::lock_guard<std::mutex> lock(mu);
  size_t steps = 0;
  for (const auto& e : events) {
    steps += e.what == trace_event::kind::step;
  }
  EXPECT_GT(steps, 40u);
  const auto eog = fixture().tok->eog_ids();
  EXPECT_EQ(replay_trace(used, eog, events), "");
  // a replay on other settings decides otherwise, and says where
  scheduler_config other = used;
  other.max_num_batched_tokens = used.max_num_batched_tokens / 2;
  const std::string differs = replay_trace(other, eog, events);
  EXPECT_NE(differs.find("the recording has step"), std::string::npos) << differs;
}

TEST(actors, preemption_under_a_small_kv_budget_loses_nothing) {
  constexpr int n_req = 16, n_gen = 64;
  const auto want = alone_all(n_req, n_gen);
  // 16 blocks of 16 tokens: room for about 3 of the 16 sequences at full length
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 16)));
  const auto streams = submit_all(*srv, n_req, n_gen);
  expect_as_alone(streams, want);
  const auto st = srv->stats();
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_EQ(st.free_blocks, st.total_blocks);
  std::printf("preemptions: %llu\n", static_cast<unsigned long long>(st.preemptions));
}

TEST(actors, two_stages_overlap_with_two_micro_batches) {
  auto o = options(2, 256);
  o.serving.micro_batches = 2;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  std::vector<std::shared_ptr<event_stream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(srv->submit(greedy_request(prompt(i), 16)));
  }
  for (auto& s : streams) {
    drain(*s);
  }
  const auto t0 = srv->timings(0);
  const auto t1 = srv->timings(1);
  std::map<uint64_t, step_timing> last;
  for (const auto& t : t1) {
    last[t.step_id] = t;
  }
  int overlaps = 0;
  for (const auto& t : t0) {
    // stage 0 began step k+1 before stage 1 finished step k
    auto it = last.find(t.step_id - 1);
    if (it != last.end() && t.begin_us < it->second.end_us) {
      ++overlaps;
    }
  }
  std::printf("steps %zu, stage 0 started the next step before stage 1 ended the previous: %d\n",
              t0.size(), overlaps);
  EXPECT_GT(overlaps, 0);
}

TEST(actors, admission_refuses_with_reasons) {
  auto o = options(1, 256);
  o.serving.max_num_seqs = 2;
  o.serving.max_queue = 1;
  o.serving.max_per_key = 0;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  // an over-long request names both numbers
  admission a;
  auto s = srv->submit(greedy_request(prompt(1), 600), &a);
  EXPECT_EQ(a.verdict, admit::never);
  EXPECT_EQ(a.reason, refusal::invalid);
  EXPECT_NE(a.message.find("max_tokens (600)"), std::string::npos) << a.message;
  EXPECT_NE(a.message.find("context length (512)"), std::string::npos) << a.message;
  auto [toks, fin] = drain(*s);
  EXPECT_EQ(fin.finish, finish_reason::error);
  EXPECT_EQ(fin.error_kind, refusal::invalid);

  // three long requests fill max_num_seqs + max_queue; the fourth is refused
  std::vector<std::shared_ptr<event_stream>> held;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = greedy_request(prompt(i), 400);
    r.id = 1000 + static_cast<uint64_t>(i);
    ids.push_back(r.id);
    admission ok;
    held.push_back(srv->submit(r, &ok));
    EXPECT_EQ(ok.verdict, admit::ok) << ok.message;
  }
  admission full;
  srv->submit(greedy_request(prompt(5), 4), &full);
  EXPECT_EQ(full.verdict, admit::never);
  EXPECT_EQ(full.message, "queue full");
  EXPECT_EQ(full.reason, refusal::queue_full);
  EXPECT_GT(full.retry_after_s, 0);
  for (auto id : ids) {
    srv->cancel(id);
  }
  for (auto& h : held) {
    EXPECT_EQ(drain(*h).second.finish, finish_reason::cancelled);
  }
}

TEST(actors, per_key_quota_holds_while_other_keys_get_through) {
  auto o = options(1, 256);
  o.serving.max_per_key = 1;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  auto r = greedy_request(prompt(1), 300, "alice");
  r.id = 77;
  admission first, second, other;
  auto h = srv->submit(r, &first);
  srv->submit(greedy_request(prompt(2), 4, "alice"), &second);
  auto b = srv->submit(greedy_request(prompt(3), 4, "bob"), &other);
  EXPECT_EQ(first.verdict, admit::ok);
  EXPECT_EQ(second.verdict, admit::never);
  EXPECT_NE(second.message.find("key quota"), std::string::npos) << second.message;
  EXPECT_EQ(second.reason, refusal::key_quota);
  EXPECT_EQ(first.reason, refusal::none);
  EXPECT_EQ(other.verdict, admit::ok);
  EXPECT_EQ(drain(*b).second.finish, finish_reason::length);
  srv->cancel(77);
  drain(*h);
}

TEST(actors, cancel_frees_every_block) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 64)));
  const auto before = srv->stats();
  auto r = greedy_request(prompt(4), 400);
  r.id = 42;
  auto s = srv->submit(r);
  auto first = s->next(std::chrono::seconds(60));
  ASSERT_TRUE(first);
  srv->cancel(42);
  auto [toks, fin] = drain(*s);
  EXPECT_EQ(fin.finish, finish_reason::cancelled);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto after = srv->stats();
  EXPECT_EQ(after.free_blocks, before.free_blocks);
  EXPECT_EQ(after.running + after.waiting, 0);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(actors, prefix_cache_serves_shared_prompts_and_the_next_chat_turn) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 128)));
  // a 3-block (48-token) shared prefix, then different endings
  std::vector<int32_t> prefix = {256};
  for (int i = 0; i < 50; ++i) {
    prefix.push_back((i * 13 + 5) % 256);
  }
  auto with_tail = [&](int t) {
    auto p = prefix;
    p.push_back(10 + t);
    p.push_back(20 + t);
    return p;
  };
  auto [a_toks, a_fin] = drain(*srv->submit(greedy_request(with_tail(1), 40, "", 1)));
  EXPECT_EQ(a_fin.cached_tokens, 0);
  auto [b_toks, b_fin] = drain(*srv->submit(greedy_request(with_tail(2), 8, "", 2)));
  EXPECT_GE(b_fin.cached_tokens, 48);
  // cached or not, the tokens equal a cold run's
  EXPECT_EQ(b_toks, alone(with_tail(2), 8, seeded(2)));

  // second chat turn: first prompt + its reply + a new message
  auto turn2 = with_tail(1);
  turn2.insert(turn2.end(), a_toks.begin(), a_toks.end());
  for (int i = 0; i < 20; ++i) {
    turn2.push_back((i * 7 + 1) % 256);
  }
  auto [c_toks, c_fin] = drain(*srv->submit(greedy_request(turn2, 8, "", 3)));
  // the first turn computed 53 prompt + 39 reply tokens: 5 full blocks (80 tokens), two of
  // them filled during decode — more than the prompt alone could give
  EXPECT_EQ(c_fin.cached_tokens, 80);
  EXPECT_EQ(c_toks, alone(turn2, 8, seeded(3)));
  const auto st = srv->stats();
  EXPECT_GE(st.cached_prompt_tokens, 96u);
  EXPECT_GT(st.prefix_hits, 0u);
  EXPECT_EQ(st.free_blocks, st.total_blocks);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

/// Waits until `pred(snapshot)` holds (the router publishes right after it acts).
template <class Pred>
serving_snapshot snapshot_when(const local_server& srv, Pred pred) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  serving_snapshot snap = srv.snapshot();
  while (!pred(snap) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    snap = srv.snapshot();
  }
  return snap;
}

/// A server with requests running, waiting and in steps: two stages, two sequences at
/// most, six long requests; returns once the first has its first token.
std::vector<std::shared_ptr<event_stream>> busy(local_server& srv) {
  std::vector<std::shared_ptr<event_stream>> streams;
  for (int i = 0; i < 6; ++i) {
    streams.push_back(srv.submit(greedy_request(prompt(i), 400)));
  }
  auto first = streams[0]->next(std::chrono::seconds(60));
  EXPECT_TRUE(first && first->token >= 0);
  return streams;
}

/// A scheduler of 32 four-token blocks, two sequences and two micro-batches at a time,
/// 8 tokens a step, with four 50-token requests queued.
scheduler four_requests_two_at_a_time() {
  scheduler_config c;
  c.max_num_seqs = 2;
  c.micro_batches = 2;
  c.n_blocks = 32;
  c.block_size = 4;
  c.max_num_batched_tokens = 8;
  scheduler s(c, {257});
  for (uint64_t id = 1; id <= 4; ++id) {
    s.add(sched_request{id, prompt(static_cast<int>(id)), 50, {}, true});
  }
  return s;
}

TEST(actors, recovery_candidates_try_a_standby_first_then_the_neighbours) {
  const std::vector<stage_setup> running = {
      {0, 0, 4, 0, "cpu"}, {1, 4, 8, 0, "cpu"}, {2, 8, 12, 0, "cpu"}};
  auto layers = [](const recovery_candidate& c) {
    std::string out;
    for (const auto& st : c.stages) {
      out += std::to_string(st.rank) + ":" + std::to_string(st.first_layer) + "-" +
             std::to_string(st.last_layer) + " ";
    }
    return out;
  };
  // rank 3 is a standby: it takes rank 1's stage as it was
  auto c = recovery_candidates(running, {1}, 4);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(layers(c[0]), "0:0-4 3:4-8 2:8-12 ");
  EXPECT_EQ(c[0].how, "standby rank 3 takes rank 1's stage 1 (layers [4, 8))");
  EXPECT_EQ(layers(c[1]), "0:0-6 2:6-12 ");     // split between the neighbours
  EXPECT_EQ(layers(c[2]), "0:0-8 2:8-12 ");     // all to the stage before
  EXPECT_EQ(layers(c[3]), "0:0-4 2:4-12 ");     // all to the stage after
  EXPECT_EQ(c[1].derived_from, (std::vector<int32_t>{0, 2}));
  // the last stage lost, no standby: only the stage before can take it
  c = recovery_candidates(running, {2}, 3);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(layers(c[0]), "0:0-4 1:4-12 ");
  EXPECT_EQ(c[0].how, "layers [8, 12) to rank 1");
  // two ranks lost, one standby: it takes one, the other's layers merge
  c = recovery_candidates(running, {0, 1}, 4);
  ASSERT_FALSE(c.empty());
  EXPECT_EQ(layers(c[0]), "3:0-6 2:6-12 ");
  // a lost standby changes nothing; every stage-holding rank lost: nothing
  EXPECT_EQ(layers(recovery_candidates(running, {3}, 4).at(0)), "0:0-4 1:4-8 2:8-12 ");
  EXPECT_TRUE(recovery_candidates(running, {0, 1, 2}, 3).empty());
}

TEST(actors, scheduler_requeue_all_puts_running_and_in_flight_sequences_back_first_to_recompute) {
  scheduler s = four_requests_two_at_a_time();
  // sequence 2 prefilled (its whole prompt: it samples a token), 1 stays in flight; 3
  // and 4 wait
  auto first = s.next_step();
  ASSERT_TRUE(first);
  auto second = s.next_step();
  ASSERT_TRUE(second);
  s.on_step_done(second->step_id, {2}, {42});
  ASSERT_EQ(s.n_in_flight(), 1);
  s.cancel(1);  // in flight: it ends when its step returns, which it never will
  std::vector<uint64_t> replayed;
  const auto ended = s.requeue_all(replayed);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].id, 1u);
  EXPECT_EQ(ended[0].finish, finish_reason::cancelled);
  EXPECT_EQ(replayed, (std::vector<uint64_t>{2}));
  EXPECT_EQ(s.n_in_flight(), 0);
  EXPECT_EQ(s.n_running(), 0);
  EXPECT_EQ(s.n_waiting(), 3);
  EXPECT_EQ(s.n_free_blocks(), s.n_blocks());
  EXPECT_GT(s.counters().recomputed_tokens, 0u);
  s.reset_pool(16);
  EXPECT_EQ(s.n_blocks(), 16);
  // the replayed sequence goes first, with its prompt and the token it had: the next
  // step recomputes them before the waiting ones join
  auto next = s.next_step();
  ASSERT_TRUE(next);
  ASSERT_FALSE(next->slices.empty());
  EXPECT_EQ(next->slices[0].seq_id, 2u);
  EXPECT_EQ(next->slices[0].first_pos, 0);
  EXPECT_EQ(next->slices[0].draw, 1);  // its next token is its second draw
}

TEST(actors, scheduler_abort_all_forgets_waiting_running_and_in_flight_and_frees_every_block) {
  scheduler s = four_requests_two_at_a_time();
  // one sequence per micro-batch: two join (max_num_seqs), two wait
  auto first = s.next_step();
  ASSERT_TRUE(first);
  auto second = s.next_step();
  ASSERT_TRUE(second);
  s.on_step_done(second->step_id, {}, {});  // a prefill chunk back; the first stays in flight
  ASSERT_EQ(s.n_in_flight(), 1);
  ASSERT_EQ(s.n_running(), 2);
  ASSERT_EQ(s.n_waiting(), 2);
  ASSERT_LT(s.n_free_blocks(), s.n_blocks());
  EXPECT_EQ(s.abort_all(), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.n_in_flight() + s.n_running() + s.n_waiting(), 0);
  EXPECT_EQ(s.n_free_blocks(), s.n_blocks());
  // and it schedules afresh
  s.add(sched_request{9, prompt(9), 4, {}, true});
  auto next = s.next_step();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->slices.at(0).seq_id, 9u);
}

TEST(actors, a_stage_death_ends_every_request_and_returns_every_block) {
  auto o = options(2, 64);
  o.serving.max_num_seqs = 2;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  auto streams = busy(*srv);
  const auto during = srv->stats();
  EXPECT_EQ(during.running, 2);
  EXPECT_EQ(during.waiting, 4);
  EXPECT_LT(during.free_blocks, during.total_blocks);

  // what a dead rank's proxy reports to its monitors
  testing::internal::CaptureStderr();
  caf::anon_send_exit(srv->stage_actor(1), caf::exit_reason::remote_link_unreachable);
  for (auto& s : streams) {
    auto [toks, fin] = drain(*s);
    EXPECT_EQ(fin.finish, finish_reason::error);
    EXPECT_EQ(fin.error_kind, refusal::stage_down);
    EXPECT_NE(fin.error.find("stage 1 (rank 0) is down"), std::string::npos) << fin.error;
  }
  const auto after = srv->stats();
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("baton: stage 1 (rank 0) is down"), std::string::npos) << said;
  EXPECT_EQ(after.running, 0);
  EXPECT_EQ(after.waiting, 0);
  EXPECT_EQ(after.in_flight, 0);
  EXPECT_EQ(after.free_blocks, after.total_blocks);
  EXPECT_EQ(after.down_rank, 0);
  EXPECT_EQ(after.state, pipeline_state::stage_down);
  EXPECT_NE(after.down_message.find("is down"), std::string::npos) << after.down_message;
  // the snapshot says the same, without asking the router
  const auto snap = snapshot_when(*srv, [](const serving_snapshot& x) {
    return x.stats.running == 0 && x.stats.free_blocks == x.stats.total_blocks;
  });
  EXPECT_EQ(snap.stats.running, 0);
  EXPECT_EQ(snap.stats.waiting, 0);
  EXPECT_EQ(snap.stats.in_flight, 0);
  EXPECT_EQ(snap.stats.free_blocks, snap.stats.total_blocks);
  EXPECT_EQ(snap.stats.state, after.state);
  EXPECT_EQ(snap.stats.down_message, after.down_message);
  // new requests are refused by the admission, with the kind
  admission a;
  auto late = srv->submit(greedy_request(prompt(1), 4), &a);
  EXPECT_EQ(a.verdict, admit::never);
  EXPECT_EQ(a.reason, refusal::stage_down);
  EXPECT_EQ(a.message, after.down_message);
  EXPECT_EQ(drain(*late).second.error_kind, refusal::stage_down);
}

TEST(actors, a_stage_going_down_after_begin_stop_is_the_shutdown_not_a_failure) {
  auto o = options(2, 64);
  o.serving.max_num_seqs = 2;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  auto streams = busy(*srv);
  srv->begin_stop();
  (void)srv->stats();  // the router has taken the stop (its mailbox is in order)
  testing::internal::CaptureStderr();
  // even a death reads as the shutdown once the head is stopping: every rank goes
  caf::anon_send_exit(srv->stage_actor(1), caf::exit_reason::remote_link_unreachable);
  for (auto& s : streams) {
    auto [toks, fin] = drain(*s);
    EXPECT_EQ(fin.finish, finish_reason::error);
    EXPECT_EQ(fin.error, "the server is shutting down");
    EXPECT_EQ(fin.error_kind, refusal::shutting_down);
  }
  const auto after = srv->stats();
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(said.find("is down"), std::string::npos) << said;
  EXPECT_EQ(said.find("stopped"), std::string::npos) << said;
  EXPECT_EQ(after.running + after.waiting + after.in_flight, 0);
  EXPECT_EQ(after.free_blocks, after.total_blocks);
  // not a death either: under mpirun an ordered exit often reads as a lost link, and a
  // death would make the ranks skip MPI_Finalize (an improper exit for mpirun)
  EXPECT_FALSE(srv->peer_died());
  admission a;
  srv->submit(greedy_request(prompt(1), 4), &a);
  EXPECT_EQ(a.verdict, admit::never);
  EXPECT_EQ(a.reason, refusal::shutting_down);
}

TEST(actors, a_stage_that_quits_on_its_own_reads_as_stopped) {
  auto o = options(2, 64);
  o.serving.max_num_seqs = 2;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  auto streams = busy(*srv);
  testing::internal::CaptureStderr();
  // what a rank that was told to stop sends before it goes
  caf::anon_send_exit(srv->stage_actor(1), caf::exit_reason::user_shutdown);
  for (auto& s : streams) {
    auto [toks, fin] = drain(*s);
    EXPECT_EQ(fin.finish, finish_reason::error);
    EXPECT_EQ(fin.error_kind, refusal::stage_down);
    EXPECT_NE(fin.error.find("stage 1 (rank 0) stopped"), std::string::npos) << fin.error;
  }
  const auto after = srv->stats();
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(said.find("is down"), std::string::npos) << said;
  EXPECT_NE(said.find("baton: stage 1 (rank 0) stopped"), std::string::npos) << said;
  EXPECT_TRUE(srv->peer_died());  // the pipeline cannot run: its transfers are abandoned
  EXPECT_EQ(after.free_blocks, after.total_blocks);
  EXPECT_EQ(after.running + after.waiting + after.in_flight, 0);
}

TEST(actors, a_stage_leaving_after_begin_stop_is_no_death_at_all) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 64)));
  auto streams = busy(*srv);
  srv->begin_stop();
  (void)srv->stats();
  testing::internal::CaptureStderr();
  caf::anon_send_exit(srv->stage_actor(1), caf::exit_reason::user_shutdown);
  for (auto& s : streams) {
    EXPECT_EQ(drain(*s).second.error_kind, refusal::shutting_down);
  }
  (void)srv->stats();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_FALSE(srv->peer_died());  // an ordered stop: MPI may be finalized
}

TEST(actors, cancelled_by_the_stop_says_so) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 64)));
  auto r = greedy_request(prompt(4), 400);
  r.id = 43;
  auto s = srv->submit(r);
  ASSERT_TRUE(s->next(std::chrono::seconds(60)));
  srv->begin_stop();
  srv->cancel(43);
  auto [toks, fin] = drain(*s);
  EXPECT_EQ(fin.finish, finish_reason::cancelled);
  EXPECT_EQ(fin.error_kind, refusal::shutting_down);
}

TEST(actors, snapshot_follows_the_router_and_times_every_stage) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 256)));
  const auto idle = srv->snapshot();  // starts the poller
  EXPECT_EQ(idle.stats.total_blocks, 256);
  EXPECT_EQ(idle.stats.free_blocks, 256);
  ASSERT_EQ(idle.stage_step_seconds.size(), 2u);
  std::vector<std::shared_ptr<event_stream>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(srv->submit(greedy_request(prompt(i), 200)));
  }
  ASSERT_TRUE(streams[0]->next(std::chrono::seconds(60)));
  const auto running = snapshot_when(
      *srv, [](const serving_snapshot& x) { return x.stats.running == 4; });
  EXPECT_EQ(running.stats.running, 4);
  EXPECT_LT(running.stats.free_blocks, running.stats.total_blocks);
  for (auto& s : streams) {
    EXPECT_EQ(drain(*s).second.finish, finish_reason::length);
  }
  const auto st = srv->stats();
  const auto done = snapshot_when(*srv, [&](const serving_snapshot& x) {
    return x.stats.generated_tokens == st.generated_tokens && x.stage_step_seconds[0] > 0 &&
           x.stage_step_seconds[1] > 0;
  });
  EXPECT_EQ(done.stats.running, 0);
  EXPECT_EQ(done.stats.free_blocks, done.stats.total_blocks);
  EXPECT_EQ(done.stats.generated_tokens, 800u);
  EXPECT_EQ(done.stats.steps, st.steps);
  for (double sec : done.stage_step_seconds) {
    EXPECT_GT(sec, 0.0);
    EXPECT_LT(sec, 10.0);
  }
}

/// Stages over the fixture's 4 layers on rank 0's CPU, one per [first, last) pair.
std::vector<stage_setup> cpu_stages(std::vector<std::pair<int64_t, int64_t>> ranges) {
  std::vector<stage_setup> out;
  for (const auto& [first, last] : ranges) {
    out.push_back(stage_setup{0, first, last, 0, "cpu"});
  }
  return out;
}

TEST(actors, reshards_while_serving_lose_no_request_and_change_no_token) {
  // each reshard waits for a few more tokens only; what has to outlast the four reshards
  // is the number of decode steps, one token per request each: 32 requests of 64 tokens
  // (64 steps) finished before the last reshard on a loaded CI machine, 10 of 320 make
  // 320 steps (and their ~3,500 tokens of KV fit the 4,096 of the pool: no preemption)
  constexpr int n_req = 10, n_gen = 320;
  const auto want = alone_all(n_req, n_gen);
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 256)));
  const auto streams = submit_all(*srv, n_req, n_gen);
  // during generation: split to three stages, move a boundary, merge into one (one step
  // in flight), split into four (three in flight); each once more tokens have come out
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> shapes = {
      {{0, 1}, {1, 3}, {3, 4}}, {{0, 2}, {2, 4}}, {{0, 4}}, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}};
  uint64_t generated = 0;
  uint64_t epoch = 0;
  for (const auto& shape : shapes) {
    const auto snap = snapshot_when(*srv, [&](const serving_snapshot& sn) {
      return sn.stats.generated_tokens >= generated + 4;
    });
    generated = snap.stats.generated_tokens;
    const int32_t micro_batches = shape.size() == 1 ? 1 : shape.size() == 4 ? 3 : 0;
    const int32_t before = srv->options().serving.micro_batches;
    auto r = srv->reshard(cpu_stages(shape), nullptr, reshard_settings{micro_batches});
    ASSERT_TRUE(r) << r.err().message;
    EXPECT_EQ(srv->options().serving.micro_batches, micro_batches > 0 ? micro_batches : before);
    EXPECT_EQ(r->epoch, ++epoch);
    EXPECT_GT(r->kv_bytes_moved, 0u);
    EXPECT_EQ(srv->options().n_stages, static_cast<int32_t>(shape.size()));
  }
  EXPECT_LT(generated, static_cast<uint64_t>(n_req * n_gen)) << "the reshards came too late";
  expect_as_alone(streams, want);
  const auto st = srv->stats();
  EXPECT_EQ(st.epoch, epoch);
  EXPECT_FALSE(st.paused);
  EXPECT_EQ(st.free_blocks, st.total_blocks);  // everything returned
  EXPECT_EQ(st.recomputed_tokens, 0u);  // the KV moved: nothing was computed twice
}

TEST(actors, a_reshard_that_recomputes_moves_no_kv_and_changes_no_token) {
  // 48 tokens each: with 24 a loaded CI machine once finished every request between the
  // snapshot and the reshard, leaving nothing to recompute
  constexpr int n_req = 16, n_gen = 48;
  const auto want = alone_all(n_req, n_gen);
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 256)));
  const auto streams = submit_all(*srv, n_req, n_gen);
  const auto busy = snapshot_when(
      *srv, [&](const serving_snapshot& sn) { return sn.stats.generated_tokens >= 32; });
  ASSERT_LT(busy.stats.generated_tokens, static_cast<uint64_t>(n_req * n_gen));
  reshard_settings how;
  how.recompute_kv = true;
  auto r = srv->reshard(cpu_stages({{0, 1}, {1, 2}, {2, 4}}), nullptr, how);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->kv_bytes_moved, 0u);
  EXPECT_GT(r->preempted, 0u);
  expect_as_alone(streams, want);
  EXPECT_GT(srv->stats().recomputed_tokens, 0u);
}

TEST(actors, a_smaller_kv_pool_preempts_the_youngest_and_a_larger_one_changes_no_token) {
  constexpr int n_req = 32, n_gen = 24;
  const auto want = alone_all(n_req, n_gen);
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 256)));
  const auto streams = submit_all(*srv, n_req, n_gen);
  const auto busy = snapshot_when(*srv, [&](const serving_snapshot& sn) {
    return sn.stats.generated_tokens >= 64 && sn.stats.total_blocks - sn.stats.free_blocks > 40;
  });
  ASSERT_LT(busy.stats.generated_tokens, static_cast<uint64_t>(n_req * n_gen));
  // 32 blocks: one sequence of the 512-token context; fewer are refused
  auto too_small = srv->reshard(cpu_stages({{0, 2}, {2, 4}}), nullptr, reshard_settings{0, 31});
  ASSERT_FALSE(too_small);
  EXPECT_NE(too_small.err().message.find("cannot hold one sequence"), std::string::npos)
      << too_small.err().message;
  auto shrunk = srv->reshard(cpu_stages({{0, 1}, {1, 4}}), nullptr, reshard_settings{0, 32});
  ASSERT_TRUE(shrunk) << shrunk.err().message;
  EXPECT_GT(shrunk->preempted, 0u);
  EXPECT_GT(srv->stats().recomputed_tokens, 0u);
  EXPECT_EQ(shrunk->n_blocks, 32);
  EXPECT_EQ(srv->stats().total_blocks, 32);
  EXPECT_EQ(srv->options().serving.n_blocks, 32);
  snapshot_when(*srv, [&](const serving_snapshot& sn) {
    return sn.stats.generated_tokens >= busy.stats.generated_tokens + 24;
  });
  auto grown = srv->reshard(cpu_stages({{0, 3}, {3, 4}}), nullptr, reshard_settings{0, 300});
  ASSERT_TRUE(grown) << grown.err().message;
  EXPECT_EQ(grown->preempted, 0u);
  EXPECT_EQ(srv->stats().total_blocks, 300);
  expect_as_alone(streams, want);
  const auto st = srv->stats();
  EXPECT_EQ(st.free_blocks, st.total_blocks);
  EXPECT_EQ(st.epoch, 2u);
}

TEST(actors, a_reshard_that_cannot_apply_is_refused_and_serving_goes_on) {
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 64)));
  auto gap = srv->reshard(cpu_stages({{0, 1}, {2, 4}}));
  ASSERT_FALSE(gap);
  EXPECT_NE(gap.err().message.find("do not continue the pipeline at layer 1"), std::string::npos)
      << gap.err().message;
  auto to_gpu = cpu_stages({{0, 2}, {2, 4}});
  to_gpu[1].device = "cuda:0";
  auto moved = srv->reshard(to_gpu);
  ASSERT_FALSE(moved);
  EXPECT_NE(moved.err().message.find("from cpu to cuda:0"), std::string::npos)
      << moved.err().message;
  EXPECT_EQ(srv->stats().epoch, 0u);
  EXPECT_EQ(srv->options().n_stages, 2);
  auto [toks, fin] = drain(*srv->submit(greedy_request(prompt(3), 8, "", 3)));
  EXPECT_EQ(fin.finish, finish_reason::length) << fin.error;
  EXPECT_EQ(toks, alone(prompt(3), 8, seeded(3)));
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

/// Reads a stream of n choices to its end: each choice's tokens and final event.
std::vector<std::pair<std::vector<int32_t>, gen_event>> drain_choices(event_stream& s, int n) {
  std::vector<std::pair<std::vector<int32_t>, gen_event>> out(static_cast<size_t>(n));
  for (int open = n; open > 0;) {
    auto e = s.next(std::chrono::seconds(120));
    if (!e) {
      ADD_FAILURE() << "no event within 120 s";
      return out;
    }
    if (e->index < 0 || e->index >= n) {
      ADD_FAILURE() << "an event of choice " << e->index << " of " << n;
      return out;
    }
    auto& [toks, fin] = out[static_cast<size_t>(e->index)];
    if (e->token >= 0) {
      toks.push_back(e->token);
    }
    if (e->finish != finish_reason::none) {
      fin = *e;
      --open;
    }
  }
  return out;
}

TEST(actors, scheduler_choices_wait_for_the_first_prompt_then_fork_with_a_copy_of_its_last_block) {
  scheduler_config c;
  c.n_blocks = 16;
  c.block_size = 4;
  c.max_num_batched_tokens = 64;
  c.micro_batches = 1;
  scheduler s(c, {257});
  const auto p = prompt(3);  // 1 + 5 + 21 % 23 = 27 tokens: 6 full blocks and 3 more
  ASSERT_EQ(p.size(), 27u);
  for (uint64_t id = 1; id <= 3; ++id) {
    sched_request r{id, p, 8, {}, true};
    r.fork_of = id > 1 ? 1 : 0;
    s.add(std::move(r));
  }
  EXPECT_EQ(s.n_waiting(), 3);
  auto prefill = s.next_step();
  ASSERT_TRUE(prefill);
  ASSERT_EQ(prefill->slices.size(), 1u);  // the choices wait for it
  EXPECT_EQ(prefill->slices[0].tokens.size(), p.size());
  EXPECT_TRUE(prefill->copy_from.empty());
  EXPECT_EQ(s.n_waiting(), 2);
  EXPECT_FALSE(s.next_step());
  s.on_step_done(prefill->step_id, {1}, {42});
  // both forked: the 26 shared positions are 6 shared blocks and a copied seventh
  EXPECT_EQ(s.n_waiting(), 0);
  EXPECT_EQ(s.n_running(), 3);
  EXPECT_EQ(s.counters().forks, 2u);
  EXPECT_EQ(s.counters().forked_tokens, 52u);
  auto decode = s.next_step();
  ASSERT_TRUE(decode);
  ASSERT_EQ(decode->slices.size(), 3u);
  const auto& parent = decode->slices[0];
  ASSERT_EQ(decode->copy_from.size(), 2u);
  ASSERT_EQ(decode->copy_to.size(), 2u);
  for (size_t i = 1; i < 3; ++i) {
    const auto& child = decode->slices[i];
    EXPECT_EQ(child.first_pos, 26);
    EXPECT_EQ(child.tokens, std::vector<int32_t>{p.back()});  // the prompt's last token
    EXPECT_TRUE(child.want_token);
    EXPECT_EQ(child.draw, 0);
    ASSERT_EQ(child.block_table.size(), 7u);
    for (size_t b = 0; b < 6; ++b) {
      EXPECT_EQ(child.block_table[b], parent.block_table[b]);
    }
    EXPECT_EQ(decode->copy_from[i - 1], parent.block_table[6]);
    EXPECT_EQ(decode->copy_to[i - 1], child.block_table[6]);
  }
  EXPECT_NE(decode->copy_to[0], decode->copy_to[1]);
  // the copies ride once
  s.on_step_done(decode->step_id, {1, 2, 3}, {5, 6, 7});
  auto next = s.next_step();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->copy_from.empty());
  s.abort_all();
  EXPECT_EQ(s.n_free_blocks(), s.n_blocks());
}

TEST(actors, scheduler_choices_of_a_first_that_ends_before_its_prompt_run_on_their_own) {
  scheduler_config c;
  c.n_blocks = 16;
  c.block_size = 4;
  c.max_num_batched_tokens = 8;  // the prompt takes several steps
  c.micro_batches = 1;
  scheduler s(c, {257});
  const auto p = prompt(3);
  for (uint64_t id = 1; id <= 2; ++id) {
    sched_request r{id, p, 8, {}, true};
    r.fork_of = id > 1 ? 1 : 0;
    s.add(std::move(r));
  }
  auto chunk = s.next_step();
  ASSERT_TRUE(chunk);
  s.on_step_done(chunk->step_id, {}, {});
  ASSERT_TRUE(s.cancel(1));
  EXPECT_EQ(s.n_waiting(), 1);
  auto own = s.next_step();
  ASSERT_TRUE(own);
  ASSERT_EQ(own->slices.size(), 1u);
  EXPECT_EQ(own->slices[0].seq_id, 2u);
  // its own prefill, after the two blocks the first computed and left in the prefix cache
  EXPECT_EQ(own->slices[0].first_pos, 8);
  EXPECT_EQ(own->slices[0].tokens.size(), 8u);
  EXPECT_EQ(s.counters().forks, 0u);
}

TEST(actors, n_choices_fork_from_one_prefill_and_each_gives_what_its_seed_gives_alone) {
  constexpr int n = 4, n_gen = 12;
  // prompt lengths that end inside a block (a copy) and just past one (none)
  for (int which : {3, 7}) {
    const auto p = prompt(which);
    std::vector<std::vector<int32_t>> want;
    for (int i = 0; i < n; ++i) {
      want.push_back(alone(p, n_gen, seeded(which + i)));
    }
    EXPECT_NE(want[0], want[1]) << "distinct seeds should draw differently";
    for (int stages : {1, 2}) {
      auto srv = std::move(*local_server::create(fixture().m, fixture().tok,
                                                 options(stages, 64)));
      auto r = greedy_request(p, n_gen, "", which);  // seed 1000 + which for choice 0
      r.n = n;
      admission a;
      auto stream = srv->submit(r, &a);
      ASSERT_EQ(a.verdict, admit::ok) << a.message;
      const auto got = drain_choices(*stream, n);
      for (int i = 0; i < n; ++i) {
        const auto& [toks, fin] = got[static_cast<size_t>(i)];
        EXPECT_EQ(fin.finish, finish_reason::length) << fin.error;
        EXPECT_EQ(toks, want[static_cast<size_t>(i)])
            << "choice " << i << ", prompt of " << p.size() << ", " << stages << " stages";
        EXPECT_EQ(fin.prompt_tokens, static_cast<int32_t>(p.size()));
      }
      const auto st = srv->stats();
      EXPECT_EQ(st.forks, static_cast<uint64_t>(n - 1));
      EXPECT_EQ(st.forked_tokens, static_cast<uint64_t>((n - 1) * (p.size() - 1)));
      EXPECT_EQ(st.prompt_tokens, static_cast<uint64_t>(n * p.size()));
      EXPECT_EQ(st.free_blocks, st.total_blocks);
    }
  }
}

TEST(actors, n_choices_under_preemption_and_beside_other_requests_lose_nothing) {
  constexpr int n = 3, n_gen = 48;
  // 16 blocks of 16 tokens: the choices and the others do not all fit at full length
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 16)));
  std::vector<std::shared_ptr<event_stream>> multi;
  std::vector<std::shared_ptr<event_stream>> single;
  for (int q = 0; q < 3; ++q) {
    auto r = greedy_request(prompt(q), n_gen, "", q * 10);
    r.n = n;
    multi.push_back(srv->submit(r));
    single.push_back(srv->submit(greedy_request(prompt(q + 5), n_gen, "", q + 5)));
  }
  for (int q = 0; q < 3; ++q) {
    const auto got = drain_choices(*multi[static_cast<size_t>(q)], n);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(got[static_cast<size_t>(i)].first, alone(prompt(q), n_gen, seeded(q * 10 + i)))
          << "request " << q << " choice " << i;
    }
    EXPECT_EQ(drain(*single[static_cast<size_t>(q)]).first,
              alone(prompt(q + 5), n_gen, seeded(q + 5)));
  }
  const auto st = srv->stats();
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_EQ(st.free_blocks, st.total_blocks);
}

TEST(actors, n_choices_are_counted_by_admission_and_cancelled_together) {
  auto o = options(1, 256);
  o.serving.max_num_seqs = 4;
  o.serving.max_queue = 2;
  o.serving.max_per_key = 3;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  admission a;
  auto r = greedy_request(prompt(1), 4);
  r.n = 5;  // more than run at once
  srv->submit(r, &a);
  EXPECT_EQ(a.verdict, admit::never);
  EXPECT_EQ(a.reason, refusal::invalid);
  EXPECT_NE(a.message.find("n (5) must be between 1 and 4"), std::string::npos) << a.message;
  // a key's quota counts sequences: 3 choices fill it
  auto big = greedy_request(prompt(2), 400, "alice");
  big.n = 3;
  admission ok;
  auto h = srv->submit(big, &ok);
  ASSERT_EQ(ok.verdict, admit::ok) << ok.message;
  admission quota;
  srv->submit(greedy_request(prompt(3), 4, "alice"), &quota);
  EXPECT_EQ(quota.reason, refusal::key_quota) << quota.message;
  // and the queue: 3 running + 4 more exceed max_num_seqs + max_queue = 6
  auto four = greedy_request(prompt(4), 4, "bob");
  four.n = 4;
  admission full;
  srv->submit(four, &full);
  EXPECT_EQ(full.reason, refusal::queue_full) << full.message;
  // the request's id cancels every choice
  auto first = h->next(std::chrono::seconds(60));
  ASSERT_TRUE(first);
  srv->cancel(first->request_id);
  int cancelled = first->finish == finish_reason::cancelled ? 1 : 0;
  for (;;) {
    auto e = h->next(std::chrono::seconds(60));
    ASSERT_TRUE(e);
    if (e->finish != finish_reason::none) {
      EXPECT_EQ(e->finish, finish_reason::cancelled);
      if (++cancelled == 3) {
        break;
      }
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto st = srv->stats();
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.free_blocks, st.total_blocks);
  admission again;
  auto b = srv->submit(greedy_request(prompt(3), 4, "alice"), &again);
  EXPECT_EQ(again.verdict, admit::ok) << again.message;  // the quota came back
  drain(*b);
}

}  // namespace
}  // namespace baton
