// runtime/serving/prefix_cache: the router's prefix caching over the KV block allocator.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "runtime/serving/prefix_cache.hpp"

namespace baton {
namespace {

constexpr int32_t bs = 16;

/// n tokens counting up from `first` (distinct runs for distinct `first`).
std::vector<int32_t> run(int32_t first, int32_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    t[static_cast<size_t>(i)] = first + i;
  }
  return t;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(prefix_cache, second_sequence_shares_a_three_block_prefix) {
  prefix_cache a(32, bs, true);
  const auto prefix = run(1000, 3 * bs);
  const auto p1 = cat(prefix, run(1, 10));
  const auto p2 = cat(prefix, run(500, 7));

  const auto r1 = a.allocate_prompt(1, p1);
  ASSERT_EQ(r1.status, alloc_status::ok);
  EXPECT_EQ(r1.n_cached_tokens, 0);
  ASSERT_EQ(a.table(1).size(), 4u);
  a.commit_full_blocks(1, p1);  // prefill done
  EXPECT_EQ(a.n_committed_blocks(1), 3);
  a.check_invariants();

  EXPECT_EQ(a.lookup(p2), 48);
  EXPECT_EQ(a.can_allocate_prompt(p2), alloc_status::ok);
  const auto r2 = a.allocate_prompt(2, p2);
  ASSERT_EQ(r2.status, alloc_status::ok);
  EXPECT_EQ(r2.n_cached_tokens, 48);
  const auto& t1 = a.table(1);
  const auto& t2 = a.table(2);
  ASSERT_EQ(t2.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(t1[i], t2[i]) << "block " << i;
    EXPECT_EQ(a.ref_count(t1[i]), 2);
    EXPECT_TRUE(a.is_cached(t1[i]));
  }
  EXPECT_NE(t1[3], t2[3]);
  EXPECT_EQ(a.ref_count(t2[3]), 1);
  EXPECT_EQ(a.n_committed_blocks(2), 3);  // the shared blocks count as committed
  EXPECT_EQ(a.n_used(), 5);
  a.check_invariants();

  const auto s = a.stats();
  EXPECT_EQ(s.n_prompt_tokens_looked_up, static_cast<int64_t>(p1.size() + p2.size()));
  EXPECT_EQ(s.n_cached_prompt_tokens, 48);
  EXPECT_EQ(s.n_block_hits, 3);
  EXPECT_EQ(s.n_evictions, 0);
  EXPECT_EQ(s.n_used, 5);
  EXPECT_EQ(s.n_free, 27);
  EXPECT_EQ(s.n_evictable, 0);

  // One holder going away keeps the shared blocks in use by the other.
  a.free(1);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.ref_count(t2[i]), 1);
  }
  EXPECT_EQ(a.n_evictable(), 0);
  a.free(2);
  EXPECT_EQ(a.n_evictable(), 3);
  EXPECT_EQ(a.n_free(), 29);
  a.check_invariants();
}

TEST(prefix_cache, a_fully_cached_prompt_still_computes_its_last_token) {
  prefix_cache a(16, bs, true);
  const auto p = run(7, 3 * bs);
  ASSERT_EQ(a.allocate_prompt(1, p).status, alloc_status::ok);
  a.commit_full_blocks(1, p);
  const auto first = a.table(1);
  a.free(1);

  // All three blocks are cached, yet the last one is recomputed so logits exist.
  EXPECT_EQ(a.lookup(p), 32);
  const auto r = a.allocate_prompt(2, p);
  ASSERT_EQ(r.status, alloc_status::ok);
  EXPECT_EQ(r.n_cached_tokens, 32);
  ASSERT_EQ(a.table(2).size(), 3u);
  EXPECT_EQ(a.table(2)[0], first[0]);
  EXPECT_EQ(a.table(2)[1], first[1]);
  EXPECT_EQ(a.ref_count(a.table(2)[2]), 1);
  a.check_invariants();

  // One token more and every full block hits; a one-block prompt never hits.
  const auto longer = cat(p, {9});
  EXPECT_EQ(a.lookup(longer), 48);
  EXPECT_EQ(a.lookup(std::span(p).first(bs)), 0);
  EXPECT_EQ(a.lookup(std::span(p).first(bs + 1)), 16);
}

TEST(prefix_cache, chained_hash_depends_on_the_whole_prefix) {
  const auto p = run(100, bs);
  const auto q = run(300, bs);
  const auto x = run(200, bs);
  const prefix_hash root;
  EXPECT_NE(chain_hash(chain_hash(root, p), x), chain_hash(root, x));
  EXPECT_NE(chain_hash(chain_hash(root, p), x), chain_hash(chain_hash(root, q), x));
  EXPECT_EQ(chain_hash(chain_hash(root, p), x), chain_hash(chain_hash(root, p), x));
  EXPECT_NE(chain_hash(root, x).lo, chain_hash(root, x).hi);
  // Order within a block matters.
  auto x2 = x;
  std::swap(x2[0], x2[1]);
  EXPECT_NE(chain_hash(root, x), chain_hash(root, x2));

  prefix_cache a(32, bs, true);
  const auto seq1 = cat(cat(p, x), {1});  // x at block 1 after p
  ASSERT_EQ(a.allocate_prompt(1, seq1).status, alloc_status::ok);
  a.commit_full_blocks(1, seq1);
  a.free(1);
  // x at block 0, or after another prefix: no hit; p then something else: p only.
  EXPECT_EQ(a.lookup(cat(x, {1})), 0);
  EXPECT_EQ(a.lookup(cat(cat(q, x), {1})), 0);
  EXPECT_EQ(a.lookup(cat(cat(p, q), {1})), 16);
  EXPECT_EQ(a.lookup(seq1), 32);
}

TEST(prefix_cache, second_chat_turn_hits_the_blocks_filled_during_decode) {
  prefix_cache a(32, bs, true);
  const auto prompt = run(1, 40);  // 2.5 blocks
  ASSERT_EQ(a.allocate_prompt(1, prompt).status, alloc_status::ok);
  std::vector<int32_t> fed = prompt;  // tokens whose KV is written
  a.commit_full_blocks(1, fed);
  EXPECT_EQ(a.n_committed_blocks(1), 2);

  // Decode 30 tokens: each step reserves one slot, writes its KV, then commits.
  for (int32_t i = 0; i < 30; ++i) {
    ASSERT_TRUE(a.append_slots(1, 1));
    fed.push_back(5000 + i);
    a.commit_full_blocks(1, fed);
    a.check_invariants();
  }
  EXPECT_EQ(a.n_tokens(1), 70);
  EXPECT_EQ(a.n_committed_blocks(1), 4);  // 70 tokens: 4 full blocks
  const auto first_table = a.table(1);
  a.free(1);

  // Turn 2: the whole conversation so far plus the new message.
  const auto turn2 = cat(fed, run(9000, 20));
  const auto r = a.allocate_prompt(2, turn2);
  ASSERT_EQ(r.status, alloc_status::ok);
  EXPECT_EQ(r.n_cached_tokens, 64);  // blocks 2 and 3 were filled by the reply
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(a.table(2)[i], first_table[i]) << "block " << i;
  }
  EXPECT_EQ(a.stats().n_block_hits, 4);
  a.check_invariants();
}

TEST(prefix_cache, concurrent_identical_prompts_keep_one_cached_copy) {
  prefix_cache a(16, bs, true);
  const auto p = run(1, 2 * bs + 3);
  ASSERT_EQ(a.allocate_prompt(1, p).status, alloc_status::ok);
  ASSERT_EQ(a.allocate_prompt(2, p).status, alloc_status::ok);  // before 1 committed
  EXPECT_EQ(a.n_used(), 6);
  a.commit_full_blocks(1, p);
  a.commit_full_blocks(2, p);
  EXPECT_TRUE(a.is_cached(a.table(1)[0]));
  EXPECT_FALSE(a.is_cached(a.table(2)[0]));
  a.check_invariants();
  a.free(2);
  EXPECT_EQ(a.n_free(), 13);  // the duplicates are not kept
  a.free(1);
  EXPECT_EQ(a.n_evictable(), 2);
  EXPECT_EQ(a.n_free(), 14);
  a.check_invariants();
}

TEST(prefix_cache, evicts_the_least_recently_used_block_first) {
  constexpr int32_t b4 = 4;
  prefix_cache a(8, b4, true);
  const auto pa = run(100, 2 * b4 + 1);  // 3 blocks, 2 of them full
  const auto pb = run(200, 2 * b4 + 1);
  ASSERT_EQ(a.allocate_prompt(1, pa).status, alloc_status::ok);
  a.commit_full_blocks(1, pa);
  const auto ta = a.table(1);
  ASSERT_EQ(a.allocate_prompt(2, pb).status, alloc_status::ok);
  a.commit_full_blocks(2, pb);
  const auto tb = a.table(2);
  a.free(1);
  a.free(2);
  EXPECT_EQ(a.n_evictable(), 4);
  EXPECT_EQ(a.n_free(), 4);

  // Use A again (a hit): it becomes more recent than B.
  ASSERT_EQ(a.allocate_prompt(3, pa).n_cached_tokens, 8);
  a.free(3);
  a.check_invariants();
  EXPECT_EQ(a.stats().n_evictions, 0);

  // 5 blocks: the 4 free ones first, then the LRU one: B's tail before B's head.
  ASSERT_EQ(a.allocate_prompt(4, run(300, 5 * b4)).status, alloc_status::ok);
  EXPECT_EQ(a.stats().n_evictions, 1);
  EXPECT_EQ(a.table(4).back(), tb[1]);
  EXPECT_FALSE(a.is_cached(tb[1]));
  EXPECT_TRUE(a.is_cached(tb[0]));
  EXPECT_EQ(a.lookup(pb), 4);
  EXPECT_EQ(a.lookup(pa), 8);
  ASSERT_TRUE(a.grow(4, 6 * b4));
  EXPECT_EQ(a.table(4).back(), tb[0]);
  EXPECT_EQ(a.lookup(pb), 0);
  EXPECT_EQ(a.lookup(pa), 8);
  ASSERT_TRUE(a.grow(4, 7 * b4));
  EXPECT_EQ(a.table(4).back(), ta[1]);
  EXPECT_EQ(a.lookup(pa), 4);
  EXPECT_EQ(a.stats().n_evictions, 3);
  EXPECT_EQ(a.n_evictable(), 1);
  a.check_invariants();
}

TEST(prefix_cache, a_resized_pool_keeps_live_tables_and_the_most_recent_cache) {
  constexpr int32_t b4 = 4;
  prefix_cache a(16, b4, true);
  const auto pa = run(100, 2 * b4 + 1);  // 3 blocks, 2 full
  const auto pb = run(200, 2 * b4 + 1);
  const auto pc = run(300, 3 * b4 + 2);  // live: 4 blocks
  for (auto [id, p] : {std::pair{1, pa}, std::pair{2, pb}}) {
    ASSERT_EQ(a.allocate_prompt(static_cast<uint64_t>(id), p).status, alloc_status::ok);
    a.commit_full_blocks(static_cast<uint64_t>(id), p);
  }
  a.free(1);
  a.free(2);  // B's blocks are the more recent
  ASSERT_EQ(a.allocate_prompt(3, pc).status, alloc_status::ok);
  a.commit_full_blocks(3, pc);
  const auto old_table = a.table(3);
  ASSERT_EQ(a.n_used(), 4);
  ASSERT_EQ(a.n_evictable(), 4);

  // 6 blocks: C's 4, then B's 2 (most recent); A's are evicted
  std::vector<int32_t> from;
  std::vector<int32_t> to;
  prefix_cache small = a.resized(6, from, to);
  small.check_invariants();
  EXPECT_EQ(small.n_blocks(), 6);
  EXPECT_EQ(small.n_used(), 4);
  EXPECT_EQ(small.n_evictable(), 2);
  EXPECT_EQ(small.n_free(), 0);
  EXPECT_EQ(small.n_tokens(3), a.n_tokens(3));
  EXPECT_EQ(small.lookup(pb), 8);
  EXPECT_EQ(small.lookup(pa), 0);
  EXPECT_EQ(small.stats().n_evictions, a.stats().n_evictions + 2);
  ASSERT_EQ(from.size(), 6u);
  ASSERT_EQ(to.size(), 6u);
  // C's blocks get ids 0-3, each where its table says
  for (size_t i = 0; i < old_table.size(); ++i) {
    const auto k = std::find(from.begin(), from.end(), old_table[i]) - from.begin();
    EXPECT_EQ(small.table(3)[i], to[static_cast<size_t>(k)]) << "block " << i;
    EXPECT_LT(small.table(3)[i], 4);
  }
  // once C is done, the kept cache serves a new sequence
  small.free(3);
  const auto hit = small.allocate_prompt(4, cat(pb, run(9, 3)));
  ASSERT_EQ(hit.status, alloc_status::ok);
  EXPECT_EQ(hit.n_cached_tokens, 8);
  small.free(4);
  small.check_invariants();
  EXPECT_EQ(small.n_used(), 0);

  // larger: everything kept, room to spare
  from.clear();
  to.clear();
  prefix_cache large = a.resized(40, from, to);
  large.check_invariants();
  EXPECT_EQ(large.n_blocks(), 40);
  EXPECT_EQ(large.n_evictable(), 4);
  EXPECT_EQ(large.n_free(), 40 - 8);
  EXPECT_EQ(large.lookup(pa), 8);
  EXPECT_EQ(large.lookup(pb), 8);
  EXPECT_EQ(from.size(), 8u);
}

TEST(prefix_cache, freeing_everything_returns_every_block) {
  for (bool caching : {true, false}) {
    prefix_cache a(40, bs, caching);
    for (uint64_t s = 0; s < 5; ++s) {
      const auto p = cat(run(1, 2 * bs), run(100 * static_cast<int32_t>(s) + 1000, 20));
      ASSERT_EQ(a.allocate_prompt(s, p).status, alloc_status::ok);
      a.commit_full_blocks(s, p);
      ASSERT_TRUE(a.append_slots(s, 30));
    }
    a.check_invariants();
    for (uint64_t s = 0; s < 5; ++s) {
      a.free(s);
      a.check_invariants();
    }
    EXPECT_EQ(a.n_used(), 0);
    EXPECT_EQ(a.n_available(), 40);
    if (caching) {
      // The shared 2-block prefix + each sequence's one full private block.
      EXPECT_EQ(a.n_evictable(), 2 + 5);
      EXPECT_EQ(a.stats().n_block_hits, 4 * 2);
      a.reset_cache();
      a.check_invariants();
    } else {
      EXPECT_EQ(a.stats().n_prompt_tokens_looked_up, 0);
      EXPECT_EQ(a.stats().n_block_hits, 0);
    }
    EXPECT_EQ(a.n_free(), 40);
    EXPECT_EQ(a.n_evictable(), 0);
  }
}

TEST(prefix_cache, can_allocate_counts_evictable_blocks_as_available) {
  constexpr int32_t b4 = 4;
  prefix_cache a(8, b4, true);
  const auto p = run(1, 8 * b4);
  ASSERT_EQ(a.allocate_prompt(1, p).status, alloc_status::ok);
  EXPECT_EQ(a.can_allocate(1), alloc_status::later);
  EXPECT_EQ(a.allocate_prompt(2, run(500, 1)).status, alloc_status::later);
  EXPECT_FALSE(a.contains(2));
  a.commit_full_blocks(1, p);
  a.free(1);
  EXPECT_EQ(a.n_free(), 0);
  EXPECT_EQ(a.n_evictable(), 8);
  EXPECT_EQ(a.can_allocate(8 * b4), alloc_status::ok);
  EXPECT_EQ(a.can_allocate(8 * b4 + 1), alloc_status::never);
  EXPECT_EQ(a.allocate_prompt(3, run(1, 8 * b4 + 1)).status, alloc_status::never);

  // Hold a 4-block prefix; a prompt sharing it needs fewer fresh blocks than its size.
  const auto holder = run(1, 4 * b4 + 1);  // 4 hits + 1 fresh
  ASSERT_EQ(a.allocate_prompt(4, holder).n_cached_tokens, 16);
  EXPECT_EQ(a.n_available(), 3);
  const auto sharer = cat(run(1, 4 * b4), run(900, 3 * b4));  // 7 blocks, 4 in use
  EXPECT_EQ(a.can_allocate(static_cast<int64_t>(sharer.size())), alloc_status::later);
  EXPECT_EQ(a.can_allocate_prompt(sharer), alloc_status::ok);
  const auto r = a.allocate_prompt(5, sharer);
  EXPECT_EQ(r.status, alloc_status::ok);
  EXPECT_EQ(r.n_cached_tokens, 16);
  EXPECT_EQ(a.n_available(), 0);
  a.check_invariants();
}

TEST(prefix_cache, growth_fails_when_blocks_run_out) {
  prefix_cache a(4, bs, true);
  ASSERT_EQ(a.allocate_prompt(1, run(1, 2 * bs)).status, alloc_status::ok);
  ASSERT_EQ(a.allocate_prompt(2, run(100, 2 * bs)).status, alloc_status::ok);
  EXPECT_EQ(a.n_available(), 0);
  EXPECT_FALSE(a.append_slots(1, 1));  // the router preempts now
  EXPECT_EQ(a.table(1).size(), 2u);
  EXPECT_EQ(a.n_tokens(1), 2 * bs);
  EXPECT_TRUE(a.grow(1, 2 * bs));  // within the reserved slots: nothing needed
  a.check_invariants();
  a.free(2);  // preempted (not committed: nothing stays cached)
  EXPECT_EQ(a.n_free(), 2);
  EXPECT_FALSE(a.grow(1, 4 * bs + 1));  // all or nothing
  EXPECT_EQ(a.table(1).size(), 2u);
  EXPECT_TRUE(a.append_slots(1, 1));
  EXPECT_EQ(a.table(1).size(), 3u);
  a.check_invariants();
}

TEST(prefix_cache, a_fork_shares_the_full_blocks_and_copies_the_partial_one) {
  for (bool caching : {true, false}) {
    prefix_cache a(16, bs, caching);
    // a 40-token prompt, computed by the parent: 2 full blocks and 8 tokens of a third
    const auto prompt = run(1, 40);
    ASSERT_EQ(a.allocate_prompt(1, prompt).status, alloc_status::ok);
    a.commit_full_blocks(1, prompt);
    const auto parent = a.table(1);
    ASSERT_EQ(parent.size(), 3u);
    const int32_t free_before = a.n_available();
    // the child shares positions [0, 39) and computes the last prompt token itself
    const auto f = a.fork(1, 2, 39, 40);
    ASSERT_EQ(f.status, alloc_status::ok);
    const auto& child = a.table(2);
    ASSERT_EQ(child.size(), 3u);
    EXPECT_EQ(child[0], parent[0]);
    EXPECT_EQ(child[1], parent[1]);
    EXPECT_NE(child[2], parent[2]);  // its own: written from position 39 on
    EXPECT_EQ(f.copy_from, parent[2]);
    EXPECT_EQ(f.copy_to, child[2]);
    EXPECT_EQ(a.ref_count(parent[0]), 2);
    EXPECT_EQ(a.ref_count(parent[2]), 1);
    EXPECT_EQ(a.n_available(), free_before - 1) << "caching " << caching;
    EXPECT_EQ(a.n_committed_blocks(2), caching ? 2 : 0);
    a.check_invariants();
    // the child grows and commits its own blocks; the parent ends first
    ASSERT_TRUE(a.grow(2, 49));
    a.commit_full_blocks(2, cat(prompt, run(900, 8)));
    a.check_invariants();
    a.free(1);
    EXPECT_EQ(a.ref_count(parent[0]), 1);
    a.check_invariants();
    a.free(2);
    a.check_invariants();
    EXPECT_EQ(a.n_used(), 0);
    EXPECT_EQ(a.n_available(), 16);
  }
}

TEST(prefix_cache, a_fork_on_a_block_boundary_copies_nothing_and_a_full_pool_changes_nothing) {
  prefix_cache a(3, bs, true);
  const auto prompt = run(7, bs + 1);  // the child shares exactly one full block
  ASSERT_EQ(a.allocate_prompt(1, prompt).status, alloc_status::ok);
  a.commit_full_blocks(1, prompt);
  const auto f = a.fork(1, 2, bs, bs + 1);
  ASSERT_EQ(f.status, alloc_status::ok);
  EXPECT_EQ(f.copy_from, -1);
  EXPECT_EQ(f.copy_to, -1);
  EXPECT_EQ(a.table(2)[0], a.table(1)[0]);
  EXPECT_NE(a.table(2)[1], a.table(1)[1]);
  EXPECT_EQ(a.n_available(), 0);
  // no block left for a third choice: refused, nothing taken
  const auto g = a.fork(1, 3, bs, bs + 1);
  EXPECT_EQ(g.status, alloc_status::later);
  EXPECT_FALSE(a.contains(3));
  EXPECT_EQ(a.ref_count(a.table(1)[0]), 2);
  a.check_invariants();
}

TEST(prefix_cache, misuse_aborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  prefix_cache a(4, bs, true);
  ASSERT_EQ(a.allocate_prompt(1, run(1, 5)).status, alloc_status::ok);
  EXPECT_DEATH(a.allocate_prompt(1, run(1, 5)), "live sequence");
  a.free(1);
  EXPECT_DEATH(a.free(1), "not live");
  EXPECT_DEATH((void)a.append_slots(1, 1), "unknown sequence");
}

// Random prompts drawn from a few shared prefixes, decode, preemption and reset, with
// the invariants checked after every operation. A shadow "KV storage" records, for
// each physical slot, a fingerprint of every token up to and including its position
// (what a real K/V row depends on): a hit must find exactly the prompt's fingerprints
// there, and a sequence only ever writes into blocks it holds alone.
TEST(prefix_cache, random_stress_keeps_the_invariants) {
  for (bool caching : {true, false}) {
    constexpr int32_t b4 = 4;
    constexpr int32_t n_blocks = 48;
    prefix_cache a(n_blocks, b4, caching);
    std::mt19937 rng(caching ? 42 : 7);
    auto uniform = [&rng](int32_t lo, int32_t hi) {
      return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
    };
    // FNV-1a over tokens [0, pos]: independent of the allocator's own hash.
    auto fingerprint = [](const std::vector<int32_t>& tokens, size_t pos) {
      uint64_t h = 0xcbf29ce484222325ull;
      for (size_t i = 0; i <= pos; ++i) {
        h = (h ^ static_cast<uint32_t>(tokens[i])) * 0x100000001b3ull;
      }
      return h;
    };
    std::vector<uint64_t> kv(static_cast<size_t>(n_blocks * b4), 0);  // [block][slot]
    auto write = [&](uint64_t s, const std::vector<int32_t>& tokens, size_t from) {
      const auto& table = a.table(s);
      for (size_t pos = from; pos < tokens.size(); ++pos) {
        const int32_t b = table[pos / b4];
        ASSERT_EQ(a.ref_count(b), 1) << "writing into a shared block";
        ASSERT_FALSE(a.is_cached(b)) << "writing into a cached block";
        kv[static_cast<size_t>(b * b4) + pos % b4] = fingerprint(tokens, pos);
      }
    };
    std::vector<std::vector<int32_t>> prefixes;
    for (int i = 0; i < 4; ++i) {
      prefixes.push_back(run(1000 * (i + 1), uniform(1, 3 * b4)));
    }
    std::map<uint64_t, std::vector<int32_t>> live;  // id -> tokens with KV written
    uint64_t next_id = 0;
    int64_t n_hit_tokens = 0;
    for (int step = 0; step < 20000; ++step) {
      const int op = uniform(0, 99);
      if (op < 25) {
        // A new sequence: a shared prefix (maybe a live one's history), then noise.
        std::vector<int32_t> p;
        if (!live.empty() && uniform(0, 3) == 0) {
          auto it = live.begin();
          std::advance(it, uniform(0, static_cast<int32_t>(live.size()) - 1));
          p = it->second;
        } else {
          p = prefixes[static_cast<size_t>(uniform(0, 3))];
        }
        for (int32_t i = uniform(p.empty() ? 1 : 0, 2 * b4); i > 0; --i) {
          p.push_back(uniform(0, 3));  // tiny vocabulary: equal blocks are common
        }
        const auto can = a.can_allocate_prompt(p);
        const int64_t expect_cached = a.lookup(p);
        const uint64_t id = next_id++;
        const auto r = a.allocate_prompt(id, p);
        ASSERT_EQ(r.status, can);
        if (r.status != alloc_status::ok) {
          ASSERT_FALSE(a.contains(id));
        } else {
          ASSERT_EQ(r.n_cached_tokens, expect_cached);
          ASSERT_EQ(r.n_cached_tokens % b4, 0);
          ASSERT_LT(r.n_cached_tokens, static_cast<int64_t>(p.size()));
          ASSERT_TRUE(caching || r.n_cached_tokens == 0);
          n_hit_tokens += r.n_cached_tokens;
          const auto& table = a.table(id);
          for (int64_t pos = 0; pos < r.n_cached_tokens; ++pos) {
            const int32_t b = table[static_cast<size_t>(pos / b4)];
            ASSERT_EQ(kv[static_cast<size_t>(b * b4 + pos % b4)],
                      fingerprint(p, static_cast<size_t>(pos)))
                << "a hit on a block computed for another prefix";
          }
          write(id, p, static_cast<size_t>(r.n_cached_tokens));
          a.commit_full_blocks(id, p);
          live[id] = p;
        }
      } else if (op < 85 && !live.empty()) {
        // Decode one token of a random live sequence; preempt it when full.
        auto it = live.begin();
        std::advance(it, uniform(0, static_cast<int32_t>(live.size()) - 1));
        if (a.append_slots(it->first, 1)) {
          it->second.push_back(uniform(0, 3));
          write(it->first, it->second, it->second.size() - 1);
          a.commit_full_blocks(it->first, it->second);
        } else {
          ASSERT_EQ(a.n_available(), 0);
          a.free(it->first);
          live.erase(it);
        }
      } else if (op < 99 && !live.empty()) {
        auto it = live.begin();
        std::advance(it, uniform(0, static_cast<int32_t>(live.size()) - 1));
        a.free(it->first);
        live.erase(it);
      } else if (op == 99) {
        a.reset_cache();
      }
      a.check_invariants();
      int32_t n_used = 0;
      for (int32_t b = 0; b < n_blocks; ++b) {
        n_used += a.ref_count(b) > 0 ? 1 : 0;
      }
      ASSERT_EQ(n_used, a.n_used());
    }
    const auto s = a.stats();
    EXPECT_EQ(s.n_cached_prompt_tokens, n_hit_tokens);
    if (caching) {
      EXPECT_GT(s.n_block_hits, 100);
      EXPECT_GT(s.n_evictions, 100);
    }
    for (const auto& [id, tokens] : live) {
      a.free(id);
    }
    a.check_invariants();
    EXPECT_EQ(a.n_available(), n_blocks);
  }
}

}  // namespace
}  // namespace baton
