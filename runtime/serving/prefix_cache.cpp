// prefix_cache.hpp: the two-lane chained hash, matching a prompt against cached blocks, allocation
// that takes the hits before any fresh block, eviction from the LRU list, and the invariant check.
#include "runtime/serving/prefix_cache.hpp"

#include <algorithm>

#include "runtime/system/error.hpp"

namespace baton {

namespace {

// Two unrelated 64-bit finalizers (MurmurHash3's fmix64 and SplitMix64's), one per
// lane, so that a collision needs both lanes to collide at once.
uint64_t mix_a(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

uint64_t mix_b(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

prefix_hash chain_hash(const prefix_hash& parent, std::span<const int32_t> block_tokens) {
  // Each step is a bijection of the lane's state for a given token, so two prefixes
  // collide only by chance; the lanes differ in mix, constants and how a token enters.
  uint64_t a = mix_a(parent.lo ^ 0x9e3779b97f4a7c15ull);
  uint64_t b = mix_b(parent.hi + 0x6a09e667f3bcc909ull);
  for (int32_t t : block_tokens) {
    const uint64_t w = static_cast<uint32_t>(t);
    a = mix_a(a ^ (w * 0x9fb21c651e98df25ull + 1));
    b = mix_b((b + w) ^ 0xd6e8feb86659fd93ull);
  }
  const uint64_t n = block_tokens.size();
  return prefix_hash{mix_a(a ^ n), mix_b(b + n)};
}

prefix_cache::prefix_cache(int32_t n_blocks, int32_t block_size, bool enable_prefix_caching)
    : blocks_(n_blocks, block_size),
      caching_(enable_prefix_caching),
      ref_(static_cast<size_t>(n_blocks), 0),
      cached_(static_cast<size_t>(n_blocks), 0),
      lru_prev_(static_cast<size_t>(n_blocks) + 1, -1),
      lru_next_(static_cast<size_t>(n_blocks) + 1, -1) {
  if (caching_) {
    key_.resize(static_cast<size_t>(n_blocks));
    block_tokens_.resize(static_cast<size_t>(n_blocks) * static_cast<size_t>(block_size));
  }
  lru_prev_[static_cast<size_t>(n_blocks)] = n_blocks;  // the empty list: sentinel alone
  lru_next_[static_cast<size_t>(n_blocks)] = n_blocks;
}

prefix_cache_stats prefix_cache::stats() const {
  prefix_cache_stats s = counters_;
  s.n_free = n_free();
  s.n_evictable = n_evictable();
  s.n_used = n_used();
  return s;
}

// -- lookup -------------------------------------------------------------------

void prefix_cache::match(std::span<const int32_t> tokens, std::vector<int32_t>& blocks,
                         std::vector<prefix_hash>& keys) const {
  blocks.clear();
  keys.clear();
  if (!caching_ || tokens.empty()) {
    return;
  }
  // The last token is always computed, so at most the blocks before it can hit.
  const auto n_max = static_cast<size_t>((static_cast<int64_t>(tokens.size()) - 1) /
                                         block_size());
  const auto bs = static_cast<size_t>(block_size());
  prefix_hash h;
  for (size_t i = 0; i < n_max; ++i) {
    const auto block_tokens = tokens.subspan(i * bs, bs);
    h = chain_hash(h, block_tokens);
    const auto it = map_.find(h);
    if (it == map_.end()) {
      break;
    }
    const int32_t b = it->second;
    const auto stored = std::span<const int32_t>(block_tokens_).subspan(
        static_cast<size_t>(b) * bs, bs);
    if (!std::equal(stored.begin(), stored.end(), block_tokens.begin())) {
      break;  // a hash collision: treat as a miss
    }
    blocks.push_back(b);
    keys.push_back(h);
  }
}

int32_t prefix_cache::count_evictable(const std::vector<int32_t>& blocks) const {
  int32_t n = 0;
  for (int32_t b : blocks) {
    n += ref_[static_cast<size_t>(b)] == 0 ? 1 : 0;
  }
  return n;
}

int64_t prefix_cache::lookup(std::span<const int32_t> tokens) const {
  std::vector<int32_t> blocks;
  std::vector<prefix_hash> keys;
  match(tokens, blocks, keys);
  return static_cast<int64_t>(blocks.size()) * block_size();
}

alloc_status prefix_cache::can_allocate(int64_t n_tokens) const {
  return blocks_.can_allocate(blocks_for(n_tokens), n_evictable());
}

alloc_status prefix_cache::can_allocate_prompt(std::span<const int32_t> tokens) const {
  std::vector<int32_t> hits;
  std::vector<prefix_hash> keys;
  match(tokens, hits, keys);
  return blocks_.can_allocate(blocks_for(static_cast<int64_t>(tokens.size())),
                              credit(hits));
}

int32_t prefix_cache::credit(const std::vector<int32_t>& hits) const {
  // A hit on an evictable block uses up an available block as a fresh one would; a
  // hit on a block in use costs nothing. So a table sharing `hits` may count on the
  // evictable blocks it does not hit, and on each hit itself.
  return n_evictable() - count_evictable(hits) + static_cast<int32_t>(hits.size());
}

// -- allocation -----------------------------------------------------------------

prompt_allocation prefix_cache::allocate_prompt(seq_id seq, std::span<const int32_t> tokens) {
  BATON_ASSERT(!tokens.empty());
  BATON_ASSERT(!seqs_.contains(seq) && "allocate_prompt for a live sequence");
  const int32_t n = blocks_for(static_cast<int64_t>(tokens.size()));
  std::vector<int32_t> hits;
  std::vector<prefix_hash> keys;
  match(tokens, hits, keys);
  if (const alloc_status st = blocks_.can_allocate(n, credit(hits)); st != alloc_status::ok) {
    return {st};
  }
  const int32_t n_fresh = n - static_cast<int32_t>(hits.size());

  sequence_state s;
  s.table.reserve(static_cast<size_t>(n));
  // Take the hits before any fresh block, so that no eviction can take one of them.
  for (int32_t b : hits) {
    auto& r = ref_[static_cast<size_t>(b)];
    if (r == 0) {
      lru_remove(b);
    }
    ++r;
    s.table.push_back(b);
  }
  for (int32_t i = 0; i < n_fresh; ++i) {
    s.table.push_back(take_fresh());
  }
  s.hashes = std::move(keys);
  s.n_tokens = static_cast<int64_t>(tokens.size());
  seqs_.emplace(seq, std::move(s));

  const int64_t n_cached = static_cast<int64_t>(hits.size()) * block_size();
  if (caching_) {
    counters_.n_prompt_tokens_looked_up += static_cast<int64_t>(tokens.size());
    counters_.n_cached_prompt_tokens += n_cached;
    counters_.n_block_hits += static_cast<int64_t>(hits.size());
  }
  return {alloc_status::ok, n_cached};
}

fork_allocation prefix_cache::fork(seq_id parent, seq_id child, int64_t n_shared,
                                   int64_t n_tokens) {
  BATON_ASSERT(!seqs_.contains(child) && "fork into a live sequence");
  const sequence_state& p = state(parent);
  BATON_ASSERT(n_shared >= 0 && n_shared < n_tokens && n_shared <= p.n_tokens);
  const auto n_full = static_cast<int32_t>(n_shared / block_size());
  const int32_t n_fresh = blocks_for(n_tokens) - n_full;
  if (const alloc_status st = blocks_.can_allocate(n_fresh, n_evictable());
      st != alloc_status::ok) {
    return {st};
  }
  // with caching, the parent registered its full blocks when they were computed
  BATON_ASSERT(!caching_ || p.hashes.size() >= static_cast<size_t>(n_full));
  sequence_state s;
  s.table.reserve(static_cast<size_t>(n_full + n_fresh));
  for (int32_t i = 0; i < n_full; ++i) {
    const int32_t b = p.table[static_cast<size_t>(i)];
    ++ref_[static_cast<size_t>(b)];  // held by the parent: never evictable meanwhile
    s.table.push_back(b);
  }
  for (int32_t i = 0; i < n_fresh; ++i) {
    s.table.push_back(take_fresh());
  }
  s.hashes.assign(p.hashes.begin(),
                  p.hashes.begin() + std::min<std::ptrdiff_t>(n_full, std::ssize(p.hashes)));
  s.n_tokens = n_tokens;
  fork_allocation out{alloc_status::ok};
  if (n_shared % block_size() != 0) {
    out.copy_from = p.table[static_cast<size_t>(n_full)];
    out.copy_to = s.table[static_cast<size_t>(n_full)];
  }
  seqs_.emplace(child, std::move(s));
  return out;
}

bool prefix_cache::grow(seq_id seq, int64_t n_tokens) {
  auto& s = state(seq);
  const int32_t n_new = blocks_for(n_tokens) - static_cast<int32_t>(s.table.size());
  if (blocks_.can_allocate(n_new, n_evictable()) != alloc_status::ok) {
    return false;
  }
  for (int32_t i = 0; i < n_new; ++i) {
    s.table.push_back(take_fresh());
  }
  s.n_tokens = std::max(s.n_tokens, n_tokens);
  return true;
}

int32_t prefix_cache::take_fresh() {
  int32_t b = -1;
  if (blocks_.n_free() > 0) {
    b = blocks_.allocate();
  } else {
    // An evictable block stays held through its eviction: it passes from the cache to
    // the new table directly.
    b = lru_next_[static_cast<size_t>(n_blocks())];  // least recently used
    BATON_ASSERT(b != n_blocks() && "no block free or evictable");
    lru_remove(b);
    forget(b);
    ++counters_.n_evictions;
  }
  auto& r = ref_[static_cast<size_t>(b)];
  BATON_ASSERT(r == 0 && !cached_[static_cast<size_t>(b)]);
  r = 1;
  return b;
}

void prefix_cache::commit_full_blocks(seq_id seq, std::span<const int32_t> tokens) {
  auto& s = state(seq);
  BATON_ASSERT(static_cast<int64_t>(tokens.size()) <= s.n_tokens);
  if (!caching_) {
    return;
  }
  const size_t n_full = tokens.size() / static_cast<size_t>(block_size());
  const auto bs = static_cast<size_t>(block_size());
  for (size_t i = s.hashes.size(); i < n_full; ++i) {
    const auto block_tokens = tokens.subspan(i * bs, bs);
    const prefix_hash h = chain_hash(i == 0 ? prefix_hash{} : s.hashes[i - 1], block_tokens);
    s.hashes.push_back(h);
    const int32_t b = s.table[i];
    // Past the shared prefix every block was fresh, so only this sequence holds it.
    BATON_ASSERT(!cached_[static_cast<size_t>(b)] && ref_[static_cast<size_t>(b)] == 1);
    // Another sequence may have computed the same prefix meanwhile: the first one
    // registered stays the cached copy and this block stays private (freed at free()).
    if (map_.contains(h)) {
      continue;
    }
    map_.emplace(h, b);
    cached_[static_cast<size_t>(b)] = 1;
    key_[static_cast<size_t>(b)] = h;
    std::copy(block_tokens.begin(), block_tokens.end(),
              block_tokens_.begin() + static_cast<ptrdiff_t>(static_cast<size_t>(b) * bs));
  }
}

// -- release ------------------------------------------------------------------

void prefix_cache::free(seq_id seq) {
  const auto it = seqs_.find(seq);
  BATON_ASSERT(it != seqs_.end() && "free of a sequence that is not live (double free?)");
  // Tail first: the tail ends up less recently used than the head, so it is evicted
  // first, and a head block (which every later block's key depends on) stays longest.
  const auto& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) {
    release(*b);
  }
  seqs_.erase(it);
}

void prefix_cache::release(int32_t block) {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  auto& r = ref_[static_cast<size_t>(block)];
  BATON_ASSERT(r > 0 && "double free of a KV block");
  if (--r > 0) {
    return;
  }
  if (cached_[static_cast<size_t>(block)]) {
    lru_push_back(block);
  } else {
    blocks_.free(block);
  }
}

void prefix_cache::forget(int32_t block) {
  const auto& h = key_[static_cast<size_t>(block)];
  const auto it = map_.find(h);
  BATON_ASSERT(cached_[static_cast<size_t>(block)] && it != map_.end() && it->second == block);
  map_.erase(it);
  cached_[static_cast<size_t>(block)] = 0;
}

void prefix_cache::reset_cache() {
  for (int32_t b = 0; b < n_blocks(); ++b) {
    if (!cached_[static_cast<size_t>(b)]) {
      continue;
    }
    forget(b);
    if (ref_[static_cast<size_t>(b)] == 0) {
      lru_remove(b);
      blocks_.free(b);
    }
  }
  BATON_ASSERT(map_.empty() && n_evictable_ == 0);
}

// -- LRU list -------------------------------------------------------------------

prefix_cache prefix_cache::resized(int32_t n_blocks, std::vector<int32_t>& from,
                                   std::vector<int32_t>& to, bool keep_cache) const {
  BATON_ASSERT(n_used() <= n_blocks);
  prefix_cache out(n_blocks, block_size(), caching_);
  std::vector<int32_t> moved(static_cast<size_t>(this->n_blocks()), -1);  // old -> new
  for (int32_t b = 0; b < this->n_blocks(); ++b) {
    if (ref_[static_cast<size_t>(b)] > 0) {
      moved[static_cast<size_t>(b)] = out.blocks_.allocate();  // 0, 1, ... in order
    }
  }
  std::vector<int32_t> kept;  // evictable blocks kept, most recently used first
  const auto sentinel = static_cast<size_t>(this->n_blocks());
  for (int32_t b = lru_prev_[sentinel]; keep_cache && b != this->n_blocks() && out.n_free() > 0;
       b = lru_prev_[static_cast<size_t>(b)]) {
    moved[static_cast<size_t>(b)] = out.blocks_.allocate();
    kept.push_back(b);
  }
  out.counters_ = counters_;
  out.counters_.n_evictions += n_evictable_ - static_cast<int32_t>(kept.size());
  const auto bs = static_cast<size_t>(block_size());
  for (int32_t b = 0; b < this->n_blocks(); ++b) {
    const int32_t nb = moved[static_cast<size_t>(b)];
    if (nb < 0) {
      continue;
    }
    const auto i = static_cast<size_t>(b);
    const auto j = static_cast<size_t>(nb);
    out.ref_[j] = ref_[i];
    if (cached_[i]) {
      out.cached_[j] = 1;
      out.key_[j] = key_[i];
      std::copy_n(block_tokens_.begin() + static_cast<std::ptrdiff_t>(i * bs), bs,
                  out.block_tokens_.begin() + static_cast<std::ptrdiff_t>(j * bs));
      out.map_[key_[i]] = nb;
    }
    from.push_back(b);
    to.push_back(nb);
  }
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {  // least recently used first
    out.lru_push_back(moved[static_cast<size_t>(*it)]);
  }
  for (const auto& [id, st] : seqs_) {
    sequence_state copy = st;
    for (int32_t& b : copy.table) {
      b = moved[static_cast<size_t>(b)];
    }
    out.seqs_.emplace(id, std::move(copy));
  }
  return out;
}

bool prefix_cache::in_lru(int32_t block) const {
  return lru_prev_[static_cast<size_t>(block)] >= 0;
}

void prefix_cache::lru_push_back(int32_t block) {
  BATON_ASSERT(!in_lru(block));
  const int32_t sentinel = n_blocks();
  const int32_t last = lru_prev_[static_cast<size_t>(sentinel)];
  lru_prev_[static_cast<size_t>(block)] = last;
  lru_next_[static_cast<size_t>(block)] = sentinel;
  lru_next_[static_cast<size_t>(last)] = block;
  lru_prev_[static_cast<size_t>(sentinel)] = block;
  ++n_evictable_;
}

void prefix_cache::lru_remove(int32_t block) {
  BATON_ASSERT(block >= 0 && block < n_blocks() && in_lru(block));
  const int32_t prev = lru_prev_[static_cast<size_t>(block)];
  const int32_t next = lru_next_[static_cast<size_t>(block)];
  lru_next_[static_cast<size_t>(prev)] = next;
  lru_prev_[static_cast<size_t>(next)] = prev;
  lru_prev_[static_cast<size_t>(block)] = -1;
  lru_next_[static_cast<size_t>(block)] = -1;
  --n_evictable_;
}

// -- accessors ------------------------------------------------------------------

prefix_cache::sequence_state& prefix_cache::state(seq_id seq) {
  const auto it = seqs_.find(seq);
  BATON_ASSERT(it != seqs_.end() && "unknown sequence");
  return it->second;
}

const prefix_cache::sequence_state& prefix_cache::state(seq_id seq) const {
  const auto it = seqs_.find(seq);
  BATON_ASSERT(it != seqs_.end() && "unknown sequence");
  return it->second;
}

const std::vector<int32_t>& prefix_cache::table(seq_id seq) const {
  return state(seq).table;
}

int64_t prefix_cache::n_tokens(seq_id seq) const { return state(seq).n_tokens; }

int32_t prefix_cache::n_committed_blocks(seq_id seq) const {
  return static_cast<int32_t>(state(seq).hashes.size());
}

int32_t prefix_cache::ref_count(int32_t block) const {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  return ref_[static_cast<size_t>(block)];
}

bool prefix_cache::is_cached(int32_t block) const {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  return cached_[static_cast<size_t>(block)] != 0;
}

// -- invariants -----------------------------------------------------------------

void prefix_cache::check_invariants() const {
  const auto n = static_cast<size_t>(n_blocks());
  // Ref counts are exactly the references held by the live tables.
  std::vector<int32_t> refs(n, 0);
  for (const auto& [id, s] : seqs_) {
    BATON_ASSERT(s.table.size() == static_cast<size_t>(blocks_for(s.n_tokens)));
    BATON_ASSERT(s.hashes.size() <= s.table.size());
    for (int32_t b : s.table) {
      BATON_ASSERT(b >= 0 && static_cast<size_t>(b) < n);
      ++refs[static_cast<size_t>(b)];
    }
    // Every table's block is private to it at most once (no duplicates in a table).
    std::vector<int32_t> sorted = s.table;
    std::sort(sorted.begin(), sorted.end());
    BATON_ASSERT(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    // A committed block that is cached is cached under this sequence's key for it.
    for (size_t i = 0; i < s.hashes.size(); ++i) {
      const auto b = static_cast<size_t>(s.table[i]);
      BATON_ASSERT(!cached_[b] || key_[b] == s.hashes[i]);
    }
  }
  for (size_t b = 0; b < n; ++b) {
    BATON_ASSERT(refs[b] == ref_[b]);
  }
  // Each block is exactly one of: free (not held by the allocator), evictable (in the
  // LRU list), used (referenced).
  blocks_.check_invariants();
  std::vector<uint8_t> seen(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<int32_t>(i);
    if (blocks_.is_held(b)) {
      continue;
    }
    seen[i] = 1;
    BATON_ASSERT(ref_[i] == 0 && !cached_[i] && !in_lru(b) && "a free block in use or cached");
  }
  int32_t n_lru = 0;
  const int32_t sentinel = n_blocks();
  for (int32_t b = lru_next_[static_cast<size_t>(sentinel)], prev = sentinel; b != sentinel;
       prev = b, b = lru_next_[static_cast<size_t>(b)]) {
    BATON_ASSERT(b >= 0 && b < sentinel);
    const auto i = static_cast<size_t>(b);
    BATON_ASSERT(lru_prev_[i] == prev);
    BATON_ASSERT(!seen[i] && "an evictable block also free, or twice in the LRU list");
    seen[i] = 2;
    BATON_ASSERT(ref_[i] == 0 && cached_[i] && "an evictable block in use or uncached");
    ++n_lru;
    BATON_ASSERT(n_lru <= sentinel);
  }
  BATON_ASSERT(n_lru == n_evictable_);
  for (size_t b = 0; b < n; ++b) {
    BATON_ASSERT(seen[b] || ref_[b] > 0);  // neither free nor evictable: used
    BATON_ASSERT(!(seen[b] == 0 && in_lru(static_cast<int32_t>(b))));
  }
  // The hash map and the per-block keys agree, and only caching registers blocks.
  size_t n_cached = 0;
  for (size_t b = 0; b < n; ++b) {
    if (!cached_[b]) {
      continue;
    }
    ++n_cached;
    const auto it = map_.find(key_[b]);
    BATON_ASSERT(it != map_.end() && it->second == static_cast<int32_t>(b));
  }
  BATON_ASSERT(n_cached == map_.size());
  BATON_ASSERT(caching_ || map_.empty());
  BATON_ASSERT(n_used() >= 0);
}

}  // namespace baton
