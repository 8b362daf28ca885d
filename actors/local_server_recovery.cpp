// local_server.hpp's survival of a lost rank. Every rank runs a pulse (heartbeats, fencing,
// noticing that the head is gone); the head runs a watcher (every rank's agent monitored,
// a heartbeat to every pulse) and a recovery thread: a lost rank is fenced, the router
// requeues every sequence, the lost layers are re-planned onto a standby or the survivors,
// the survivors end their old stages and make the new ones (over CAF, never an MPI
// collective), and the router switches to the new pipeline and replays.
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdio>
#include <cstdlib>

#include "actors/ask.hpp"
#include "actors/local_server.hpp"

namespace baton {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

constexpr auto k_prepare_wait = std::chrono::minutes(10);
constexpr auto k_quiesce_wait = std::chrono::minutes(2);  // a stage finishes its step
constexpr auto k_commit_wait = std::chrono::seconds(30);

/// What the head's watcher keeps.
struct watch_state {
  std::vector<pulse_actor> pulses;    ///< [rank]
  std::vector<agent_actor> agents;    ///< [rank]
  std::vector<clock_type::time_point> answered;  ///< [rank] the last heartbeat's answer
  std::set<int32_t> lost;
};

}  // namespace

pulse_actor local_server::spawn_pulse() {
  return sys_->spawn([this](pulse_actor::pointer self) -> pulse_actor::behavior_type {
    if (!head()) {
      // the head's watcher pings us; when it goes down, the head's process died (or its
      // host is gone): nobody will end this job but this rank
      self->set_down_handler([this](caf::scheduled_actor*, caf::down_msg&) {
        bool leaving = false;
        {
          std::lock_guard<std::mutex> lock(shutdown_mu_);
          if (!shutdown_ && !job_over_) {
            shutdown_ = true;
            peer_died_ = true;
            leaving = true;
          }
        }
        if (leaving) {
          std::fprintf(stderr, "baton: rank %d: the head (rank 0) is gone; leaving the job\n",
                       link_.rank);
          shutdown_cv_.notify_all();
        }
      });
    }
    auto watching = std::make_shared<bool>(false);
    return {
        [this](shutdown_atom) {
          std::lock_guard<std::mutex> lock(shutdown_mu_);
          job_over_ = true;
        },
        [this, self, watching](ping_atom, uint64_t) -> uint64_t {
          if (!*watching && !head() && self->current_sender()) {
            self->monitor(self->current_sender());
            *watching = true;
          }
          // no lock: a reshard holds shards_mu_ while it exports KV rows, for seconds,
          // and a heartbeat must not wait for that
          return committed_epoch_.load();
        },
        [this](fence_atom, uint64_t epoch) {
          // this rank did not answer in time (stopped, cut off) and the head went on
          // without it: whatever it still does belongs to a retired epoch. It leaves
          // without MPI_Finalize (which would wait for ranks that never call it); under
          // mpirun --enable-recovery the job goes on.
          std::fprintf(stderr,
                       "baton: rank %d: fenced: the head runs epoch %llu without this rank "
                       "(it did not answer in time); leaving the job\n",
                       link_.rank, static_cast<unsigned long long>(epoch));
          std::fflush(stderr);
          std::_Exit(0);
        },
    };
  });
}

void local_server::start_recovery(std::vector<pulse_actor> pulses) {
  const auto timeout = link_.stage_timeout;
  const auto interval = std::clamp(timeout / 4, std::chrono::milliseconds(100),
                                   std::chrono::milliseconds(1000));
  std::vector<agent_actor> agents = agents_;
  pulses_ = pulses;
  const int32_t me = link_.rank;
  watcher_ = sys_->spawn([this, pulses, agents, timeout, interval,
                          me](caf::stateful_actor<watch_state>* self) -> caf::behavior {
    auto& st = self->state;
    st.pulses = pulses;
    st.agents = agents;
    st.answered.assign(pulses.size(), clock_type::now());
    for (size_t r = 0; r < pulses.size(); ++r) {
      if (static_cast<int32_t>(r) != me) {
        self->monitor(agents[r]);
        self->monitor(pulses[r]);
      }
    }
    self->set_down_handler([this, self](caf::down_msg& dm) {
      auto& w = self->state;
      for (size_t r = 0; r < w.pulses.size(); ++r) {
        const auto rank = static_cast<int32_t>(r);
        if ((w.pulses[r].address() != dm.source && w.agents[r].address() != dm.source) ||
            w.lost.count(rank)) {
          continue;
        }
        w.lost.insert(rank);
        rank_lost(rank, "rank " + std::to_string(rank) +
                            "'s process died or its host is unreachable (" +
                            self->system().render(dm.reason) + ")");
      }
    });
    self->send(self, tick_atom::value);
    return {
        [this, self, timeout, interval, me](tick_atom) {
          auto& w = self->state;
          const auto now = clock_type::now();
          for (size_t r = 0; r < w.pulses.size(); ++r) {
            const auto rank = static_cast<int32_t>(r);
            if (rank == me || w.lost.count(rank)) {
              continue;
            }
            if (now - w.answered[r] > timeout) {
              w.lost.insert(rank);
              rank_lost(rank, "rank " + std::to_string(rank) + " answered no heartbeat for " +
                                  seconds_text(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      now - w.answered[r])) +
                                  " (--stage-timeout " + seconds_text(timeout) +
                                  "): it hangs or its host is cut off");
              continue;
            }
            self->request(w.pulses[r], timeout, ping_atom::value, uint64_t{0})
                .then([self, r](uint64_t) { self->state.answered[r] = clock_type::now(); },
                      [](caf::error&) {});
          }
          self->delayed_send(self, interval, tick_atom::value);
        },
    };
  });
  recovery_ = std::thread([this] { recovery_loop(); });
}

void local_server::rank_lost(int32_t rank, std::string why) {
  {
    std::lock_guard<std::mutex> view_lock(view_->mu);
    if (view_->stopping) {
      return;  // the job ends: ranks leave in any order
    }
  }
  {
    std::lock_guard<std::mutex> lock(lost_mu_);
    if (recovery_stop_ || lost_.count(rank) || rank == link_.rank) {
      return;
    }
    lost_.insert(rank);
    lost_queue_.emplace_back(rank, std::move(why));
  }
  lost_cv_.notify_all();
}

std::set<int32_t> local_server::lost_ranks() const {
  std::lock_guard<std::mutex> lock(lost_mu_);
  return lost_;
}

std::string local_server::gave_up_on(int32_t rank) {
  std::lock_guard<std::mutex> lock(lost_mu_);
  if (recovery_stop_) {
    return "the server is stopping";
  }
  if (lost_.count(rank)) {
    return "rank " + std::to_string(rank) + " was lost meanwhile";
  }
  return {};
}

void local_server::recovery_loop() {
  while (true) {
    std::pair<int32_t, std::string> lost;
    {
      std::unique_lock<std::mutex> lock(lost_mu_);
      lost_cv_.wait(lock, [&] { return recovery_stop_ || !lost_queue_.empty(); });
      if (recovery_stop_) {
        return;
      }
      lost = std::move(lost_queue_.front());
      lost_queue_.pop_front();
    }
    recover_from(lost.first, lost.second);
  }
}

void local_server::quiesce_here(const std::vector<int32_t>& lost) {
  for (const int32_t r : lost) {
    data_->forget_peer(r);
  }
  std::vector<shard_actor> old;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    old = local_shards_;
  }
  // each ends after the step it runs (its compute may serve the new pipeline)
  caf::scoped_actor self{*sys_};
  for (const auto& s : old) {
    self->monitor(s);
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }
  size_t gone = 0;
  self->receive_for(gone, old.size())(
      [](caf::down_msg&) {},
      caf::after(k_quiesce_wait) >> [&] { gone = old.size(); });
  if (link_.world > 1) {
    for (const auto& s : old) {
      auto ignored = sys_->middleman().unpublish(s, 0);
    }
  }
}

void local_server::recover_from(int32_t rank, const std::string& why) {
  const auto t_detect = clock_type::now();
  // fenced: its transfers are dropped here, and if it wakes up it learns to leave
  if (link_.on_rank_down) {
    link_.on_rank_down(rank);
  }
  data_->forget_peer(rank);
  uint64_t next_epoch = 0;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    next_epoch = epoch_ + 1;
  }
  if (static_cast<size_t>(rank) < pulses_.size()) {
    caf::anon_send(pulses_[static_cast<size_t>(rank)], fence_atom::value, next_epoch);
  }
  // a reshard under way ends first (one that needs this rank fails)
  std::unique_lock<std::mutex> one_at_a_time(reshard_mu_);
  std::vector<stage_setup> running;
  int32_t n_blocks = 0;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    running = opts_.stages;
    n_blocks = opts_.serving.n_blocks;
    next_epoch = epoch_ + 1;
  }
  if (stages_on(running, rank) == 0) {
    std::fprintf(stderr, "baton: recovery: standby rank %d lost (%s); it is dropped from the "
                 "pool\n", rank, why.c_str());
    return;
  }
  std::string held;
  for (size_t s = 0; s < running.size(); ++s) {
    if (running[s].rank == rank) {
      held += (held.empty() ? "" : ", ") + std::to_string(s) + " (layers [" +
              std::to_string(running[s].first_layer) + ", " +
              std::to_string(running[s].last_layer) + "))";
    }
  }
  std::fprintf(stderr, "baton: recovery: detected: rank %d (stage %s) lost: %s\n", rank,
               held.c_str(), why.c_str());
  caf::anon_send(router_, lost_atom::value, rank, why);
  caf::scoped_actor self{*sys_};
  while (true) {
    std::set<int32_t> lost;
    {
      std::lock_guard<std::mutex> lock(lost_mu_);
      if (recovery_stop_) {
        return;
      }
      lost = lost_;
      // ranks lost meanwhile are planned around here: their turn in the queue is this one
      for (const auto& [r, what] : lost_queue_) {
        std::fprintf(stderr, "baton: recovery: detected: rank %d lost too: %s\n", r,
                     what.c_str());
        if (stages_on(running, r) > 0) {
          caf::anon_send(router_, lost_atom::value, r, what);
        }
      }
      lost_queue_.clear();
    }
    for (const int32_t r : lost) {
      if (link_.on_rank_down) {
        link_.on_rank_down(r);
      }
    }
    const auto t_plan = clock_type::now();
    auto plan = [&]() -> result<recovery_plan> {
      if (link_.replan) {
        return link_.replan(running, lost, n_blocks);
      }
      auto c = recovery_candidates(running, lost, link_.world);
      if (c.empty()) {
        return make_error("no rank holding a stage survives");
      }
      return recovery_plan{c.front().stages, n_blocks, c.front().how};
    }();
    if (plan) {
      // what a reshard keeps, a recovery keeps: each layer on its kind of device (tokens
      // must not change) and, under --nccl, the ranks of the NCCL communicator
      if (auto ok = check_reshard(plan->stages); !ok) {
        plan = make_error("%s: %s", plan->how.c_str(), ok.err().message.c_str());
      }
    }
    if (!plan) {
      const std::string failed = "stage " + held + " of rank " + std::to_string(rank) +
                                 " is lost (" + why + ") and the survivors cannot take its "
                                 "layers: " + plan.err().message;
      std::fprintf(stderr, "baton: recovery: failed: %s\n", failed.c_str());
      caf::anon_send(router_, fail_atom::value, failed);
      return;
    }
    std::fprintf(stderr, "baton: recovery: planned in %.3f s: %s; %d KV blocks\n",
                 seconds_since(t_plan), plan->how.c_str(), plan->n_blocks);
    // every survivor ends its old stages (each after the step it runs) and drops the
    // lost ranks' transfers
    const auto t_load = clock_type::now();
    std::vector<int32_t> lost_list(lost.begin(), lost.end());
    bool lost_more = false;
    for (int32_t r = 0; r < static_cast<int32_t>(agents_.size()); ++r) {
      if (lost.count(r)) {
        continue;
      }
      auto a = ask(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                   caf::make_message(quiesce_atom::value, next_epoch, lost_list),
                   k_quiesce_wait, [this, r] { return gave_up_on(r); });
      if (!a.answer) {
        rank_lost(r, "rank " + std::to_string(r) + " did not stop its stages: " + a.error);
        lost_more = true;
      }
    }
    std::string failed;
    std::vector<shard_actor> shards;
    if (!lost_more) {
      auto made = prepare_ranks(plan->stages, next_epoch, plan->n_blocks);
      if (made) {
        shards = std::move(*made);
      } else {
        failed = made.err().message;
      }
    }
    if (lost_more || !failed.empty()) {
      for (int32_t r = 0; r < static_cast<int32_t>(agents_.size()); ++r) {
        if (!lost.count(r) && gave_up_on(r).empty()) {
          (void)ask(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                    caf::make_message(abort_atom::value, next_epoch), k_commit_wait,
                    [this, r] { return gave_up_on(r); });
        }
      }
      {
        std::lock_guard<std::mutex> lock(lost_mu_);
        lost_more = lost_more || lost_ != lost;
      }
      if (lost_more) {
        std::fprintf(stderr, "baton: recovery: another rank was lost meanwhile (%s); planning "
                     "again\n", failed.empty() ? "a rank did not stop its stages" : failed.c_str());
        continue;  // plan again around every lost rank
      }
      const std::string msg = "stage " + held + " of rank " + std::to_string(rank) +
                              " is lost (" + why + ") and its replacement failed: " + failed;
      std::fprintf(stderr, "baton: recovery: failed: %s\n", msg.c_str());
      caf::anon_send(router_, fail_atom::value, msg);
      return;
    }
    std::fprintf(stderr, "baton: recovery: loaded in %.3f s: %zu stages ready\n",
                 seconds_since(t_load), plan->stages.size());
    std::vector<int32_t> ranks;
    for (const stage_setup& st : plan->stages) {
      ranks.push_back(st.rank);
    }
    uint64_t epoch = 0;
    self->request(router_, caf::infinite, recover_atom::value, shards, ranks, plan->n_blocks)
        .receive([&](uint64_t e) { epoch = e; }, [](caf::error&) {});
    {
      std::lock_guard<std::mutex> lock(shards_mu_);
      shards_ = shards;
    }
    for (int32_t r = 0; r < static_cast<int32_t>(agents_.size()); ++r) {
      if (!lost.count(r)) {
        (void)ask(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                  caf::make_message(commit_atom::value, next_epoch), k_commit_wait,
                  [this, r] { return gave_up_on(r); });
      }
    }
    {
      std::lock_guard<std::mutex> lock(view_->mu);
      view_->snap.stage_step_seconds.assign(plan->stages.size(), 0.0);
    }
    const auto st = stats();
    std::fprintf(stderr,
                 "baton: recovery: switched to epoch %llu %.3f s after the loss was seen; "
                 "%d requests queued (replayed ones first)\n",
                 static_cast<unsigned long long>(epoch), seconds_since(t_detect),
                 st.running + st.waiting);
    return;
  }
}

}  // namespace baton
