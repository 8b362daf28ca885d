// shard.hpp. The computation is the runtime's; this file only moves a step through it.
#include "actors/shard.hpp"

#include <chrono>
#include <map>

#include "kernels/cpu/thread_pool.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/stage_executor.hpp"

namespace baton {

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// What a shard owns; built once when the actor starts.
struct shard_core {
  explicit shard_core(const shard_config& c)
      : cfg(c),
        pool(c.n_threads),
        kv(c.first_layer, c.last_layer, c.n_blocks, c.block_size, c.m->config().n_head_kv,
           c.m->config().n_embd_head_k, c.kv_type),
        exec(c.m, c.first_layer, c.last_layer, kv, pool, c.kernels) {}

  /// Runs one step; returns the result the last stage reports (empty elsewhere).
  std::optional<step_result> run(const step_desc& d) {
    const int64_t t0 = now_us();
    b.clear();
    for (size_t i = 0; i < d.seqs.size(); ++i) {
      const seq_slice& s = d.seqs[i];
      b.block_tables.push_back(&s.block_table);
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        const bool last = j + 1 == s.tokens.size();
        b.add(static_cast<int32_t>(i), s.tokens[j], s.first_pos + static_cast<int32_t>(j),
              last && s.want_token);
      }
    }
    std::optional<step_result> res;
    if (cfg.stage > 0) {
      auto h = cfg.data->recv(d.step_id, cfg.stage, std::chrono::minutes(5));
      if (!h) {
        res = step_result{d.step_id, {}, {}, "stage " + std::to_string(cfg.stage) +
                                                 ": no activations from the previous stage"};
        timings.push_back({d.step_id, cfg.stage, t0, now_us()});
        return res;
      }
      hidden = std::move(*h);
    }
    exec.forward(b, hidden, logits);
    if (cfg.stage + 1 < cfg.n_stages) {
      cfg.data->send(d.step_id, cfg.stage + 1, std::move(hidden));
      hidden = {};
    } else {
      res = step_result{d.step_id, {}, {}, ""};
      const auto n_vocab = static_cast<size_t>(cfg.m->config().n_vocab);
      size_t row = 0;
      for (const seq_slice& s : d.seqs) {
        if (!s.want_token) {
          continue;
        }
        auto it = samplers.find(s.seq_id);
        if (it == samplers.end()) {
          it = samplers.emplace(s.seq_id, sampler(s.sampling)).first;
        }
        const std::span<const float> l(logits.data() + row * n_vocab, n_vocab);
        res->seq_ids.push_back(s.seq_id);
        res->tokens.push_back(it->second.sample(l, s.history_tail));
        ++row;
      }
    }
    timings.push_back({d.step_id, cfg.stage, t0, now_us()});
    return res;
  }

  // -- member variables -------------------------------------------------------
  shard_config cfg;
  cpu::thread_pool pool;
  kv_storage kv;
  stage_executor exec;
  batch b;
  std::vector<float> hidden;
  std::vector<float> logits;
  std::map<uint64_t, sampler> samplers;
  std::vector<step_timing> timings;
};

struct shard_state {
  std::unique_ptr<shard_core> core;
};

shard_actor::behavior_type shard_impl(shard_actor::stateful_pointer<shard_state> self,
                                      shard_config cfg) {
  self->state.core = std::make_unique<shard_core>(cfg);
  return {
      [=](step_atom, const step_desc& d) {
        auto res = self->state.core->run(d);
        if (res) {
          // the last stage (or a failing one) answers whoever sent the step: the router
          self->send(caf::actor_cast<router_actor>(self->current_sender()), result_atom::value,
                     std::move(*res));
        }
      },
      [=](release_atom, uint64_t seq_id) { self->state.core->samplers.erase(seq_id); },
      [=](stats_atom) { return self->state.core->timings; },
  };
}

}  // namespace

shard_actor spawn_shard(caf::actor_system& sys, shard_config cfg) {
  return sys.spawn<caf::detached>(shard_impl, std::move(cfg));
}

}  // namespace baton
