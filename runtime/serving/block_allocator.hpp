// The one KV block accounting: a cache of n_blocks blocks of block_size token positions,
// each either free or held. It answers whether n more blocks fit (ok / later / never),
// hands out free blocks in a fixed order (a LIFO stack, block 0 first, so the same
// requests get the same block ids on every run and every rank) and takes them back; a
// free of a block that is not held is a double free, a bug, and aborts. Who holds a
// block and why is the caller's: the engine holds one per position block of a
// sequence, the router's prefix cache (prefix_cache.hpp) adds shared prefixes, their
// ref counts and an LRU of cached blocks on top. It is its own file because both use
// it and neither owns it; the block tables it backs index every stage's kv_storage.
#pragma once

#include <cstdint>
#include <vector>

namespace baton {

enum class alloc_status {
  ok,     ///< enough free blocks now
  later,  ///< not now, but the cache could hold it once others finish
  never,  ///< more blocks than the whole cache has
};

class block_allocator {
 public:
  /// Every block free; aborts unless n_blocks >= 0 and block_size > 0.
  block_allocator(int32_t n_blocks, int32_t block_size);

  int32_t n_blocks() const { return static_cast<int32_t>(held_.size()); }
  int32_t block_size() const { return block_size_; }
  int32_t n_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t n_held() const { return n_blocks() - n_free(); }
  /// Blocks needed to hold n_tokens.
  int32_t blocks_for(int64_t n_tokens) const;

  /// Whether n more blocks fit: never when n exceeds the whole cache, ok when n <=
  /// n_free() + n_credit, later otherwise. n_credit counts held blocks the caller can
  /// use for this request all the same (a prefix cache's evictable blocks, blocks it
  /// shares instead of taking); the engine passes none.
  alloc_status can_allocate(int32_t n, int32_t n_credit = 0) const;
  /// A free block, held from now on. Aborts when none is free: ask can_allocate first.
  int32_t allocate();
  /// Gives a held block back. Aborts (a double free) when it is not held.
  void free(int32_t block);
  bool is_held(int32_t block) const;
  /// The held blocks, ascending: every block whose KV is live or cached.
  std::vector<int32_t> held_blocks() const;

  /// Checks that the free stack and the held flags agree (each block free exactly
  /// once or held) and aborts on a violation. O(n_blocks): for tests.
  void check_invariants() const;

 private:
  // -- member variables -------------------------------------------------------
  int32_t block_size_;
  std::vector<uint8_t> held_;  // [n_blocks] 1 while held
  std::vector<int32_t> free_;  // stack of free block ids; its top is handed out next
};

}  // namespace baton
