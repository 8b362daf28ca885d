// The actor system in one process (shards, router, admission) on a fixture model with a
// byte-level vocabulary: concurrent requests (seeded sampling) give exactly the tokens they
// give alone, with
// 1, 2 and 4 stages and under preemption; stages overlap; admission refuses with reasons;
// cancel returns every block.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "actors/local_server.hpp"
#include "runtime/engine.hpp"
#include "runtime/model_builder.hpp"

namespace baton {
namespace {

/// 256 byte tokens in GPT-2's byte-to-unicode form, then BOS and <|eot_id|>.
vocab_spec byte_vocab() {
  vocab_spec v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    const uint32_t cpt = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    std::string s;
    if (cpt < 0x80) {
      s.push_back(static_cast<char>(cpt));
    } else {
      s.push_back(static_cast<char>(0xc0 | (cpt >> 6)));
      s.push_back(static_cast<char>(0x80 | (cpt & 0x3f)));
    }
    v.tokens.push_back(s);
    v.token_types.push_back(1);
  }
  v.tokens.push_back("<|begin_of_text|>");
  v.token_types.push_back(3);
  v.tokens.push_back("<|eot_id|>");
  v.token_types.push_back(3);
  v.bos_id = 256;
  v.eos_id = 257;
  return v;
}

struct fixture_model {
  std::shared_ptr<std::vector<std::byte>> bytes;
  std::shared_ptr<const model> m;
  std::shared_ptr<const tokenizer> tok;
};

const fixture_model& fixture() {
  static const fixture_model f = [] {
    fixture_model out;
    build_options o;
    o.shape.n_vocab = 258;
    o.shape.n_embd = 128;
    o.shape.n_ff = 192;
    o.shape.n_layer = 4;
    o.shape.n_head = 4;
    o.shape.n_head_kv = 2;
    o.type = ggml_type::q8_0;
    const auto v = byte_vocab();
    auto w = build_model(o, &v);
    BATON_ASSERT(w.ok());
    out.bytes = std::make_shared<std::vector<std::byte>>(w->to_bytes());
    auto file = gguf_file::parse(out.bytes->data(), out.bytes->size(), "fixture");
    BATON_ASSERT(file.ok());
    out.m = *model::from_file(std::move(*file));
    out.tok = std::make_shared<tokenizer>(std::move(*tokenizer::create(v)));
    return out;
  }();
  return f;
}

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
    out.push_back(smp.sample(l, {}));
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
    if (!e->finish_reason.empty()) {
      return {toks, *e};
    }
  }
}

server_options options(int stages, int n_blocks = 0) {
  server_options o;
  o.n_stages = stages;
  o.n_threads = 2;
  o.n_ctx = 512;
  o.n_blocks = n_blocks;
  o.max_num_batched_tokens = 64;
  return o;
}

TEST(actors, concurrent_requests_give_the_tokens_they_give_alone) {
  constexpr int n_req = 32, n_gen = 10;
  std::vector<std::vector<int32_t>> want;
  for (int i = 0; i < n_req; ++i) {
    want.push_back(alone(prompt(i), n_gen, seeded(i)));
  }
  std::set<int32_t> distinct(want[0].begin(), want[0].end());
  EXPECT_GT(distinct.size(), 3u) << "the fixture should not repeat one token";
  for (int stages : {1, 2, 4}) {
    auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(stages, 256)));
    std::vector<std::shared_ptr<event_stream>> streams;
    for (int i = 0; i < n_req; ++i) {
      streams.push_back(srv->submit(greedy_request(prompt(i), n_gen, "", i)));
    }
    for (int i = 0; i < n_req; ++i) {
      auto [toks, fin] = drain(*streams[static_cast<size_t>(i)]);
      EXPECT_EQ(fin.finish_reason, "length") << fin.error;
      EXPECT_EQ(toks, want[static_cast<size_t>(i)]) << "request " << i << ", " << stages
                                                   << " stages";
    }
    const auto st = srv->stats();
    EXPECT_EQ(st.free_blocks, st.total_blocks);  // everything returned
  }
}

TEST(actors, preemption_under_a_small_kv_budget_loses_nothing) {
  constexpr int n_req = 16, n_gen = 64;
  std::vector<std::vector<int32_t>> want;
  for (int i = 0; i < n_req; ++i) {
    want.push_back(alone(prompt(i), n_gen, seeded(i)));
  }
  // 16 blocks of 16 tokens: room for about 3 of the 16 sequences at full length
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, options(2, 16)));
  std::vector<std::shared_ptr<event_stream>> streams;
  for (int i = 0; i < n_req; ++i) {
    streams.push_back(srv->submit(greedy_request(prompt(i), n_gen, "", i)));
  }
  for (int i = 0; i < n_req; ++i) {
    auto [toks, fin] = drain(*streams[static_cast<size_t>(i)]);
    EXPECT_EQ(fin.finish_reason, "length") << fin.error;
    EXPECT_EQ(toks, want[static_cast<size_t>(i)]) << "request " << i;
  }
  const auto st = srv->stats();
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_EQ(st.free_blocks, st.total_blocks);
  std::printf("preemptions: %llu\n", static_cast<unsigned long long>(st.preemptions));
}

TEST(actors, two_stages_overlap_with_two_micro_batches) {
  auto o = options(2, 256);
  o.micro_batches = 2;
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
  o.max_num_seqs = 2;
  o.max_queue = 1;
  o.max_per_key = 0;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  // an over-long request names both numbers
  admission a;
  auto s = srv->submit(greedy_request(prompt(1), 600), &a);
  EXPECT_EQ(a.decision, "never");
  EXPECT_NE(a.reason.find("max_tokens (600)"), std::string::npos) << a.reason;
  EXPECT_NE(a.reason.find("context length (512)"), std::string::npos) << a.reason;
  auto [toks, fin] = drain(*s);
  EXPECT_EQ(fin.finish_reason, "error");

  // three long requests fill max_num_seqs + max_queue; the fourth is refused
  std::vector<std::shared_ptr<event_stream>> held;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = greedy_request(prompt(i), 400);
    r.id = 1000 + static_cast<uint64_t>(i);
    ids.push_back(r.id);
    admission ok;
    held.push_back(srv->submit(r, &ok));
    EXPECT_EQ(ok.decision, "ok") << ok.reason;
  }
  admission full;
  srv->submit(greedy_request(prompt(5), 4), &full);
  EXPECT_EQ(full.decision, "never");
  EXPECT_EQ(full.reason, "queue full");
  EXPECT_GT(full.retry_after_s, 0);
  for (auto id : ids) {
    srv->cancel(id);
  }
  for (auto& h : held) {
    EXPECT_EQ(drain(*h).second.finish_reason, "cancelled");
  }
}

TEST(actors, per_key_quota_holds_while_other_keys_get_through) {
  auto o = options(1, 256);
  o.max_per_key = 1;
  auto srv = std::move(*local_server::create(fixture().m, fixture().tok, o));
  auto r = greedy_request(prompt(1), 300, "alice");
  r.id = 77;
  admission first, second, other;
  auto h = srv->submit(r, &first);
  srv->submit(greedy_request(prompt(2), 4, "alice"), &second);
  auto b = srv->submit(greedy_request(prompt(3), 4, "bob"), &other);
  EXPECT_EQ(first.decision, "ok");
  EXPECT_EQ(second.decision, "never");
  EXPECT_NE(second.reason.find("key quota"), std::string::npos) << second.reason;
  EXPECT_EQ(other.decision, "ok");
  EXPECT_EQ(drain(*b).second.finish_reason, "length");
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
  EXPECT_EQ(fin.finish_reason, "cancelled");
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
