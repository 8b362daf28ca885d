// The router's view of the KV cache: automatic prefix caching (vLLM's design) on top of
// the one block accounting, block_allocator. Every full block is keyed by a 128-bit
// hash chained over the token ids of all blocks up to and including it, so one key
// names one whole prefix. A new sequence whose prompt starts with cached blocks shares
// them (ref-counted here) and only computes the rest; blocks nobody references stay
// resident as "evictable" in LRU order and are handed out again on a hit, or evicted
// when a fresh block is needed and none is truly free. Only full blocks are shared and
// a sequence's last partial block is always its own: a sequence forked from another
// (the choices of one request, fork()) shares the parent's full blocks and gets a copy
// of its partial one, which the stages make before the child runs (copy-on-write).
// The allocator sees a block as held while a sequence references it or it is cached;
// hashing, the LRU and the per-block ref counts are this file's. The block tables it
// hands out are the ones every stage's kv_storage is indexed with.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/serving/block_allocator.hpp"

namespace baton {

/// Key of a full block: a 128-bit hash of every token from position 0 to the end of
/// the block (two independent 64-bit lanes).
struct prefix_hash {
  uint64_t lo = 0x243f6a8885a308d3ull;  // the root: the key of the empty prefix
  uint64_t hi = 0x13198a2e03707344ull;

  friend bool operator==(const prefix_hash&, const prefix_hash&) = default;
};

/// The key of a block holding `block_tokens` whose predecessors have key `parent`
/// (`prefix_hash{}` for the first block).
prefix_hash chain_hash(const prefix_hash& parent, std::span<const int32_t> block_tokens);

/// Counters since construction, and the current block gauges.
struct prefix_cache_stats {
  int64_t n_prompt_tokens_looked_up = 0;  ///< prompt tokens of successful allocate_prompt
  int64_t n_cached_prompt_tokens = 0;     ///< of those, found in the cache
  int64_t n_block_hits = 0;               ///< cached blocks handed to a new sequence
  int64_t n_evictions = 0;                ///< cached blocks dropped to make a fresh one
  int32_t n_free = 0;                     ///< blocks neither referenced nor cached
  int32_t n_evictable = 0;                ///< cached blocks nobody references
  int32_t n_used = 0;                     ///< blocks referenced by some sequence
};

/// What allocate_prompt did.
struct prompt_allocation {
  alloc_status status;          ///< ok: allocated; later / never: nothing changed
  int64_t n_cached_tokens = 0;  ///< prompt tokens whose KV is already there (ok only)
};

/// What fork did: ok, or nothing changed; with ok, the one block whose KV the stages must
/// copy (copy-on-write of the parent's partial block), or -1, -1 when the shared
/// positions end on a block boundary.
struct fork_allocation {
  alloc_status status;
  int32_t copy_from = -1;  ///< the parent's block
  int32_t copy_to = -1;    ///< the child's fresh one
};

class prefix_cache {
 public:
  using seq_id = uint64_t;

  /// With enable_prefix_caching false it is a plain paged allocator: nothing is ever
  /// looked up, registered or kept after free.
  prefix_cache(int32_t n_blocks, int32_t block_size, bool enable_prefix_caching);

  int32_t n_blocks() const { return blocks_.n_blocks(); }
  int32_t block_size() const { return blocks_.block_size(); }
  bool prefix_caching() const { return caching_; }
  /// Blocks needed to hold n_tokens.
  int32_t blocks_for(int64_t n_tokens) const { return blocks_.blocks_for(n_tokens); }

  int32_t n_free() const { return blocks_.n_free(); }
  int32_t n_evictable() const { return n_evictable_; }
  int32_t n_used() const { return n_blocks() - n_free() - n_evictable(); }
  /// Blocks a fresh allocation may take: free ones, then evictable ones.
  int32_t n_available() const { return n_free() + n_evictable(); }
  prefix_cache_stats stats() const;

  /// Whether a new sequence of n_tokens would fit, counting evictable blocks as
  /// available and ignoring what the cache might share (a conservative answer).
  alloc_status can_allocate(int64_t n_tokens) const;
  /// The same for this prompt, crediting the cached blocks it would share.
  alloc_status can_allocate_prompt(std::span<const int32_t> tokens) const;
  /// Prompt tokens allocate_prompt would find cached now: a multiple of block_size,
  /// always less than tokens.size() so that the last token is computed (its logits).
  int64_t lookup(std::span<const int32_t> tokens) const;

  /// Gives a new sequence a block table covering its whole prompt: the cached prefix
  /// blocks (shared), then fresh ones. Nothing changes unless the status is ok.
  /// The prompt must not be empty and `seq` must not be live.
  prompt_allocation allocate_prompt(seq_id seq, std::span<const int32_t> tokens);
  /// Gives `child` (not live) a table of n_tokens positions whose first n_shared are
  /// `parent`'s (n_shared < n_tokens, n_shared <= n_tokens(parent)): the parent's full
  /// blocks among them are shared (ref-counted; with prefix caching their keys too), the
  /// block holding the rest of them is a fresh one the caller has every stage copy the
  /// parent's into (the result names both) before anything reads or writes it, and fresh
  /// blocks follow. Nothing changes unless the status is ok.
  fork_allocation fork(seq_id parent, seq_id child, int64_t n_shared, int64_t n_tokens);
  /// Reserves positions up to n_tokens in all for `seq` (never shrinks), adding
  /// blocks as needed. False (and nothing changed) when too few blocks are available:
  /// the router then preempts someone.
  bool grow(seq_id seq, int64_t n_tokens);
  /// grow() by n_new positions past those reserved so far (decode: n_new = 1).
  bool append_slots(seq_id seq, int64_t n_new) { return grow(seq, n_tokens(seq) + n_new); }
  /// Registers the full blocks among `tokens` under their chained hash, so that later
  /// prompts (the next chat turn included) share them; prompt and decoded blocks
  /// alike, those already committed skipped. `tokens` are the sequence's tokens from
  /// position 0 whose KV is written by now, or by a step that runs before, on every
  /// stage, any step that could read it; at most n_tokens(seq) of them.
  void commit_full_blocks(seq_id seq, std::span<const int32_t> tokens);
  /// Drops the references of `seq`. Its cached blocks that nobody else holds become
  /// evictable (most recently used last, its tail before its head), the others free.
  /// Freeing a sequence that is not live aborts.
  void free(seq_id seq);
  /// Forgets every cached block (a benchmark's cold start); referenced ones stay
  /// with their sequences, uncached.
  void reset_cache();

  bool contains(seq_id seq) const { return seqs_.contains(seq); }
  const std::vector<int32_t>& table(seq_id seq) const;
  /// Positions reserved for `seq` (the prompt, then as grown); its table holds
  /// blocks_for(n_tokens) blocks.
  int64_t n_tokens(seq_id seq) const;
  /// Full blocks of `seq` committed (or shared from the cache) so far; 0 without
  /// prefix caching.
  int32_t n_committed_blocks(seq_id seq) const;
  /// References to `block` from live sequences' tables.
  int32_t ref_count(int32_t block) const;
  bool is_cached(int32_t block) const;
  /// Blocks whose KV is worth keeping (a sequence's or the cache's), ascending.
  std::vector<int32_t> held_blocks() const { return blocks_.held_blocks(); }

  /// The same sequences and cache in a pool of `n_blocks` blocks (a reshard that grows
  /// or shrinks the KV cache): the blocks sequences reference get ids 0, 1, ... in the
  /// order of their old ids, then the evictable ones, most recently used first, while
  /// room is left (the rest are evicted). `from` and `to` receive each kept block's old
  /// and new id, where its KV must move. Every referenced block must fit: n_used() <=
  /// n_blocks (the caller preempts first). Without `keep_cache` every evictable block is
  /// dropped (their KV will not follow).
  prefix_cache resized(int32_t n_blocks, std::vector<int32_t>& from, std::vector<int32_t>& to,
                       bool keep_cache = true) const;

  /// Checks every structural invariant (each block exactly one of free / evictable /
  /// used, ref counts equal to table references, the hash map and the LRU list
  /// consistent) and aborts on a violation. O(n_blocks + table sizes): for tests.
  void check_invariants() const;

 private:
  struct sequence_state {
    std::vector<int32_t> table;       ///< [blocks_for(n_tokens)]
    std::vector<prefix_hash> hashes;  ///< [n committed] key of each full block
    int64_t n_tokens = 0;             ///< positions reserved
  };

  struct hash_of_key {
    size_t operator()(const prefix_hash& h) const { return static_cast<size_t>(h.lo); }
  };

  /// Cached blocks matching the prompt's leading full blocks (at most
  /// (n_tokens - 1) / block_size of them), with their keys.
  void match(std::span<const int32_t> tokens, std::vector<int32_t>& blocks,
             std::vector<prefix_hash>& keys) const;
  /// Blocks in `blocks` that are evictable now (taking them shrinks n_available).
  int32_t count_evictable(const std::vector<int32_t>& blocks) const;
  /// Held blocks a new table sharing the cached blocks `hits` may count on besides the
  /// free ones (block_allocator::can_allocate's n_credit).
  int32_t credit(const std::vector<int32_t>& hits) const;
  /// A fresh block with ref count 1: a free one, else the LRU evictable one.
  int32_t take_fresh();
  /// Drops a sequence's reference; at zero the block becomes evictable if cached, else
  /// goes back to the allocator. Releasing an unreferenced block aborts (a double free).
  void release(int32_t block);
  void forget(int32_t block);  // drops a cached block's key
  sequence_state& state(seq_id seq);
  const sequence_state& state(seq_id seq) const;

  // LRU list of evictable blocks, intrusive over [n_blocks + 1] links; index
  // n_blocks is the sentinel, its next is the least recently used block.
  void lru_push_back(int32_t block);
  void lru_remove(int32_t block);
  bool in_lru(int32_t block) const;

  // -- member variables -------------------------------------------------------
  block_allocator blocks_;              // free: neither referenced nor cached
  bool caching_;
  std::vector<int32_t> ref_;            // [n_blocks] references from live tables
  std::vector<uint8_t> cached_;         // [n_blocks] 1 when registered in map_
  std::vector<prefix_hash> key_;        // [n_blocks] valid where cached_
  std::vector<int32_t> block_tokens_;   // [n_blocks][block_size] where cached_
  std::vector<int32_t> lru_prev_;       // [n_blocks + 1]; -1 when not in the list
  std::vector<int32_t> lru_next_;       // [n_blocks + 1]
  int32_t n_evictable_ = 0;
  std::unordered_map<prefix_hash, int32_t, hash_of_key> map_;
  std::unordered_map<seq_id, sequence_state> seqs_;
  prefix_cache_stats counters_;  // only the counters are kept up to date here
};

}  // namespace baton
