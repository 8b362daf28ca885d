// What the router does around its scheduler, in one place for the live router
// (actors/router.cpp) and the simulator (runtime/sim): `resolve_serving` fills the settings
// left to their defaults (micro-batches by the stage count, a KV pool of one sequence when
// nothing sized it) and refuses impossible ones; `pump_steps` hands every step the
// scheduler will give now to a dispatcher (the router's: a descriptor to each shard; the
// simulator's: the step's way through the modelled stages), after any change the router
// hears (a request, a result, a cancel, a resize).
#pragma once

#include <cstdint>
#include <functional>

#include "runtime/serving/scheduler.hpp"
#include "runtime/system/error.hpp"

namespace baton {

/// `sv` with its defaults resolved for a pipeline of `n_stages` stages of a model trained
/// on `n_ctx_train` tokens; an error names the setting that cannot work.
result<serving_config> resolve_serving(serving_config sv, int64_t n_stages, int64_t n_ctx_train);

/// Dispatches every step `s` gives now; how many.
size_t pump_steps(scheduler& s, const std::function<void(sched_step&&)>& dispatch);

}  // namespace baton
