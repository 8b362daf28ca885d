// Asking an actor on another rank and waiting for its answer without being stuck when that
// rank dies or hangs: CAF answers a request to a proxy whose node is gone only when its
// timeout runs out (minutes for a reshard's prepare). A helper actor sends the message,
// watches the receiver and hands back the answer, the receiver's going down, or nothing
// once the caller gives up.
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace baton {

/// What ask() got: the answer, or why none came.
struct asked {
  std::optional<caf::message> answer;
  std::string error;  ///< when no answer: "went down (...)", "no answer within 30 s", ...
};

/// A question under way (ask_start); wait for it with ask_wait.
struct pending_ask {
  struct state;
  std::shared_ptr<state> st;  ///< the answer, once it is there
  caf::actor helper;          ///< waits for it (ends with ask_wait)
};

/// Sends `msg` to `whom` and returns at once: several questions can be under way.
pending_ask ask_start(caf::actor_system& sys, const caf::actor& whom, caf::message msg);
/// Waits for `q`'s answer as ask() does.
asked ask_wait(pending_ask& q, std::chrono::milliseconds timeout,
               const std::function<std::string()>& give_up = {});

/// Sends `msg` to `whom` and waits for the answer (the handler's result, sent back), for
/// `whom` going down (its process died or its host is gone), for `give_up()` to turn
/// true (asked every 100 ms; its text is the error), or for `timeout`.
asked ask(caf::actor_system& sys, const caf::actor& whom, caf::message msg,
          std::chrono::milliseconds timeout,
          std::function<std::string()> give_up = {});

}  // namespace baton
