// recovery_plan.hpp.
#include "actors/recovery_plan.hpp"

#include <map>

namespace baton {

namespace {

std::string layers_text(int64_t first, int64_t last) {
  return "[" + std::to_string(first) + ", " + std::to_string(last) + ")";
}

enum class merge_to { split, before, after };

/// The survivors of `running` (with `lost` ranks) taking the lost layers: each run of
/// consecutive lost stages goes to its neighbours as `how` says; false when a run has no
/// neighbour on that side.
bool merge_lost(const std::vector<stage_setup>& running, const std::vector<int32_t>& from,
                const std::set<int32_t>& lost, merge_to how, recovery_candidate& out) {
  // survivors, with the running stage each keeps
  std::vector<stage_setup> kept;
  std::vector<int32_t> kept_from;
  for (size_t s = 0; s < running.size(); ++s) {
    if (!lost.count(running[s].rank)) {
      kept.push_back(running[s]);
      kept_from.push_back(from[s]);
    }
  }
  if (kept.empty()) {
    return false;
  }
  std::string said;
  // every gap between survivors (and before the first, after the last) is lost layers
  for (size_t k = 0; k <= kept.size(); ++k) {
    const int64_t gap_first = k == 0 ? 0 : kept[k - 1].last_layer;
    const int64_t gap_last = k == kept.size() ? running.back().last_layer : kept[k].first_layer;
    if (gap_first >= gap_last) {
      continue;
    }
    stage_setup* before = k > 0 ? &kept[k - 1] : nullptr;
    stage_setup* after = k < kept.size() ? &kept[k] : nullptr;
    merge_to m = how;
    if (!before) {
      if (how == merge_to::before) {
        return false;
      }
      m = merge_to::after;
    } else if (!after) {
      if (how == merge_to::after) {
        return false;
      }
      m = merge_to::before;
    }
    if (!said.empty()) {
      said += "; ";
    }
    if (m == merge_to::split) {
      const int64_t mid = gap_first + (gap_last - gap_first) / 2;
      if (mid == gap_first) {  // one layer: to the stage before
        before->last_layer = gap_last;
        said += "layers " + layers_text(gap_first, gap_last) + " to rank " +
                std::to_string(before->rank);
      } else {
        before->last_layer = mid;
        after->first_layer = mid;
        said += "layers " + layers_text(gap_first, mid) + " to rank " +
                std::to_string(before->rank) + " and " + layers_text(mid, gap_last) +
                " to rank " + std::to_string(after->rank);
      }
    } else if (m == merge_to::before) {
      before->last_layer = gap_last;
      said += "layers " + layers_text(gap_first, gap_last) + " to rank " +
              std::to_string(before->rank);
    } else {
      after->first_layer = gap_first;
      said += "layers " + layers_text(gap_first, gap_last) + " to rank " +
              std::to_string(after->rank);
    }
  }
  out.stages = std::move(kept);
  out.derived_from = std::move(kept_from);
  out.how = said.empty() ? out.how : (out.how.empty() ? said : out.how + "; " + said);
  return true;
}

}  // namespace

std::vector<recovery_candidate> recovery_candidates(const std::vector<stage_setup>& running,
                                                    const std::set<int32_t>& lost,
                                                    int32_t world) {
  std::vector<recovery_candidate> out;
  std::vector<int32_t> identity(running.size());
  std::set<int32_t> busy;  // ranks holding a stage
  for (size_t s = 0; s < running.size(); ++s) {
    identity[s] = static_cast<int32_t>(s);
    busy.insert(running[s].rank);
  }
  std::vector<int32_t> standbys;
  for (int32_t r = 0; r < world; ++r) {
    if (!busy.count(r) && !lost.count(r)) {
      standbys.push_back(r);
    }
  }
  // standbys first: each takes one lost rank's stages as they were (a lost rank without a
  // standby left has its layers merged into neighbours, as below)
  std::vector<int32_t> lost_holding;
  for (int32_t r : lost) {
    if (busy.count(r)) {
      lost_holding.push_back(r);
    }
  }
  if (!standbys.empty() && !lost_holding.empty()) {
    recovery_candidate c;
    c.stages = running;
    c.derived_from = identity;
    std::set<int32_t> still_lost = lost;
    std::map<int32_t, int32_t> takes;  // lost rank -> standby
    for (size_t i = 0; i < lost_holding.size() && i < standbys.size(); ++i) {
      takes[lost_holding[i]] = standbys[i];
      still_lost.erase(lost_holding[i]);
    }
    for (const auto& [dead, standby] : takes) {
      std::string stages_text;
      for (size_t s = 0; s < c.stages.size(); ++s) {
        if (c.stages[s].rank == dead) {
          c.stages[s].rank = standby;
          stages_text += (stages_text.empty() ? "" : ", ") + std::to_string(s) + " (layers " +
                         layers_text(c.stages[s].first_layer, c.stages[s].last_layer) + ")";
        }
      }
      c.how += (c.how.empty() ? "" : "; ") + std::string("standby rank ") +
               std::to_string(standby) + " takes rank " + std::to_string(dead) + "'s stage " +
               stages_text;
    }
    bool all_covered = true;
    for (int32_t r : lost_holding) {
      all_covered = all_covered && takes.count(r) > 0;
    }
    if (all_covered) {
      out.push_back(std::move(c));
    } else {
      recovery_candidate merged;
      merged.how = c.how;
      if (merge_lost(c.stages, c.derived_from, still_lost, merge_to::split, merged)) {
        out.push_back(std::move(merged));
      }
    }
  }
  for (merge_to how : {merge_to::split, merge_to::before, merge_to::after}) {
    recovery_candidate c;
    if (merge_lost(running, identity, lost, how, c)) {
      bool same = false;  // a lost stage at either end: "split" and one side coincide
      for (const auto& o : out) {
        bool eq = o.stages.size() == c.stages.size();
        for (size_t s = 0; eq && s < c.stages.size(); ++s) {
          eq = o.stages[s].rank == c.stages[s].rank &&
               o.stages[s].first_layer == c.stages[s].first_layer &&
               o.stages[s].last_layer == c.stages[s].last_layer;
        }
        same = same || eq;
      }
      if (!same) {
        out.push_back(std::move(c));
      }
    }
  }
  return out;
}

}  // namespace baton
