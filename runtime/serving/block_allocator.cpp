// block_allocator.hpp: the free stack and the held flags, the abort on a double free, and the
// invariant check that every block is either held or on the free stack, once.
#include "runtime/serving/block_allocator.hpp"

#include <cstdio>
#include <cstdlib>

#include "runtime/system/error.hpp"

namespace baton {

block_allocator::block_allocator(int32_t n_blocks, int32_t block_size)
    : block_size_(block_size) {
  BATON_ASSERT(n_blocks >= 0 && block_size > 0);
  held_.assign(static_cast<size_t>(n_blocks), 0);
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int32_t b = n_blocks - 1; b >= 0; --b) {
    free_.push_back(b);  // block 0 comes out first
  }
}

int32_t block_allocator::blocks_for(int64_t n_tokens) const {
  return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
}

alloc_status block_allocator::can_allocate(int32_t n, int32_t n_credit) const {
  if (n > n_blocks()) {
    return alloc_status::never;
  }
  return n <= n_free() + n_credit ? alloc_status::ok : alloc_status::later;
}

int32_t block_allocator::allocate() {
  BATON_ASSERT(!free_.empty() && "allocate with no KV block free");
  const int32_t b = free_.back();
  free_.pop_back();
  BATON_ASSERT(!held_[static_cast<size_t>(b)]);
  held_[static_cast<size_t>(b)] = 1;
  return b;
}

void block_allocator::free(int32_t block) {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  if (!held_[static_cast<size_t>(block)]) {
    std::fprintf(stderr,
                 "baton: double free of KV block %d (it is not held; %d of %d blocks free)\n",
                 block, n_free(), n_blocks());
    std::abort();
  }
  held_[static_cast<size_t>(block)] = 0;
  free_.push_back(block);
}

bool block_allocator::is_held(int32_t block) const {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  return held_[static_cast<size_t>(block)] != 0;
}

void block_allocator::check_invariants() const {
  std::vector<uint8_t> on_stack(held_.size(), 0);
  for (int32_t b : free_) {
    BATON_ASSERT(b >= 0 && b < n_blocks());
    const auto i = static_cast<size_t>(b);
    BATON_ASSERT(!on_stack[i] && "a block twice on the free stack");
    BATON_ASSERT(!held_[i] && "a held block on the free stack");
    on_stack[i] = 1;
  }
  for (size_t i = 0; i < held_.size(); ++i) {
    BATON_ASSERT((held_[i] != 0) != (on_stack[i] != 0));  // held xor free
  }
}

std::vector<int32_t> block_allocator::held_blocks() const {
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n_held()));
  for (size_t b = 0; b < held_.size(); ++b) {
    if (held_[b] != 0) {
      out.push_back(static_cast<int32_t>(b));
    }
  }
  return out;
}

}  // namespace baton
