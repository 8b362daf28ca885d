// The admission actor: decides ok / never (an `admit`) for each request before the router
// sees it. It holds the concurrency limits (max_num_seqs running + max_queue waiting,
// beyond which: queue_full with a retry-after hint), a per-key concurrency quota so one
// client cannot take the whole server, and the size checks (prompt + max_tokens within
// the context and within the KV cache). Admitted requests go on to the router; the
// router reports each finished one back, which frees its place. Every refusal carries
// its kind (a `refusal`, what callers compare) beside a message for people. Once told
// to refuse (a stage died, the server stops), it refuses every later request with that
// kind and message.
#pragma once

#include "actors/messages.hpp"
#include "runtime/serving/serving_config.hpp"

namespace baton {

/// The serving settings it reads (max_num_seqs, max_queue, max_per_key, n_ctx and the KV
/// capacity) and the router it forwards admitted requests to.
struct admission_config : serving_config {
  router_actor router;
};

admission_actor spawn_admission(caf::actor_system& sys, admission_config cfg);

/// Why `n` choices cannot run on a server of `max_num_seqs` sequences, or empty: the
/// admission's check, which a front end may make first to name the field.
std::string choices_error(int32_t n, int32_t max_num_seqs);

/// The decision alone (no actor), for tests: `in_system` admitted and not finished,
/// `key_count` of this request's key.
admission decide(const admission_config& cfg, const gen_request& r, int32_t in_system,
                 int32_t key_count);

}  // namespace baton
