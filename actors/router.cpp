// router.hpp. The arithmetic of scheduling lives in runtime/serving/scheduler; this actor only
// moves messages between it, the shards and the clients.
#include "actors/router.hpp"

#include <caf/io/all.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "runtime/serving/step_pump.hpp"
#include "runtime/text/stop_strings.hpp"

namespace baton {

namespace {

/// One sequence's client side: a request of n choices has n of them (ids id .. id + n - 1).
struct client_info {
  client_actor client;
  uint64_t request_id = 0;    // the request's id, which its events carry
  int32_t index = 0;          // the choice
  int32_t n_choices = 1;
  admission_actor admission;  // told when the request is done
  std::unique_ptr<stream_decoder> dec;
  std::unique_ptr<stop_strings> stops;
  int32_t prompt_tokens = 0;
  /// A constrained request: its constraint, the pipeline (epoch) whose last stage has
  /// it, and the tokens generated so far (a new last stage replays them).
  output_constraint constraint;
  uint64_t constraint_epoch = UINT64_MAX;
  std::vector<int32_t> generated;
};

struct router_state {
  std::unique_ptr<scheduler> sched;
  router_config cfg;
  std::map<uint64_t, client_info> clients;  // by sequence id
  std::map<uint64_t, int32_t> choices;      // requests of n > 1 choices with one open: n
  pipeline_state state = pipeline_state::running;
  std::string down_message;         // when not running: which stage went and why
  int32_t down_rank = -1;
  bool stopping = false;            // the head began stopping: a stage going down is expected
  uint64_t control_bytes = 0;       // CAF bytes to and from remote shards
  uint64_t remote_steps = 0;
  // a reshard: no new steps while paused; who waits for the in-flight ones to finish
  bool paused = false;
  int32_t pause_blocks = 0;         // the KV pool the reshard's new stages hold
  bool pause_recompute = false;     // the reshard moves no KV: sequences recompute
  std::vector<caf::typed_response_promise<bool, std::vector<int32_t>, std::vector<int32_t>>>
      drained;
  uint64_t epoch = 0;               // pipelines switched to
  // a lost stage: the requests recomputed on the new pipeline, until each has its next
  // token, and when the loss was seen
  std::set<uint64_t> replaying;
  std::chrono::steady_clock::time_point lost_at;
  uint64_t recomputed_at_loss = 0;  // the counter before the requeue
  uint64_t stage_failures = 0;
  uint64_t recoveries_ok = 0;
  uint64_t recoveries_failed = 0;
  uint64_t requests_replayed = 0;
  double last_recovery_seconds = 0;
};

using router_ptr = router_actor::stateful_pointer<router_state>;

void finish(router_ptr self, uint64_t id, gen_event ev) {
  auto& st = self->state;
  auto it = st.clients.find(id);
  if (it == st.clients.end()) {
    return;
  }
  client_info& c = it->second;
  st.replaying.erase(id);
  if (ev.finish != finish_reason::error && ev.finish != finish_reason::cancelled) {
    ev.text += c.stops->push(c.dec->flush());
    if (!c.stops->stopped()) {
      ev.text += c.stops->flush();
    }
  }
  ev.request_id = c.request_id;
  ev.index = c.index;
  ev.prompt_tokens = c.prompt_tokens;
  caf::anon_send(c.client, event_atom::value, std::move(ev));
  if (c.admission) {
    self->send(c.admission, done_atom::value, id);
  }
  self->send(st.cfg.shards.back(), release_atom::value, id);
  const uint64_t request = c.request_id;
  const int32_t n = c.n_choices;
  st.clients.erase(it);
  if (n > 1 && st.clients.lower_bound(request) == st.clients.lower_bound(request + n)) {
    st.choices.erase(request);  // its last choice ended
  }
}

/// Bytes a message takes on the wire between CAF nodes: the BASP header and the
/// serialized message (type names included, as 0.17 writes them).
uint64_t wire_bytes(caf::actor_system& sys, const caf::message& msg) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto err = sink(const_cast<caf::message&>(msg));
  return buf.size() + caf::io::basp::header_size;
}

bool is_remote(router_ptr self, size_t stage) {
  const auto& ranks = self->state.cfg.stage_ranks;
  return stage < ranks.size() && ranks[stage] != 0;
}

router_stats make_stats(router_ptr self) {
  const auto& st = self->state;
  const auto& s = *st.sched;
  const auto c = s.counters();
  router_stats out;
  out.running = s.n_running();
  out.waiting = s.n_waiting();
  out.in_flight = s.n_in_flight();
  out.free_blocks = s.n_free_blocks();
  out.total_blocks = s.n_blocks();
  out.steps = c.steps;
  out.preemptions = c.preemptions;
  out.recomputed_tokens = c.recomputed_tokens;
  out.resize_preemptions = c.resize_preemptions;
  out.forks = c.forks;
  out.forked_tokens = c.forked_tokens;
  out.prompt_tokens = c.prompt_tokens;
  out.generated_tokens = c.generated_tokens;
  out.cached_prompt_tokens = c.cached_prompt_tokens;
  out.prefix_hits = c.prefix_hits;
  out.evictions = c.evictions;
  out.control_bytes = st.control_bytes;
  out.remote_steps = st.remote_steps;
  out.state = st.state;
  out.down_message = st.down_message;
  out.epoch = st.epoch;
  out.paused = st.paused;
  out.down_rank = st.down_rank;
  out.stage_failures = st.stage_failures;
  out.recoveries_ok = st.recoveries_ok;
  out.recoveries_failed = st.recoveries_failed;
  out.requests_replayed = st.requests_replayed;
  out.last_recovery_seconds = st.last_recovery_seconds;
  return out;
}

/// Hands the counters to whoever keeps the snapshot: after every change.
void publish(router_ptr self) {
  if (self->state.cfg.on_stats) {
    self->state.cfg.on_stats(make_stats(self));
  }
}

void pump(router_ptr self) {
  auto& st = self->state;
  if (st.state != pipeline_state::running || st.paused) {
    return;
  }
  pump_steps(*st.sched, [&](sched_step&& step) {  // as the simulator pumps its scheduler
    step_desc d;
    d.step_id = step.step_id;
    d.seqs.reserve(step.slices.size());
    for (auto& s : step.slices) {
      d.seqs.push_back(seq_slice{s.seq_id, s.first_pos, std::move(s.tokens),
                                 std::move(s.block_table), s.want_token, s.sampling,
                                 std::move(s.history_tail), s.draw});
    }
    d.copy_from = std::move(step.copy_from);
    d.copy_to = std::move(step.copy_to);
    // constraints go to the last stage once, ahead of the first step that samples for
    // them there (messages between two actors keep their order)
    for (const auto& s : d.seqs) {
      auto c = s.want_token ? st.clients.find(s.seq_id) : st.clients.end();
      if (c != st.clients.end() && !c->second.constraint.empty() &&
          c->second.constraint_epoch != st.epoch) {
        c->second.constraint_epoch = st.epoch;
        self->send(st.cfg.shards.back(), constrain_atom::value, s.seq_id, c->second.constraint,
                   c->second.generated);
      }
    }
    bool remote = false;
    for (size_t i = 0; i < st.cfg.shards.size(); ++i) {
      if (is_remote(self, i)) {
        if (!remote) {
          st.remote_steps += 1;
          remote = true;
        }
        st.control_bytes += wire_bytes(self->system(), caf::make_message(step_atom::value, d));
      }
      self->send(st.cfg.shards[i], step_atom::value, d);
    }
  });
}

/// Ends every request with `why` (a stage is gone): nothing can run any more. The
/// scheduler forgets them all, those in a step included (their steps never return), so
/// every block is free again and the counters read zero.
void fail_all(router_ptr self, const std::string& why, refusal kind) {
  auto& st = self->state;
  st.sched->abort_all();
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : st.clients) {
    ids.push_back(id);
  }
  for (uint64_t id : ids) {
    gen_event ev;
    ev.finish = finish_reason::error;
    ev.error = why;
    ev.error_kind = kind;
    finish(self, id, std::move(ev));
  }
}

/// A pause waits for the steps in flight: answers it once none is left (true, and the
/// blocks holding KV), or once the pipeline cannot run any more (false).
/// With no step in flight: the blocks whose KV the new stages take, and their ids there
/// (the same unless the pool changes size: then the youngest sequences may be preempted
/// and the pool is laid out anew, committed at the switch).
void blocks_to_move(router_ptr self, std::vector<int32_t>& from, std::vector<int32_t>& to) {
  auto& st = self->state;
  if (st.pause_blocks == st.sched->n_blocks() && !st.pause_recompute) {
    from = st.sched->held_blocks();
    to = from;
    return;
  }
  const bool ok = st.sched->prepare_resize(st.pause_blocks, st.pause_recompute, from, to);
  BATON_ASSERT(ok);  // called with nothing in flight
}

void settle_pause(router_ptr self) {
  auto& st = self->state;
  const bool down = st.state != pipeline_state::running;
  if (st.drained.empty() || (!down && st.sched->n_in_flight() > 0)) {
    return;
  }
  std::vector<int32_t> from;
  std::vector<int32_t> to;
  if (!down) {
    blocks_to_move(self, from, to);
  }
  for (auto& rp : st.drained) {
    rp.deliver(!down, from, to);
  }
  st.drained.clear();
}

/// The last replayed request has its next token: the recovery is over.
void replay_progress(router_ptr self) {
  auto& st = self->state;
  if (!st.replaying.empty() || st.lost_at == std::chrono::steady_clock::time_point{}) {
    return;
  }
  st.last_recovery_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - st.lost_at).count();
  st.lost_at = {};
  std::fprintf(stderr,
               "baton: recovery: replayed: every request has its next token (%llu tokens "
               "recomputed); %.3f s since the loss was seen\n",
               static_cast<unsigned long long>(st.sched->counters().recomputed_tokens -
                                               st.recomputed_at_loss),
               st.last_recovery_seconds);
}

/// A stage of the running pipeline was lost (`why`): no step runs until recover or
/// fail; every sequence goes back to the queue to be recomputed, those inside a step
/// that will never return included. Nothing when already recovering (the coordinator
/// plans around every lost rank) or not running.
void enter_recovery(router_ptr self, int32_t rank, const std::string& why) {
  auto& st = self->state;
  if (st.state != pipeline_state::running) {
    return;
  }
  st.state = pipeline_state::recovering;
  st.down_rank = rank;
  st.down_message = why;
  ++st.stage_failures;
  for (const auto& s : st.cfg.shards) {
    self->demonitor(s.address());
  }
  st.recomputed_at_loss = st.sched->counters().recomputed_tokens;
  std::vector<uint64_t> replayed;
  for (auto& o : st.sched->requeue_all(replayed)) {
    gen_event ev;
    ev.finish = finish_reason::cancelled;
    ev.completion_tokens = o.completion_tokens;
    finish(self, o.id, std::move(ev));
  }
  st.replaying.insert(replayed.begin(), replayed.end());
  st.requests_replayed += replayed.size();
  st.lost_at = std::chrono::steady_clock::now();
}

void on_result(router_ptr self, const step_result& r) {
  auto& st = self->state;
  if (is_remote(self, st.cfg.shards.size() - 1)) {
    st.control_bytes += wire_bytes(self->system(), caf::make_message(result_atom::value, r));
  }
  if (st.state != pipeline_state::running || r.epoch != st.epoch) {
    return;  // a step abandoned when a stage went down: the scheduler forgot it
  }
  if (!r.error.empty()) {
    for (uint64_t id : st.sched->fail_step(r.step_id)) {
      gen_event ev;
      ev.finish = finish_reason::error;
      ev.error = r.error;
      ev.error_kind = refusal::internal;
      finish(self, id, std::move(ev));
    }
    pump(self);
    return;
  }
  struct score {
    float logit = 0;
    float logprob = 0;
    size_t top_from = 0;
    size_t top_n = 0;
  };
  std::map<uint64_t, score> scores;  // seq -> its token's numbers
  size_t top_at = 0;
  for (size_t i = 0; i < r.seq_ids.size() && i < r.logits.size() && i < r.logprobs.size(); ++i) {
    const size_t n = i < r.top_counts.size() ? static_cast<size_t>(r.top_counts[i]) : 0;
    scores[r.seq_ids[i]] = {r.logits[i], r.logprobs[i], top_at, n};
    top_at += n;
  }
  for (const auto& o : st.sched->on_step_done(r.step_id, r.seq_ids, r.tokens)) {
    auto it = st.clients.find(o.id);
    if (it == st.clients.end()) {
      continue;
    }
    client_info& c = it->second;
    gen_event ev;
    ev.request_id = c.request_id;
    ev.index = c.index;
    ev.token = o.token;
    ev.completion_tokens = o.completion_tokens;
    ev.cached_tokens = o.cached_tokens;
    if (auto sc = scores.find(o.id); sc != scores.end()) {
      ev.logit = sc->second.logit;
      ev.logprob = sc->second.logprob;
      for (size_t k = 0; k < sc->second.top_n && sc->second.top_from + k < r.top_ids.size(); ++k) {
        ev.top_ids.push_back(r.top_ids[sc->second.top_from + k]);
        ev.top_logprobs.push_back(r.top_logprobs[sc->second.top_from + k]);
      }
    }
    if (o.token >= 0 && st.replaying.erase(o.id) > 0) {
      replay_progress(self);
    }
    const bool eog = o.finish == finish_reason::stop;  // the end-of-generation token shows no text
    if (o.token >= 0 && !c.constraint.empty()) {
      c.generated.push_back(o.token);
    }
    if (o.token >= 0 && !eog) {
      auto piece = c.dec->push(o.token);
      if (piece) {
        ev.text = c.stops->push(*piece);
      }
    }
    finish_reason reason = o.finish;
    if (reason == finish_reason::none && c.stops->stopped()) {
      reason = finish_reason::stop;
      st.sched->finish(o.id);
    }
    if (reason == finish_reason::none) {
      caf::anon_send(c.client, event_atom::value, std::move(ev));
    } else {
      ev.finish = reason;
      if (reason == finish_reason::cancelled && st.stopping) {
        ev.error_kind = refusal::shutting_down;
      }
      finish(self, o.id, std::move(ev));
    }
  }
  pump(self);
}

router_actor::behavior_type router_impl(router_ptr self, router_config cfg) {
  std::vector<int32_t> eog = cfg.tok->eog_ids();
  self->state.sched = std::make_unique<scheduler>(cfg.sched, std::move(eog));
  if (cfg.trace) {
    self->state.sched->set_trace(cfg.trace);
  }
  self->state.cfg = std::move(cfg);
  for (const auto& shard : self->state.cfg.shards) {
    self->monitor(shard);
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    const auto& shards = st.cfg.shards;
    for (size_t i = 0; i < shards.size(); ++i) {
      if (shards[i].address() != dm.source || st.state != pipeline_state::running) {
        continue;
      }
      const int32_t rank = i < st.cfg.stage_ranks.size() ? st.cfg.stage_ranks[i] : 0;
      const std::string stage =
          "stage " + std::to_string(i) + " (rank " + std::to_string(rank) + ")";
      // A shard that quits on its own says so in its exit reason (normal: the head's
      // shutdown; user_shutdown: its process was told to stop); a dead process or a
      // lost host reaches us as remote_link_unreachable.
      const bool left = !dm.reason || dm.reason == caf::exit_reason::normal ||
                        dm.reason == caf::exit_reason::user_shutdown;
      st.down_rank = rank;
      if (st.stopping) {
        // the head is stopping: every rank goes, in whatever order; not a failure to
        // report, nor a death: a rank that exits in order often closes its connection
        // before its shard's exit reaches us (remote_link_unreachable), and marking it
        // dead would make every rank skip MPI_Finalize, which mpirun reports as an
        // improper exit. One that really died is left to the finalize watchdog.
        st.state = pipeline_state::stopped;
        st.down_message = stage + " stopped: the server is shutting down";
        fail_all(self, "the server is shutting down", refusal::shutting_down);
      } else {
        const std::string why =
            stage + (left ? " stopped: its process was asked to stop"
                          : " is down: its process died or its host is unreachable (" +
                                self->system().render(dm.reason) + ")");
        std::fprintf(stderr, "baton: %s\n", why.c_str());
        if (st.cfg.on_stage_lost) {
          // the head replaces it: the requests wait and are replayed on the new pipeline
          enter_recovery(self, rank, why);
          st.cfg.on_stage_lost(rank, why);
        } else {
          st.state = pipeline_state::stage_down;
          st.down_message = why;
          if (st.cfg.on_rank_down) {
            st.cfg.on_rank_down(rank);
          }
          fail_all(self, why, refusal::stage_down);
        }
      }
    }
    settle_pause(self);
    publish(self);
  });
  publish(self);
  return {
      [=](submit_atom, gen_request& r, client_actor& client) {
        auto& st = self->state;
        // n choices are n sequences: the first computes the prompt, the others fork
        // from it, each drawing with its own seed
        const int32_t n = std::max<int32_t>(1, r.n);
        if (n > 1) {
          st.choices[r.id] = n;
        }
        for (int32_t i = 0; i < n; ++i) {
          client_info c;
          c.client = client;
          c.request_id = r.id;
          c.index = i;
          c.n_choices = n;
          c.admission = caf::actor_cast<admission_actor>(self->current_sender());
          c.dec = std::make_unique<stream_decoder>(*st.cfg.tok);
          c.stops = std::make_unique<stop_strings>(r.stop);
          c.prompt_tokens = static_cast<int32_t>(r.prompt.size());
          c.constraint = r.constraint;
          st.clients.emplace(r.id + static_cast<uint64_t>(i), std::move(c));
        }
        if (st.state != pipeline_state::running && st.state != pipeline_state::recovering) {
          const bool stopped = st.state == pipeline_state::stopped;
          for (int32_t i = 0; i < n; ++i) {
            gen_event ev;
            ev.finish = finish_reason::error;
            ev.error = stopped ? "the server is shutting down" : st.down_message;
            ev.error_kind = stopped ? refusal::shutting_down : refusal::stage_down;
            finish(self, r.id + static_cast<uint64_t>(i), std::move(ev));
          }
          publish(self);
          return;
        }
        for (int32_t i = 0; i < n; ++i) {
          sched_request q{r.id + static_cast<uint64_t>(i), r.prompt, r.max_tokens, r.sampling,
                          r.ignore_eos};
          q.sampling.seed = r.sampling.seed + static_cast<uint64_t>(i);  // vLLM's rule
          q.fork_of = i > 0 ? r.id : 0;
          st.sched->add(std::move(q));
        }
        pump(self);
        publish(self);
      },
      [=](cancel_atom, uint64_t id) {
        auto& st = self->state;
        // a request's id cancels every choice of it still running
        const auto group = st.choices.find(id);
        const int32_t n = group != st.choices.end() ? group->second : 1;
        for (int32_t i = 0; i < n; ++i) {
          const uint64_t seq = id + static_cast<uint64_t>(i);
          if (auto o = st.sched->cancel(seq)) {
            gen_event ev;
            ev.finish = finish_reason::cancelled;
            ev.completion_tokens = o->completion_tokens;
            if (st.stopping) {
              ev.error_kind = refusal::shutting_down;
            }
            finish(self, seq, std::move(ev));
          }
        }
        pump(self);
        publish(self);
      },
      [=](result_atom, const step_result& r) {
        on_result(self, r);
        settle_pause(self);
        publish(self);
      },
      [=](pause_atom, int32_t n_blocks, bool recompute)
          -> caf::result<bool, std::vector<int32_t>, std::vector<int32_t>> {
        auto& st = self->state;
        if (st.state != pipeline_state::running || n_blocks < 1) {
          return {false, std::vector<int32_t>(), std::vector<int32_t>()};
        }
        st.paused = true;
        st.pause_blocks = n_blocks;
        st.pause_recompute = recompute;
        publish(self);
        if (st.sched->n_in_flight() == 0) {
          std::vector<int32_t> from;
          std::vector<int32_t> to;
          blocks_to_move(self, from, to);
          publish(self);
          return {true, std::move(from), std::move(to)};
        }
        st.drained.push_back(
            self->make_response_promise<bool, std::vector<int32_t>, std::vector<int32_t>>());
        return st.drained.back();
      },
      [=](switch_atom, std::vector<shard_actor>& shards, std::vector<int32_t>& stage_ranks,
          int32_t micro_batches) -> uint64_t {
        auto& st = self->state;
        if (shards.empty() || st.state != pipeline_state::running) {
          // the old pipeline goes on, with its pool; or a stage was lost during the
          // reshard, and the recovery replaces the pipeline (the epoch does not move)
          st.sched->drop_resize();
        } else {
          st.sched->commit_resize();
          if (micro_batches > 0) {
            st.sched->set_micro_batches(micro_batches);
          }
          // the old shards go away next: their exits are no stage going down
          for (const auto& s : st.cfg.shards) {
            self->demonitor(s.address());
          }
          st.cfg.shards = std::move(shards);
          st.cfg.stage_ranks = std::move(stage_ranks);
          for (const auto& s : st.cfg.shards) {
            self->monitor(s);
          }
          ++st.epoch;
        }
        st.paused = false;
        pump(self);
        publish(self);
        return st.epoch;
      },
      [=](lost_atom, int32_t rank, std::string& why) {
        enter_recovery(self, rank, why);
        settle_pause(self);
        publish(self);
      },
      [=](recover_atom, std::vector<shard_actor>& shards, std::vector<int32_t>& stage_ranks,
          int32_t n_blocks) -> uint64_t {
        auto& st = self->state;
        if (st.state != pipeline_state::recovering) {
          return st.epoch;  // nothing to recover (the head stops)
        }
        st.sched->reset_pool(n_blocks);
        st.cfg.shards = std::move(shards);
        st.cfg.stage_ranks = std::move(stage_ranks);
        for (const auto& s : st.cfg.shards) {
          self->monitor(s);
        }
        ++st.epoch;
        ++st.recoveries_ok;
        st.state = pipeline_state::running;
        st.down_message.clear();
        st.down_rank = -1;
        st.paused = false;
        replay_progress(self);  // nothing to replay: recovered now
        pump(self);
        publish(self);
        return st.epoch;
      },
      [=](fail_atom, std::string& why) {
        auto& st = self->state;
        if (st.state != pipeline_state::recovering) {
          return;
        }
        st.state = pipeline_state::stage_down;
        st.down_message = why;
        ++st.recoveries_failed;
        st.replaying.clear();
        st.lost_at = {};
        std::fprintf(stderr, "baton: %s\n", why.c_str());
        fail_all(self, why, refusal::stage_down);
        publish(self);
      },
      [=](shutdown_atom) { self->state.stopping = true; },
      [=](stats_atom) { return make_stats(self); },
  };
}

}  // namespace

router_actor spawn_router(caf::actor_system& sys, router_config cfg) {
  return sys.spawn(router_impl, std::move(cfg));
}

}  // namespace baton
