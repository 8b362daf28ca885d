// Rows of a few ranges shared out among a pool's threads as they get to them. Each thread
// first takes a whole range (sized as one thread's share, so that it reads one long
// sequential stream) and works through it from the front, a piece at a time; a thread with
// no untaken range left then takes pieces from the back of the range with the most rows
// left. Threads thus finish together even when one reads slower than the others (a decode
// step's matmuls waited ~9 % of their time for the slower thread when each thread had
// exactly its ranges). A piece is at most a quarter of its range's rows left, so pieces
// shrink near a range's end and the last one to finish is small (Zen 5, Q4_K_M tg64, four
// interleaved rounds: 67.2 % -> 70.5 % of the read, medians; the pool's spin samples in
// perf 6.8 % -> 5.1 %).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace baton {

class row_claims {
 public:
  struct range {
    int32_t product;  // whose rows: the caller's index
    int64_t r0, r1;   // rows [r0, r1)
  };

  /// Starts a round over `ranges` in pieces of `piece` rows; piece boundaries fall on
  /// multiples of `align` rows from each range's r0 (other than a range's own end). Not
  /// concurrent with work().
  void reset(const std::vector<range>& ranges, int64_t piece, int64_t align);

  /// Calls f(product, r0, r1) for pieces until every row of the round is taken; each row
  /// is given to exactly one call, on whichever thread. Every thread of the round calls it.
  template <class F>
  void work(F&& f) {
    const size_t n = ranges_.size();
    for (size_t i = next_.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next_.fetch_add(1, std::memory_order_relaxed)) {
      while (const auto p = take(i, true)) {
        f(ranges_[i].product, ranges_[i].r0 + p->lo, ranges_[i].r0 + p->hi);
      }
    }
    for (;;) {
      size_t most = n;
      uint32_t most_rows = 0;
      for (size_t j = 0; j < n; ++j) {
        const uint64_t v = left_[j].load(std::memory_order_relaxed);
        if (const uint32_t rows = hi_of(v) - lo_of(v); rows > most_rows) {
          most = j;
          most_rows = rows;
        }
      }
      if (most == n) {
        return;
      }
      if (const auto p = take(most, false)) {
        f(ranges_[most].product, ranges_[most].r0 + p->lo, ranges_[most].r0 + p->hi);
      }
    }
  }

 private:
  struct piece_rows {
    uint32_t lo, hi;  // from the range's r0
  };
  static uint32_t lo_of(uint64_t v) { return static_cast<uint32_t>(v >> 32); }
  static uint32_t hi_of(uint64_t v) { return static_cast<uint32_t>(v); }
  static uint64_t pack(uint32_t lo, uint32_t hi) { return (uint64_t{lo} << 32) | hi; }

  /// Takes the next piece of range i from its front (its owner) or its back (a helper).
  std::optional<piece_rows> take(size_t i, bool front);

  std::vector<range> ranges_;
  std::unique_ptr<std::atomic<uint64_t>[]> left_;  // per range: rows [lo, hi) not yet taken
  size_t left_capacity_ = 0;
  std::atomic<size_t> next_{0};  // the next range no thread owns
  uint32_t piece_ = 1, align_ = 1;
};

}  // namespace baton
