// What a reshard from one planned pipeline to another moves, rank by rank: the layers a
// rank gains (from another rank or device) and loses, the weight bytes it must load
// (gained layers, plus the embedding or the head when it newly runs the first or last
// stage), and the KV bytes that arrive for its gained layers at the new plan's full
// capacity (`baton plan --against`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "topology/layer_range.hpp"
#include "topology/memory_plan.hpp"

namespace baton {

struct rank_moves {
  int32_t rank = 0;
  std::vector<std::string> gained;  ///< "4-7 on cuda:0"
  std::vector<std::string> lost;
  uint64_t weight_bytes_to_load = 0;
  uint64_t kv_bytes_in = 0;         ///< at the new plan's capacity (every block full)
  bool standby = false;             ///< holds no stage in the new plan
};

/// Rank by rank (0 .. world - 1), what going from `from` to `to` moves; both plans of
/// the same model.
std::vector<rank_moves> plan_reshard_moves(const pipeline_plan& from, const pipeline_plan& to,
                                           const model& m, int32_t world);

}  // namespace baton
