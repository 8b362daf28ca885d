// runtime/system/huge_pages: buffers of 2 MiB and more are mapped apart (whole huge
// pages), smaller ones come from the heap; both behave as any vector's.
#include <gtest/gtest.h>

#include "runtime/system/huge_pages.hpp"

namespace baton {
namespace {

TEST(huge_pages, mapped_and_heap_buffers_hold_what_is_written) {
  const size_t big = (size_t{5} << 20) + 123;  // rounded up to 6 MiB
  {
    byte_buffer a(big, 7);
    ASSERT_EQ(a.size(), big);
    EXPECT_EQ(a[0], 7);
    EXPECT_EQ(a[big - 1], 7);
    a[big / 2] = 9;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4096, 0u);  // a mapping of its own
    byte_buffer copy = a;
    EXPECT_EQ(copy[big / 2], 9);
  }
  byte_buffer b(big);
  EXPECT_EQ(b[big / 2], 0);
  wire_buffer small(100, 'x');
  EXPECT_EQ(small[99], 'x');
  // a buffer that grows past 2 MiB moves from the heap to a mapping
  byte_buffer grows(1000, 1);
  grows.resize(size_t{3} << 20, 2);
  EXPECT_EQ(grows[999], 1);
  EXPECT_EQ(grows.back(), 2);
}

}  // namespace
}  // namespace baton
