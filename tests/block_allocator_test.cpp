// runtime/serving/block_allocator: the one KV block accounting (ok / later / never,
// the order blocks are handed out in, a double free aborting).
#include <gtest/gtest.h>

#include <algorithm>

#include "runtime/serving/block_allocator.hpp"

namespace baton {
namespace {

TEST(block_allocator, held_blocks_lists_exactly_what_is_held) {
  block_allocator a(8, 16);
  EXPECT_TRUE(a.held_blocks().empty());
  const int32_t x = a.allocate();
  const int32_t y = a.allocate();
  const int32_t z = a.allocate();
  a.free(y);
  std::vector<int32_t> want = {x, z};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(a.held_blocks(), want);
}

TEST(block_allocator, answers_ok_later_never) {
  block_allocator a(4, 16);
  EXPECT_EQ(a.blocks_for(0), 0);
  EXPECT_EQ(a.blocks_for(33), 3);
  EXPECT_EQ(a.can_allocate(4), alloc_status::ok);
  EXPECT_EQ(a.can_allocate(5), alloc_status::never);
  a.allocate();
  a.allocate();
  a.allocate();
  EXPECT_EQ(a.n_free(), 1);
  EXPECT_EQ(a.n_held(), 3);
  EXPECT_EQ(a.can_allocate(1), alloc_status::ok);
  EXPECT_EQ(a.can_allocate(2), alloc_status::later);
  EXPECT_EQ(a.can_allocate(5), alloc_status::never);
  // held blocks the caller can use all the same (a prefix cache's evictable ones)
  EXPECT_EQ(a.can_allocate(2, 1), alloc_status::ok);
  EXPECT_EQ(a.can_allocate(5, 4), alloc_status::never);
  a.check_invariants();
}

TEST(block_allocator, hands_out_block_zero_first_and_reuses_the_last_freed) {
  block_allocator a(3, 16);
  EXPECT_EQ(a.allocate(), 0);
  EXPECT_EQ(a.allocate(), 1);
  EXPECT_EQ(a.allocate(), 2);
  a.free(0);
  a.free(2);
  EXPECT_FALSE(a.is_held(2));
  EXPECT_TRUE(a.is_held(1));
  EXPECT_EQ(a.allocate(), 2);  // a stack: the last freed comes out first
  EXPECT_EQ(a.allocate(), 0);
  EXPECT_EQ(a.n_free(), 0);
  a.check_invariants();
}

TEST(block_allocator_death, a_double_free_aborts) {
  block_allocator a(2, 16);
  const int32_t b = a.allocate();
  a.free(b);
  EXPECT_DEATH(a.free(b), "double free of KV block 0");
  EXPECT_DEATH(a.free(1), "double free of KV block 1");  // never allocated
}

TEST(block_allocator_death, allocating_with_nothing_free_aborts) {
  block_allocator a(1, 16);
  a.allocate();
  EXPECT_EQ(a.can_allocate(1), alloc_status::later);
  EXPECT_DEATH(a.allocate(), "no KV block free");
}

}  // namespace
}  // namespace baton
