// sched_trace.hpp.
#include "runtime/serving/sched_trace.hpp"

namespace baton {

namespace {

std::string ids_text(const std::vector<uint64_t>& ids, const std::vector<int32_t>& n) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    out += (i ? " " : "") + std::to_string(ids[i]) + "x" +
           (i < n.size() ? std::to_string(n[i]) : std::string("?"));
  }
  return "[" + out + "]";
}

}  // namespace

std::string replay_trace(const scheduler_config& cfg, const std::vector<int32_t>& eog_ids,
                         const std::vector<trace_event>& events) {
  scheduler s(cfg, eog_ids);
  for (size_t i = 0; i < events.size(); ++i) {
    const trace_event& e = events[i];
    const std::string at = "event " + std::to_string(i) + ": ";
    switch (e.what) {
      case trace_event::kind::add:
        s.add(e.request);
        break;
      case trace_event::kind::step:
      case trace_event::kind::no_step: {
        const auto step = s.next_step();
        if (!step) {
          if (e.what == trace_event::kind::step) {
            return at + "the recording has step " + std::to_string(e.id) + " " +
                   ids_text(e.seq_ids, e.n_tokens) + ", the replay none";
          }
          break;
        }
        std::vector<uint64_t> ids;
        std::vector<int32_t> n;
        for (const auto& sl : step->slices) {
          ids.push_back(sl.seq_id);
          n.push_back(static_cast<int32_t>(sl.tokens.size()));
        }
        if (e.what == trace_event::kind::no_step || step->step_id != e.id || ids != e.seq_ids ||
            n != e.n_tokens) {
          return at + "the recording has " +
                 (e.what == trace_event::kind::no_step
                      ? std::string("no step")
                      : "step " + std::to_string(e.id) + " " + ids_text(e.seq_ids, e.n_tokens)) +
                 ", the replay step " + std::to_string(step->step_id) + " " + ids_text(ids, n);
        }
        break;
      }
      case trace_event::kind::done:
        s.on_step_done(e.id, e.seq_ids, e.tokens);
        break;
      case trace_event::kind::cancel:
        s.cancel(e.id);
        break;
      case trace_event::kind::finish:
        s.finish(e.id);
        break;
      case trace_event::kind::requeue: {
        std::vector<uint64_t> replayed;
        s.requeue_all(replayed);
        break;
      }
      case trace_event::kind::reset:
        s.reset_pool(static_cast<int32_t>(e.id));
        break;
      case trace_event::kind::other:
        return at + "a reshard's pool resize cannot be replayed";
    }
  }
  return {};
}

}  // namespace baton
