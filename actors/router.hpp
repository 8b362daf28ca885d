// The router actor: owns the scheduler (queues, logical block tables, micro-batches in
// flight) and the per-request text state (streaming UTF-8 decoder, stop strings), sends
// each step's descriptor to every shard and turns the last shard's sampled tokens into
// events for the request's client.
#pragma once

#include <memory>
#include <vector>

#include "actors/messages.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/tokenizer.hpp"

namespace baton {

struct router_config {
  scheduler_config sched;
  std::vector<shard_actor> shards;  ///< in stage order
  std::shared_ptr<const tokenizer> tok;
};

router_actor spawn_router(caf::actor_system& sys, router_config cfg);

}  // namespace baton
