// local_server.hpp's live reshard, the head's side: checking new stages against the
// running job, having every rank's agent prepare its new stages while serving goes on,
// pausing the router, moving every layer's KV rows to its new owner, switching, and having
// every rank release its old stages. The ranks' side is actors/reshard_agent.cpp.
#include <caf/all.hpp>

#include "actors/ask.hpp"
#include "actors/local_server.hpp"
#include <caf/io/all.hpp>

#include <map>

#include "topology/memory_plan.hpp"

namespace baton {

namespace {

// the longest the head waits for a rank's answer: preparing loads weights
constexpr auto k_prepare_wait = std::chrono::minutes(10);
constexpr auto k_kv_wait = std::chrono::minutes(5);
constexpr auto k_commit_wait = std::chrono::seconds(30);

}  // namespace

result<reshard_report> local_server::reshard(std::vector<stage_setup> stages, bool* busy,
                                             reshard_settings how) {
  auto r = apply_reshard(std::move(stages), busy, how);
  std::lock_guard<std::mutex> lock(view_->mu);
  if (r) {
    ++view_->snap.reshards_ok;
    view_->snap.last_reshard_pause_seconds = r->pause_seconds;
    view_->snap.reshard_kv_bytes_moved += r->kv_bytes_moved;
  } else {
    ++view_->snap.reshards_refused;
  }
  return r;
}

void local_server::note_reshard_refused() {
  std::lock_guard<std::mutex> lock(view_->mu);
  ++view_->snap.reshards_refused;
}

result<void> local_server::check_reshard(const std::vector<stage_setup>& stages) const {
  if (!head()) {
    return make_error("a reshard is applied by the head (rank 0)");
  }
  if (auto ok = check_stages(stages, model_->config().n_layer, link_.world); !ok) {
    return ok;
  }
  const std::vector<stage_setup> running = [&] {
    std::lock_guard<std::mutex> lock(shards_mu_);
    return opts_.stages;
  }();
  // a layer keeps its kind of device: CPU and CUDA round differently, and a reshard must
  // not change a sequence's tokens
  for (const stage_setup& st : stages) {
    for (const stage_setup& old : running) {
      const bool overlap = st.first_layer < old.last_layer && old.first_layer < st.last_layer;
      if (overlap && cuda_device_index(st.device).has_value() !=
                         cuda_device_index(old.device).has_value()) {
        return make_error("layers [%lld, %lld) would move from %s to %s: a reshard keeps each "
                          "layer on its kind of device (CPU and CUDA results differ in rounding)",
                          static_cast<long long>(std::max(st.first_layer, old.first_layer)),
                          static_cast<long long>(std::min(st.last_layer, old.last_layer)),
                          old.device.c_str(), st.device.c_str());
      }
    }
  }
  if (link_.device_link) {
    // NCCL's communicator was made once, for the ranks that ran GPU stages, each on one GPU,
    // in pipeline order: a placement that needs other members needs a new communicator
    auto gpu_ranks = [](const std::vector<stage_setup>& v) {
      std::map<int32_t, std::string> out;
      for (const auto& st : v) {
        if (cuda_device_index(st.device)) {
          out[st.rank] = st.device;
        }
      }
      return out;
    };
    if (gpu_ranks(stages) != gpu_ranks(running)) {
      return make_error("under --nccl a reshard keeps the ranks that run GPU stages and their "
                        "GPUs (the NCCL communicator's members are fixed when the job starts)");
    }
    for (size_t s = 1; s < stages.size(); ++s) {
      if (stages[s].rank < stages[s - 1].rank) {
        return make_error("under --nccl the stages' ranks must not decrease: stage %zu runs on "
                          "rank %d after rank %d",
                          s, stages[s].rank, stages[s - 1].rank);
      }
    }
  }
  return {};
}

result<reshard_report> local_server::apply_reshard(std::vector<stage_setup> stages, bool* busy,
                                                   reshard_settings how) {
  std::unique_lock<std::mutex> one_at_a_time(reshard_mu_, std::try_to_lock);
  if (!one_at_a_time.owns_lock()) {
    if (busy) {
      *busy = true;
    }
    return make_error("another reshard is under way");
  }
  if (auto ok = check_reshard(stages); !ok) {
    return ok.err();
  }
  const serving_config& sv = opts_.serving;
  if (how.n_blocks <= 0) {
    how.n_blocks = sv.n_blocks;
  }
  if (const int64_t one = kv_blocks_needed(1, sv.n_ctx, sv.block_size); how.n_blocks < one) {
    return make_error("a KV pool of %d blocks cannot hold one sequence of the context length "
                      "(%lld tokens: %lld blocks of %d)",
                      how.n_blocks, static_cast<long long>(sv.n_ctx),
                      static_cast<long long>(one), sv.block_size);
  }
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    epoch = epoch_ + 1;
  }
  auto rep = reshard_ranks(stages, epoch, how);
  if (rep && how.micro_batches > 0) {
    opts_.serving.micro_batches = how.micro_batches;
  }
  if (rep) {
    std::lock_guard<std::mutex> lock(view_->mu);
    view_->snap.stage_step_seconds.assign(stages.size(), 0.0);
  }
  return rep;
}

result<std::vector<shard_actor>> local_server::prepare_ranks(
    const std::vector<stage_setup>& stages, uint64_t epoch, int32_t n_blocks) {
  std::vector<shard_actor> shards(stages.size());
  std::string failed;
  const std::set<int32_t> lost = lost_ranks();
  for (int32_t r = 0; r < static_cast<int32_t>(agents_.size()) && failed.empty(); ++r) {
    if (lost.count(r)) {
      continue;  // holds no stage of `stages` (a reshard or recovery planned around it)
    }
    // a rank that dies or hangs meanwhile is given up on at once, not after minutes
    auto a = ask(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                 caf::make_message(prepare_atom::value, epoch, stages, n_blocks),
                 k_prepare_wait, [this, r] { return gave_up_on(r); });
    if (!a.answer || !a.answer->match_elements<std::string, std::vector<int32_t>>()) {
      failed = "rank " + std::to_string(r) + " did not prepare: " +
               (a.answer ? "an unexpected answer " + to_string(*a.answer) : a.error);
      break;
    }
    if (!a.answer->get_as<std::string>(0).empty()) {
      failed = a.answer->get_as<std::string>(0);
      break;
    }
    const auto& ports = a.answer->get_as<std::vector<int32_t>>(1);
    for (size_t s = 0; s < stages.size() && failed.empty(); ++s) {
      if (stages[s].rank != r || r == link_.rank) {
        continue;
      }
      const auto port = s < ports.size() ? ports[s] : 0;
      auto proxy = sys_->middleman().remote_actor<shard_actor>(
          rank_hosts_.at(static_cast<size_t>(r)), static_cast<uint16_t>(port));
      if (!proxy) {
        failed = "cannot reach the new stage " + std::to_string(s) + " on rank " +
                 std::to_string(r) + ": " + sys_->render(proxy.error());
      } else {
        shards[s] = *proxy;
      }
    }
  }
  if (!failed.empty()) {
    return make_error("%s", failed.c_str());
  }
  // this rank's new stages are local actors
  std::lock_guard<std::mutex> lock(shards_mu_);
  for (size_t s = 0; s < stages.size(); ++s) {
    if (stages[s].rank == link_.rank) {
      shards[s] = pending_ ? pending_->shards[s] : shard_actor{};
    }
  }
  return shards;
}

result<void> local_server::move_kv_between_ranks(const std::vector<stage_setup>& stages,
                                                  uint64_t epoch, const std::vector<int32_t>& from,
                                                  const std::vector<int32_t>& to,
                                                  reshard_report& rep) {
  std::string failed;
  // block ids are the router's, the same on every stage: rows move from `from` to `to`.
  // Every shipment is sent before any rank is asked to take: a take waits for rows
  // another rank's ship sends.
  const std::vector<stage_setup> running = [&] {
    std::lock_guard<std::mutex> lock(shards_mu_);
    return opts_.stages;
  }();
  std::map<int32_t, std::pair<std::vector<int64_t>, std::vector<int32_t>>> ship;  // from rank
  std::map<int32_t, std::vector<int64_t>> take;                                    // to rank
  for (const stage_setup& now : running) {
    for (int64_t layer = now.first_layer; layer < now.last_layer && !from.empty(); ++layer) {
      const int32_t owner = stages[static_cast<size_t>(stage_of_layer(stages, layer))].rank;
      ship[now.rank].first.push_back(layer);
      ship[now.rank].second.push_back(owner);
      if (owner != now.rank) {
        take[owner].push_back(layer);
      }
    }
  }
  auto first_error = [&](const std::string& error) {
    if (!error.empty() && failed.empty()) {
      failed = error;
    }
  };
  // every ship is sent before any take (an agent sees its ship first: ask_start enqueues
  // from this thread, in order), and all of them are under way at once: a rank takes one layer's rows while another still exports
  // the next. A rank that dies or hangs meanwhile is given up on at once.
  std::vector<std::pair<int32_t, pending_ask>> ships;
  std::vector<std::pair<int32_t, pending_ask>> takes;
  for (const auto& [r, moves] : ship) {
    ships.emplace_back(r, ask_start(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                                    caf::make_message(kv_ship_atom::value, epoch, moves.first,
                                                      moves.second, from, to)));
  }
  for (const auto& [r, layers] : take) {
    takes.emplace_back(r, ask_start(*sys_, caf::actor_cast<caf::actor>(agents_[static_cast<size_t>(r)]),
                                    caf::make_message(kv_take_atom::value, epoch, layers, to)));
  }
  auto collect = [&](std::vector<std::pair<int32_t, pending_ask>>& asks, const char* what,
                     bool received) {
    for (auto& [r, q] : asks) {
      const int32_t rank = r;
      auto a = ask_wait(q, k_kv_wait, [this, rank] { return gave_up_on(rank); });
      if (!a.answer || !a.answer->match_elements<std::string, uint64_t>()) {
        first_error("rank " + std::to_string(rank) + " did not " + what + " its KV rows: " +
                    (a.answer ? "an unexpected answer " + to_string(*a.answer) : a.error));
        continue;
      }
      first_error(a.answer->get_as<std::string>(0));
      const uint64_t bytes = a.answer->get_as<uint64_t>(1);
      rep.kv_bytes_moved += bytes;  // copied within a rank, or received from another
      rep.kv_bytes_sent += received ? bytes : 0;
    }
  };
  collect(ships, "send", false);
  collect(takes, "take", true);
  if (!failed.empty()) {
    return make_error("%s", failed.c_str());
  }
  return {};
}

result<reshard_report> local_server::reshard_ranks(const std::vector<stage_setup>& stages,
                                                   uint64_t epoch, const reshard_settings& how) {
  using clock = std::chrono::steady_clock;
  caf::scoped_actor self{*sys_};
  reshard_report rep;
  const auto world = static_cast<int32_t>(agents_.size());
  auto abort_all = [&] {
    const std::set<int32_t> lost = lost_ranks();
    for (int32_t r = 0; r < world; ++r) {
      if (lost.count(r)) {
        continue;
      }
      self->request(agents_[static_cast<size_t>(r)], k_commit_wait, abort_atom::value, epoch)
          .receive([](bool) {}, [](caf::error&) {});
    }
  };
  // prepare while serving goes on: every rank makes its new stages (weights, empty KV)
  // and routes the new epoch; a rank that fails stops the reshard before anything changed
  const auto t_prepare = clock::now();
  auto shards = prepare_ranks(stages, epoch, how.n_blocks);
  if (!shards) {
    abort_all();
    return shards.err();
  }
  rep.prepare_seconds = std::chrono::duration<double>(clock::now() - t_prepare).count();
  // quiesce: no new steps; the ones in flight finish
  // what the new pool's size preempts (not what the running pipeline preempts meanwhile)
  const uint64_t preempted_before = stats().resize_preemptions;
  const auto t_pause = clock::now();
  bool drained = false;
  // the blocks holding KV, live or cached (the rest is garbage), and their ids in the new
  // pool: the same unless it changes size
  std::vector<int32_t> from;
  std::vector<int32_t> to;
  self->request(router_, caf::infinite, pause_atom::value, how.n_blocks, how.recompute_kv)
      .receive(
          [&](bool ok, std::vector<int32_t>& f, std::vector<int32_t>& t) {
            drained = ok;
            from = std::move(f);
            to = std::move(t);
          },
          [&](caf::error&) {});
  auto resume_old = [&] {
    self->request(router_, caf::infinite, switch_atom::value, std::vector<shard_actor>{},
                  std::vector<int32_t>{}, int32_t{0})
        .receive([](uint64_t) {}, [](caf::error&) {});
  };
  if (!drained) {
    resume_old();
    abort_all();
    return make_error("the pipeline went down before the reshard could start: %s",
                      snapshot().stats.down_message.c_str());
  }
  const auto t_drained = clock::now();
  rep.drain_seconds = std::chrono::duration<double>(t_drained - t_pause).count();
  // every layer's KV rows of those blocks, from its old owner to its new one (none with
  // recompute_kv)
  if (auto moved = move_kv_between_ranks(stages, epoch, from, to, rep); !moved) {
    resume_old();
    abort_all();
    return make_error("moving the KV cache: %s; nothing changed", moved.err().message.c_str());
  }
  rep.kv_seconds = std::chrono::duration<double>(clock::now() - t_drained).count();
  // switch: the new shards take the stages; the router starts the next epoch
  std::vector<int32_t> ranks;
  for (const stage_setup& st : stages) {
    ranks.push_back(st.rank);
  }
  self->request(router_, caf::infinite, switch_atom::value, *shards, ranks, how.micro_batches)
      .receive([&](uint64_t e) { rep.epoch = e; }, [](caf::error&) {});
  if (rep.epoch != epoch) {
    // a stage was lost meanwhile: the router recovers instead (the new stages may
    // include the lost rank's)
    abort_all();
    return make_error("a stage was lost during the reshard (%s); the recovery replaces the "
                      "pipeline instead",
                      snapshot().stats.down_message.c_str());
  }
  rep.pause_seconds = std::chrono::duration<double>(clock::now() - t_pause).count();
  rep.n_blocks = how.n_blocks;
  rep.preempted = stats().resize_preemptions - preempted_before;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    shards_ = *shards;
  }
  // every rank lets its old stages go (the router no longer watches them)
  const std::set<int32_t> lost = lost_ranks();
  for (int32_t r = 0; r < world; ++r) {
    if (lost.count(r)) {
      continue;
    }
    self->request(agents_[static_cast<size_t>(r)], k_commit_wait, commit_atom::value, epoch)
        .receive([](bool) {}, [&, r](caf::error& e) {
          std::fprintf(stderr, "baton: reshard %llu: rank %d did not confirm its switch: %s\n",
                       static_cast<unsigned long long>(epoch), r, sys_->render(e).c_str());
        });
  }
  return rep;
}

}  // namespace baton
