// row_claims.hpp.
#include "runtime/compute/row_claims.hpp"

#include <algorithm>

#include "runtime/system/error.hpp"

namespace baton {

void row_claims::reset(const std::vector<range>& ranges, int64_t piece, int64_t align) {
  // rows and piece below 2^31 each, so that lo + piece cannot wrap in 32 bits
  BATON_ASSERT(align >= 1 && piece >= align && piece % align == 0 && piece <= INT32_MAX);
  ranges_ = ranges;
  if (left_capacity_ < ranges_.size()) {
    left_capacity_ = std::max<size_t>(ranges_.size(), 2 * left_capacity_);
    left_ = std::make_unique<std::atomic<uint64_t>[]>(left_capacity_);
  }
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const int64_t rows = ranges_[i].r1 - ranges_[i].r0;
    BATON_ASSERT(rows >= 0 && rows <= INT32_MAX);
    left_[i].store(pack(0, static_cast<uint32_t>(rows)), std::memory_order_relaxed);
  }
  piece_ = static_cast<uint32_t>(piece);
  align_ = static_cast<uint32_t>(align);
  next_.store(0, std::memory_order_release);
}

std::optional<row_claims::piece_rows> row_claims::take(size_t i, bool front) {
  uint64_t v = left_[i].load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t lo = lo_of(v), hi = hi_of(v);
    if (lo >= hi) {
      return std::nullopt;
    }
    // a quarter of the rows left at most (down to align): near a range's end its pieces
    // shrink, so the threads finish within a small piece of each other
    const uint32_t size = std::min(piece_, std::max(align_, (hi - lo) / 4 / align_ * align_));
    piece_rows p{};
    uint64_t rest = 0;
    if (front) {
      // lo stays a multiple of align: size is one or the range ends here
      p = {lo, std::min(hi, lo + size)};
      rest = pack(p.hi, hi);
    } else {
      // the back piece starts on a multiple of align at or above lo
      const uint32_t start = hi - lo > size ? (hi - size) / align_ * align_ : lo;
      p = {std::max(lo, start), hi};
      rest = pack(lo, p.lo);
    }
    if (left_[i].compare_exchange_weak(v, rest, std::memory_order_relaxed)) {
      return p;
    }
  }
}

}  // namespace baton
