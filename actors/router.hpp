// The router actor: owns the scheduler (queues, logical block tables, micro-batches in
// flight) and the per-request text state (streaming UTF-8 decoder, stop strings), sends
// each step's descriptor to every shard and turns the last shard's sampled tokens into
// events for the request's client. It monitors every shard: when one goes down (its rank
// died), every request in flight ends with an error naming the stage (error_kind
// stage_down) and the scheduler forgets it, so no block stays taken; new ones are
// refused with that message; the stats read pipeline_state::stage_down. A stage that
// goes down after the head began stopping (shutdown) is expected (pipeline_state::stopped):
// nothing is printed and the requests end with "the server is shutting down"
// (shutting_down). A shard that quit on its own (exit reason normal or user_shutdown)
// reads "stopped", not "is down", in the message. After every change the router hands
// its counters to on_stats, so a reader never has to ask the actor (the front end's
// snapshot). A reshard pauses it (pause with the new pipeline's KV pool size: no new
// steps; the answer, true, comes once the steps in flight have finished, false if the
// pipeline went down meanwhile, with the blocks whose KV must move and their ids in the
// new pool — a pool of another size preempts the youngest sequences until the rest fit
// and lays the blocks out anew), then switches it to the new pipeline's shards (switch:
// the old ones are demonitored, the new pool and micro-batches apply, the epoch counts
// up, steps resume; with no shards it resumes the old pipeline and pool). Requests keep
// arriving and waiting while it is paused.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "actors/messages.hpp"
#include "runtime/serving/scheduler.hpp"
#include "runtime/text/tokenizer.hpp"

namespace baton {

struct router_config {
  scheduler_config sched;
  std::vector<shard_actor> shards;  ///< in stage order
  std::vector<int32_t> stage_ranks; ///< the rank of each stage (remote: not the router's)
  /// Called once when a stage's actor goes down (its rank died or left) while the
  /// head is not stopping.
  std::function<void(int32_t rank)> on_rank_down;
  /// When set (a job of several ranks): a lost stage is replaced instead. The router
  /// enters pipeline_state::recovering (no step runs; every running sequence, those in a
  /// step that will never return included, is requeued for recompute; new requests
  /// queue) and calls this once with the rank and why; then recover (the new
  /// pipeline's shards, ranks and KV blocks: the epoch counts up, replay begins) or fail
  /// (every request ends with the message; stage_down). lost: the head found a rank of
  /// the running pipeline dead or hung by other means (a heartbeat).
  std::function<void(int32_t rank, const std::string& why)> on_stage_lost;
  /// Called on the router's thread with its counters after every change (submit,
  /// finish, cancel, step result, a stage down) and once at the start.
  std::function<void(const router_stats&)> on_stats;
  std::shared_ptr<const tokenizer> tok;
  /// Hears the scheduler's every input and decision (scheduler::set_trace), on the
  /// router's thread: a recording the simulator can replay.
  std::function<void(const trace_event&)> trace;
};

router_actor spawn_router(caf::actor_system& sys, router_config cfg);

}  // namespace baton
