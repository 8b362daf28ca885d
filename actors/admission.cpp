// admission.hpp: `decide`, which checks one request against the context length, the KV cache,
// the queue and its key's quota; and the actor around it, which counts requests in the system
// and per key, forwards admitted ones to the router, and refuses all once told to (refuse_atom).
#include "actors/admission.hpp"

#include <map>

namespace baton {

namespace {

admission never(refusal why, std::string message, int32_t retry_after_s = 0) {
  return admission{admit::never, why, std::move(message), retry_after_s};
}

}  // namespace

std::string choices_error(int32_t n, int32_t max_num_seqs) {
  if (n >= 1 && n <= max_num_seqs) {
    return "";
  }
  return "n (" + std::to_string(n) + ") must be between 1 and " + std::to_string(max_num_seqs) +
         " (the sequences the server runs at once)";
}

admission decide(const admission_config& cfg, const gen_request& r, int32_t in_system,
                 int32_t key_count) {
  const auto n_prompt = static_cast<int64_t>(r.prompt.size());
  const int64_t total = n_prompt + r.max_tokens;
  if (r.prompt.empty()) {
    return never(refusal::invalid, "empty prompt");
  }
  if (r.max_tokens < 1) {
    return never(refusal::invalid,
                 "max_tokens (" + std::to_string(r.max_tokens) + ") must be >= 1");
  }
  if (total > cfg.n_ctx) {
    return never(refusal::invalid,
                 "context length: prompt (" + std::to_string(n_prompt) + " tokens) + max_tokens (" +
                     std::to_string(r.max_tokens) + ") = " + std::to_string(total) +
                     " exceeds the context length (" + std::to_string(cfg.n_ctx) + ")");
  }
  if (cfg.kv_capacity_tokens() > 0 && total > cfg.kv_capacity_tokens()) {
    return never(refusal::invalid,
                 "kv cache: prompt + max_tokens = " + std::to_string(total) +
                     " tokens exceeds the KV cache (" + std::to_string(cfg.kv_capacity_tokens()) +
                     " tokens)");
  }
  if (auto v = r.sampling.validate(); !v) {
    return never(refusal::invalid, v.err().message);
  }
  if (auto why = choices_error(r.n, cfg.max_num_seqs); !why.empty()) {
    return never(refusal::invalid, why);
  }
  // a request of n choices is n sequences, for the queue and the key's quota alike
  if (in_system + r.n > cfg.max_num_seqs + cfg.max_queue) {
    return never(refusal::queue_full, "queue full", 1);
  }
  if (cfg.max_per_key > 0 && key_count + r.n > cfg.max_per_key) {
    return never(refusal::key_quota,
                 "key quota: " + std::to_string(key_count) +
                     " sequences of this key in flight, this request adds " +
                     std::to_string(r.n) + " (limit " + std::to_string(cfg.max_per_key) + ")",
                 1);
  }
  return admission{};
}

namespace {

struct admission_state {
  admission_config cfg;
  int32_t in_system = 0;
  std::map<std::string, int32_t> per_key;
  std::map<uint64_t, std::string> keys;  // admitted request -> key
  admission refusing;  // never once every request is refused
};

admission_actor::behavior_type admission_impl(
    admission_actor::stateful_pointer<admission_state> self, admission_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
      [=](submit_atom, gen_request& r, client_actor& client) -> admission {
        auto& st = self->state;
        if (st.refusing.verdict != admit::ok) {
          return st.refusing;
        }
        admission a = decide(st.cfg, r, st.in_system, st.per_key[r.key]);
        if (a.verdict == admit::ok) {
          st.in_system += r.n;
          st.per_key[r.key] += r.n;
          for (int32_t i = 0; i < r.n; ++i) {  // each choice is done on its own
            st.keys[r.id + static_cast<uint64_t>(i)] = r.key;
          }
          self->send(st.cfg.router, submit_atom::value, std::move(r), client);
        }
        return a;
      },
      [=](done_atom, uint64_t id) {
        auto& st = self->state;
        auto it = st.keys.find(id);
        if (it == st.keys.end()) {
          return;
        }
        --st.in_system;
        if (--st.per_key[it->second] == 0) {
          st.per_key.erase(it->second);
        }
        st.keys.erase(it);
      },
      [=](refuse_atom, refusal why, std::string& message) {
        auto& st = self->state;
        if (st.refusing.verdict == admit::ok) {  // the first cause stays: it is the root one
          st.refusing = never(why, std::move(message));
        }
      },
  };
}

}  // namespace

admission_actor spawn_admission(caf::actor_system& sys, admission_config cfg) {
  return sys.spawn(admission_impl, std::move(cfg));
}

}  // namespace baton
