// row_claims: every row of a round goes to exactly one piece, pieces start on the
// alignment, and a thread that finishes early takes rows from another's range.
#include "runtime/compute/row_claims.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"

namespace baton {
namespace {

struct taken {
  int32_t product;
  int64_t r0, r1;
  int thread;
};

/// Runs one round on n_threads, thread `slow` sleeping per piece; returns every piece.
/// Each thread waits in its first piece until every thread has one, so that each owns a
/// range (ranges.size() >= n_threads) before any finishes.
std::vector<taken> round(const std::vector<row_claims::range>& ranges, int64_t piece,
                         int64_t align, int n_threads, int slow) {
  row_claims claims;
  claims.reset(ranges, piece, align);
  std::mutex m;
  std::vector<taken> out;
  std::atomic<int> started{0};
  cpu::thread_pool pool(n_threads);
  pool.run([&](int ith, int) {
    bool first = true;
    claims.work([&](int32_t product, int64_t r0, int64_t r1) {
      if (first) {
        first = false;
        started.fetch_add(1);
        while (started.load() < n_threads) {
          std::this_thread::yield();
        }
      }
      if (ith == slow) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      std::lock_guard lock(m);
      out.push_back({product, r0, r1, ith});
    });
  });
  return out;
}

TEST(RowClaims, EveryRowOnceInAlignedPieces) {
  // two products: 1000 rows (not a multiple of 16) and 300, ranges of 208 rows
  const std::vector<int64_t> n_out = {1000, 300};
  std::vector<row_claims::range> ranges;
  for (int32_t p = 0; p < 2; ++p) {
    for (int64_t r = 0; r < n_out[p]; r += 208) {
      ranges.push_back({p, r, std::min(n_out[p], r + 208)});
    }
  }
  for (int n_threads : {1, 2, 3, 5}) {
    for (int64_t piece : {16, 48, 208, 416}) {
      const auto out = round(ranges, piece, 16, n_threads, n_threads - 1);
      std::vector<std::vector<int>> count = {std::vector<int>(1000), std::vector<int>(300)};
      for (const taken& t : out) {
        ASSERT_LT(t.r0, t.r1);
        // a piece starts on a multiple of 16 from its range's start, which is one here
        EXPECT_EQ(t.r0 % 16, 0) << "piece " << piece << " threads " << n_threads;
        for (int64_t r = t.r0; r < t.r1; ++r) {
          ++count[t.product][r];
        }
      }
      for (int32_t p = 0; p < 2; ++p) {
        for (int64_t r = 0; r < n_out[p]; ++r) {
          ASSERT_EQ(count[p][r], 1) << "product " << p << " row " << r << " piece " << piece
                                    << " threads " << n_threads;
        }
      }
    }
  }
}

TEST(RowClaims, AFastThreadTakesFromTheSlowOnesRange) {
  // one range each; thread 1 sleeps per piece, so thread 0 ends up with most of range 1
  const std::vector<row_claims::range> ranges = {{0, 0, 1024}, {0, 1024, 2048}};
  const auto out = round(ranges, 64, 16, 2, 1);
  int64_t rows_of_0 = 0;
  for (const taken& t : out) {
    if (t.thread == 0) {
      rows_of_0 += t.r1 - t.r0;
    }
  }
  EXPECT_GT(rows_of_0, 1024 + 256) << "thread 0 took no pieces of the slow thread's range";
}

TEST(RowClaims, EmptyRangesAndAReusedObject) {
  row_claims claims;
  std::vector<row_claims::range> ranges = {{0, 5, 5}, {1, 0, 17}};
  for (int r = 0; r < 3; ++r) {  // reset may reuse its storage
    claims.reset(ranges, 16, 16);
    std::vector<taken> out;
    claims.work([&](int32_t product, int64_t r0, int64_t r1) {
      out.push_back({product, r0, r1, 0});
    });
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].product, 1);
    EXPECT_EQ(out[0].r0, 0);
    EXPECT_EQ(out[0].r1, 16);
    EXPECT_EQ(out[1].r0, 16);
    EXPECT_EQ(out[1].r1, 17);
    ranges.push_back({2, 0, 0});
  }
}

}  // namespace
}  // namespace baton
