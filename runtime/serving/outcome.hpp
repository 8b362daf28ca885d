// How a request ends, as types: why it finished (`finish_reason`: what the scheduler,
// the router and every client compare) and why it was refused or failed (`refusal`:
// what the front end picks its HTTP status from, through launch/serve/status_table.hpp).
// Their own file, below the actors, because the scheduler decides stop / length /
// cancelled and the front end's status table reads the refusal kinds, and neither
// needs the actor system to do so. Texts that come with an outcome are for people:
// no component reads another's text to learn what happened.
#pragma once

#include <cstdint>
#include <string>

namespace baton {

/// Why a request's stream ended; `none` while it runs. `to_string` gives the names the
/// OpenAI API (and `baton run --json`) write: "stop", "length", "cancelled", "error".
enum class finish_reason : uint8_t {
  none,       ///< still running: not a final event
  stop,       ///< an end-of-generation token or a stop string
  length,     ///< max_tokens or the context reached
  cancelled,  ///< the client went away or the server's stop cancelled it
  error,      ///< refused or failed: the event's `error` says why, `error_kind` what kind
};

/// The OpenAI name ("stop", "length", "cancelled", "error"); "" for none. Also how
/// CAF prints it.
inline std::string to_string(finish_reason x) {
  switch (x) {
    case finish_reason::none: return "";
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::cancelled: return "cancelled";
    case finish_reason::error: return "error";
  }
  return "";
}

/// Why a request was refused or ended with an error, as a type: the front end chooses
/// its HTTP status from this, never from the text that comes with it (that is for
/// people and may change).
enum class refusal : uint8_t {
  none,           ///< not refused
  queue_full,     ///< max_num_seqs + max_queue requests in the system (retry later)
  key_quota,      ///< this key's requests in flight reached max_per_key (retry later)
  stage_down,     ///< a stage of the pipeline died or left: nothing can run
  shutting_down,  ///< the server is stopping (a signal, or the head's shutdown)
  invalid,        ///< the request itself cannot be served (too long, bad sampling, ...)
  internal,       ///< a stage failed the request's step (a device fault): a server error
};

/// The enum's name as written above ("queue_full", ...); also how CAF prints it.
inline std::string to_string(refusal x) {
  switch (x) {
    case refusal::none: return "none";
    case refusal::queue_full: return "queue_full";
    case refusal::key_quota: return "key_quota";
    case refusal::stage_down: return "stage_down";
    case refusal::shutting_down: return "shutting_down";
    case refusal::invalid: return "invalid";
    case refusal::internal: return "internal";
  }
  return "refusal(" + std::to_string(static_cast<int>(x)) + ")";
}

}  // namespace baton
