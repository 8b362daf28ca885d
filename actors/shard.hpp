// The shard actor: owns layers [first, last) of the model through a stage_compute and the
// physical KV storage for them, and computes on its own thread (a detached actor), never
// blocking CAF's scheduler. A step arrives as a descriptor from the router; activations
// come from the previous stage and go to the next through the transport, which announces
// each arrival with an input message, so the shard never waits inside a handler and
// stays responsive (stats, shutdown) while a predecessor is slow or gone. The last stage
// samples each sequence's next token (keeping each sequence's sampler, so its seeded
// generator runs on across steps and recomputes) and sends only token ids back.
#pragma once

#include <functional>
#include <memory>

#include "actors/messages.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/transport/transport.hpp"

namespace baton {

struct shard_config {
  std::shared_ptr<const model> m;
  int32_t stage = 0;
  int32_t n_stages = 1;
  uint64_t epoch = 0;  ///< the pipeline's shape it belongs to (its transfers carry it)
  int64_t first_layer = 0;
  int64_t last_layer = 0;
  /// The stage's layers on its device, with their KV storage (made before the actor, so
  /// a device that cannot hold them fails the start with a message).
  std::shared_ptr<stage_compute> compute;
  std::shared_ptr<transport> data;
  /// Called when the head says the job is over; true: a rank of the job died.
  std::function<void(bool)> on_shutdown;
};

/// Spawns a shard on its own thread.
shard_actor spawn_shard(caf::actor_system& sys, shard_config cfg);

}  // namespace baton
