// Layer ranges as topology files write them: "0-15" (inclusive), "7" or "auto".
// A stage owns the half-open range [first, last) of transformer blocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

struct layer_range {
  int64_t first = 0;  ///< first layer of the stage
  int64_t last = 0;   ///< one past the last layer
  bool automatic = false;  ///< "auto": the planner decides

  int64_t size() const { return last - first; }
  /// "0-15" (inclusive, as written in files) or "auto".
  std::string to_string() const;
};

/// Parses "A-B" (inclusive, A <= B), "A" or "auto"; the error quotes the text and says
/// what is wrong with it ("'0..3': expected ..."); the caller names the field.
result<layer_range> parse_layer_range(std::string_view text);

/// Splits n_layer layers into n_stages contiguous ranges, the first stages taking the
/// remainder (n_layer 10, 3 stages: 0-3, 4-6, 7-9).
result<std::vector<layer_range>> split_layers(int64_t n_layer, int64_t n_stages);

}  // namespace baton
