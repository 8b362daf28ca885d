// Replaying a scheduler's recording (scheduler::set_trace's trace_event, in order) on a
// fresh scheduler: the same calls, each decision compared with the recorded one. How the
// live router's schedule and the simulator's (runtime/sim) are shown to be the same.
#pragma once

#include <string>
#include <vector>

#include "runtime/serving/scheduler.hpp"

namespace baton {

/// Replays `events` (a trace_event recording) on a fresh scheduler of `cfg`: the same
/// calls in the same order, each step compared with the recorded one. Empty when every
/// decision was the same; else the first difference, described.
std::string replay_trace(const scheduler_config& cfg, const std::vector<int32_t>& eog_ids,
                         const std::vector<trace_event>& events);

}  // namespace baton
