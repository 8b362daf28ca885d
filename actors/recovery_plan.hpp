// Where the layers of lost ranks go: the placements a recovery may try, in the order it
// tries them. A standby rank (alive, holding no stage) takes a lost rank's stages as they
// were; without one, the lost layers go to the surviving neighbours in the pipeline
// (split between the stage before and the stage after, or all to one of them). Which of
// these fits the survivors' budgets is the planner's question (pipeline_job's replan).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "actors/messages.hpp"

namespace baton {

/// One placement a recovery may switch to.
struct recovery_candidate {
  std::string how;                   ///< for people: "standby rank 3 takes stage 2 ..."
  std::vector<stage_setup> stages;
  /// [new stage] the running stage whose settings (memory share) it keeps.
  std::vector<int32_t> derived_from;
};

/// What a recovery switches to: the stages and the KV pool they hold.
struct recovery_plan {
  std::vector<stage_setup> stages;
  int32_t n_blocks = 0;
  std::string how;
};

/// The placements without `lost` ranks, best first (standbys first, then the lost
/// layers split between neighbours, then all to the stage before, then all to the stage
/// after); none when no stage survives. Ranks are those of a world of `world`.
std::vector<recovery_candidate> recovery_candidates(const std::vector<stage_setup>& running,
                                                    const std::set<int32_t>& lost,
                                                    int32_t world);

}  // namespace baton
