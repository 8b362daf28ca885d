// local_server.hpp's live reshard: checking new stages against the running job,
// preparing them while serving goes on, pausing the router, moving every layer's KV rows
// to its new stage, switching and releasing the old pipeline.
#include <caf/all.hpp>

#include "actors/local_server.hpp"
#include "runtime/system/budget.hpp"
#include "runtime/system/units.hpp"
#include "topology/memory_plan.hpp"

namespace baton {

result<reshard_report> local_server::reshard(std::vector<stage_setup> stages, bool* busy,
                                             int32_t micro_batches) {
  auto r = apply_reshard(std::move(stages), busy, micro_batches);
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
  if (link_.world > 1) {
    return make_error("resharding a job of %d ranks is not built yet: only one-process jobs "
                      "change shape while serving",
                      link_.world);
  }
  if (auto ok = check_stages(stages, model_->config().n_layer, link_.world); !ok) {
    return ok;
  }
  // a layer keeps its kind of device: CPU and CUDA round differently, and a reshard must
  // not change a sequence's tokens
  for (const stage_setup& st : stages) {
    for (const stage_setup& old : opts_.stages) {
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
  // old and new stages are resident together until the switch: the new CPU stages' KV
  // must fit beside what the process holds now (a GPU stage's allocation fails by itself)
  std::vector<std::pair<int64_t, int64_t>> new_cpu;
  for (const stage_setup& st : stages) {
    if (!cuda_device_index(st.device)) {
      new_cpu.emplace_back(st.first_layer, st.last_layer);
    }
  }
  const serving_config& sv = opts_.serving;
  const uint64_t new_kv =
      cpu_stage_kv_bytes(*model_, new_cpu, sv.n_blocks, sv.block_size, sv.kv_type);
  const resource_budget budget = detect_budget();
  const uint64_t used = budget.memory_used_bytes.value_or(0);
  const uint64_t room = budget.memory_bytes > used ? budget.memory_bytes - used : 0;
  if (new_kv > room) {
    return make_error("preparing the new stages needs %s of KV memory on the host beside the "
                      "running pipeline's (both are held until the switch), and %s of %s is "
                      "free (%s); nothing changed",
                      format_bytes(new_kv).c_str(), format_bytes(room).c_str(),
                      format_bytes(budget.memory_bytes).c_str(), budget.memory_source.c_str());
  }
  return {};
}

result<std::vector<std::shared_ptr<stage_compute>>> local_server::prepare_stages(
    const std::vector<stage_setup>& stages) const {
  const int32_t n_local = stages_on(stages, link_.rank);
  std::vector<std::shared_ptr<stage_compute>> fresh(stages.size());
  for (size_t s = 0; s < stages.size(); ++s) {
    auto c = make_stage_compute(compute_options(stages, static_cast<int32_t>(s), n_local));
    if (!c) {
      return make_error("preparing stage %zu (layers [%lld, %lld) on %s): %s; nothing changed", s,
                        static_cast<long long>(stages[s].first_layer),
                        static_cast<long long>(stages[s].last_layer), stages[s].device.c_str(),
                        c.err().message.c_str());
    }
    fresh[s] = std::move(*c);
  }
  return fresh;
}

result<uint64_t> local_server::move_kv(const std::vector<stage_setup>& stages,
                                       const std::vector<std::shared_ptr<stage_compute>>& fresh,
                                       const std::vector<int32_t>& blocks) const {
  uint64_t bytes = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    for (int64_t layer = stages[s].first_layer; layer < stages[s].last_layer; ++layer) {
      size_t owner = 0;
      while (opts_.stages[owner].last_layer <= layer) {
        ++owner;
      }
      auto rows = computes_[owner]->export_kv(layer, blocks);
      auto moved = rows ? fresh[s]->import_kv(layer, blocks, *rows) : result<void>(rows.err());
      if (!moved) {
        return make_error("moving the KV rows of layer %lld: %s; nothing changed",
                          static_cast<long long>(layer), moved.err().message.c_str());
      }
      bytes += rows->size();
    }
  }
  return bytes;
}

void local_server::retire_old_pipeline(std::vector<stage_setup> stages,
                                       std::vector<shard_actor> shards,
                                       std::vector<std::shared_ptr<stage_compute>> fresh,
                                       int32_t micro_batches) {
  std::vector<shard_actor> old;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    old = std::exchange(shards_, std::move(shards));
    local_shards_ = shards_;
  }
  for (auto& s : old) {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }
  computes_ = std::move(fresh);
  if (micro_batches > 0) {
    opts_.serving.micro_batches = micro_batches;
  }
  opts_.stages = std::move(stages);
  opts_.n_stages = static_cast<int32_t>(opts_.stages.size());
  std::lock_guard<std::mutex> lock(view_->mu);
  view_->snap.stage_step_seconds.assign(opts_.stages.size(), 0.0);
}

result<reshard_report> local_server::apply_reshard(std::vector<stage_setup> stages, bool* busy,
                                                   int32_t micro_batches) {
  using clock = std::chrono::steady_clock;
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
  // prepare while serving goes on: the new stages' weights and empty KV
  reshard_report rep;
  const auto t_prepare = clock::now();
  auto fresh = prepare_stages(stages);
  if (!fresh) {
    return fresh.err();
  }
  rep.prepare_seconds = std::chrono::duration<double>(clock::now() - t_prepare).count();
  // quiesce: no new steps; the ones in flight finish
  const auto t_pause = clock::now();
  caf::scoped_actor self{*sys_};
  bool drained = false;
  std::vector<int32_t> blocks;  // those holding KV, live or cached: the rest is garbage
  self->request(router_, caf::infinite, pause_atom::value)
      .receive(
          [&](bool ok, std::vector<int32_t>& held) {
            drained = ok;
            blocks = std::move(held);
          },
          [&](caf::error&) {});
  auto resume_old = [&] {
    self->request(router_, caf::infinite, switch_atom::value, std::vector<shard_actor>{},
                  std::vector<int32_t>{}, int32_t{0})
        .receive([](uint64_t) {}, [](caf::error&) {});
  };
  if (!drained) {
    resume_old();
    return make_error("the pipeline went down before the reshard could start: %s",
                      snapshot().stats.down_message.c_str());
  }
  // every layer's KV rows of those blocks, from its old owner to its new one (the block
  // ids are the router's: the same in both pipelines)
  auto moved = move_kv(stages, *fresh, blocks);
  if (!moved) {
    resume_old();
    return moved.err();
  }
  rep.kv_bytes_moved = *moved;
  // switch: the new shards take the stages; the router starts the next epoch
  std::vector<shard_actor> shards(stages.size());
  std::vector<int32_t> ranks;
  for (size_t s = 0; s < stages.size(); ++s) {
    shards[s] = spawn_stage(stages, static_cast<int32_t>(s), (*fresh)[s]);
    ranks.push_back(stages[s].rank);
  }
  self->request(router_, caf::infinite, switch_atom::value, shards, ranks, micro_batches)
      .receive([&](uint64_t epoch) { rep.epoch = epoch; }, [](caf::error&) {});
  rep.pause_seconds = std::chrono::duration<double>(clock::now() - t_pause).count();
  retire_old_pipeline(std::move(stages), std::move(shards), std::move(*fresh), micro_batches);
  return rep;
}

}  // namespace baton
