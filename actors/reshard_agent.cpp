// local_server.hpp's rank side: the agent every rank runs, and what it does for the head
// during a reshard: prepare this rank's stages of the new placement, ship the KV rows of
// the layers it holds to their new owners over the data plane, take the rows that come to
// it, and commit (or abort).
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cstdlib>
#include <thread>

#include "actors/local_server.hpp"
#include "runtime/compute/cpu_stage.hpp"
#include "runtime/system/budget.hpp"
#include "runtime/system/units.hpp"
#include "topology/memory_plan.hpp"

namespace baton {

namespace {

/// How long a rank waits for one layer's KV rows from another rank.
constexpr auto k_kv_wait = std::chrono::seconds(120);

}  // namespace

agent_actor local_server::spawn_agent() {
  return sys_->spawn<caf::detached>([this](agent_actor::pointer) -> agent_actor::behavior_type {
    return {
        [this](shutdown_atom, bool peer_died) {
          {
            std::lock_guard<std::mutex> lock(shutdown_mu_);
            shutdown_ = true;
            peer_died_ = peer_died_ || peer_died;
          }
          shutdown_cv_.notify_all();
          return true;
        },
        [this](prepare_atom, uint64_t epoch, const std::vector<stage_setup>& stages,
               int32_t n_blocks) -> caf::result<std::string, std::vector<int32_t>> {
          auto ports = prepare_here(epoch, stages, n_blocks);
          if (!ports) {
            return {ports.err().message, std::vector<int32_t>()};
          }
          return {std::string(), std::move(*ports)};
        },
        [this](kv_ship_atom, uint64_t epoch, const std::vector<int64_t>& layers,
               const std::vector<int32_t>& to_ranks, const std::vector<int32_t>& from,
               const std::vector<int32_t>& to) -> caf::result<std::string, uint64_t> {
          auto bytes = ship_kv_here(epoch, layers, to_ranks, from, to);
          if (!bytes) {
            return {bytes.err().message, uint64_t{0}};
          }
          return {std::string(), *bytes};
        },
        [this](kv_take_atom, uint64_t epoch, const std::vector<int64_t>& layers,
               const std::vector<int32_t>& blocks) -> caf::result<std::string, uint64_t> {
          auto bytes = take_kv_here(epoch, layers, blocks);
          if (!bytes) {
            return {bytes.err().message, uint64_t{0}};
          }
          return {std::string(), *bytes};
        },
        [this](commit_atom, uint64_t epoch) {
          commit_here(epoch);
          return true;
        },
        [this](abort_atom, uint64_t epoch) {
          abort_here(epoch);
          return true;
        },
        [this](quiesce_atom, uint64_t, const std::vector<int32_t>& lost) {
          quiesce_here(lost);
          return true;
        },
    };
  });
}

result<std::vector<int32_t>> local_server::prepare_here(uint64_t epoch,
                                                        const std::vector<stage_setup>& stages,
                                                        int32_t n_blocks) {
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    if (pending_) {
      return make_error("rank %d still holds the stages of reshard %llu", link_.rank,
                        static_cast<unsigned long long>(pending_->epoch));
    }
    if (epoch <= epoch_) {
      return make_error("rank %d runs epoch %llu already; a reshard to %llu comes too late",
                        link_.rank, static_cast<unsigned long long>(epoch_),
                        static_cast<unsigned long long>(epoch));
    }
  }
  if (auto ok = check_stages(stages, model_->config().n_layer, link_.world); !ok) {
    return make_error("rank %d: %s", link_.rank, ok.err().message.c_str());
  }
  if (const char* fail = std::getenv("BATON_TEST_RESHARD_FAIL_RANK");
      fail != nullptr && std::atoi(fail) == link_.rank && stages_on(stages, link_.rank) > 0) {
    // tests: a rank that cannot prepare its stages (a device that fails, a host out of
    // memory)
    return make_error("rank %d: preparing failed as BATON_TEST_RESHARD_FAIL_RANK asks; nothing "
                      "changed",
                      link_.rank);
  }
  if (const char* slow = std::getenv("BATON_TEST_SLOW_PREPARE_RANK");
      slow != nullptr && std::atoi(slow) == link_.rank && stages_on(stages, link_.rank) > 0) {
    // tests: a rank whose preparing takes long (a big model's weights), to be killed then
    std::this_thread::sleep_for(std::chrono::seconds(4));
  }
  // a stage that stays as it is here (same layers, device, threads, neighbours' kinds and
  // KV pool) keeps its compute, weights and KV: nothing to make, nothing to move
  const int32_t n_local = stages_on(stages, link_.rank);
  std::vector<std::shared_ptr<stage_compute>> kept(stages.size());
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    const int32_t old_local = stages_on(opts_.stages, link_.rank);
    for (size_t s = 0; s < stages.size() && n_blocks == opts_.serving.n_blocks; ++s) {
      if (stages[s].rank != link_.rank) {
        continue;
      }
      const auto want = compute_options(stages, static_cast<int32_t>(s), n_local, n_blocks);
      for (size_t t = 0; t < opts_.stages.size(); ++t) {
        if (!computes_[t] || opts_.stages[t].rank != link_.rank) {
          continue;
        }
        const auto had = compute_options(opts_.stages, static_cast<int32_t>(t), old_local,
                                         opts_.serving.n_blocks);
        if (had.first_layer == want.first_layer && had.last_layer == want.last_layer &&
            had.device == want.device && had.n_threads == want.n_threads &&
            had.keep_output_on_device == want.keep_output_on_device) {
          kept[s] = computes_[t];
        }
      }
    }
  }
  // old and new stages are resident together until the switch: the new CPU stages' KV
  // must fit beside what the process holds now (a GPU stage's allocation fails by itself)
  std::vector<std::pair<int64_t, int64_t>> new_cpu;
  for (size_t s = 0; s < stages.size(); ++s) {
    const stage_setup& st = stages[s];
    if (st.rank == link_.rank && !cuda_device_index(st.device) && !kept[s]) {
      new_cpu.emplace_back(st.first_layer, st.last_layer);
    }
  }
  const serving_config& sv = opts_.serving;
  const uint64_t new_kv =
      cpu_stage_kv_bytes(*model_, new_cpu, n_blocks, sv.block_size, sv.kv_type);
  // and the weights they copy into their own memory (not with --no-repack)
  uint64_t new_packed = 0;
  for (const auto& [first, last] : new_cpu) {
    for (const tensor_info* t : cpu_stage::owned_tensors(*model_, first, last)) {
      new_packed += opts_.repack ? t->n_bytes : 0;
    }
  }
  if (new_kv + new_packed > 0) {
    const resource_budget budget = detect_budget();
    const uint64_t used = budget.memory_used_bytes.value_or(0);
    const uint64_t room = budget.memory_bytes > used ? budget.memory_bytes - used : 0;
    if (new_kv + new_packed > room) {
      return make_error("rank %d: preparing the new stages needs %s of KV memory and %s of "
                        "weights copied into their own memory (--no-repack: none) on the host "
                        "beside the running pipeline's (both are held until the switch), and "
                        "%s of %s is free (%s); nothing changed",
                        link_.rank, format_bytes(new_kv).c_str(), format_bytes(new_packed).c_str(),
                        format_bytes(room).c_str(), format_bytes(budget.memory_bytes).c_str(),
                        budget.memory_source.c_str());
    }
  }
  // the new epoch's route first: its stages send to it from their first step on
  std::vector<int32_t> ranks;
  for (const stage_setup& st : stages) {
    ranks.push_back(st.rank);
  }
  data_->set_route(epoch, ranks);
  prepared p;
  p.epoch = epoch;
  p.stages = stages;
  p.n_blocks = n_blocks;
  p.computes.resize(stages.size());
  p.shards.resize(stages.size());
  std::vector<int32_t> ports(stages.size(), 0);
  for (size_t s = 0; s < stages.size(); ++s) {
    if (stages[s].rank != link_.rank) {
      continue;
    }
    auto c = kept[s] ? result<std::unique_ptr<stage_compute>>(nullptr)
                     : make_stage_compute(
                           compute_options(stages, static_cast<int32_t>(s), n_local, n_blocks));
    std::string failed;
    if (!c) {
      failed = c.err().message;
    } else {
      p.computes[s] = kept[s] ? kept[s] : std::shared_ptr<stage_compute>(std::move(*c));
      p.shards[s] = spawn_stage(stages, static_cast<int32_t>(s), p.computes[s], epoch);
      if (link_.world > 1) {
        auto port = sys_->middleman().publish(p.shards[s], 0, link_.bind_host.c_str());
        if (!port) {
          failed = "cannot publish it on " + link_.bind_host + ": " + sys_->render(port.error());
        } else {
          ports[s] = *port;
        }
      }
    }
    if (!failed.empty()) {
      release_shards(p.shards);
      return make_error("rank %d: preparing stage %zu (layers [%lld, %lld) on %s): %s; nothing "
                        "changed",
                        link_.rank, s, static_cast<long long>(stages[s].first_layer),
                        static_cast<long long>(stages[s].last_layer), stages[s].device.c_str(),
                        failed.c_str());
    }
  }
  std::lock_guard<std::mutex> lock(shards_mu_);
  pending_ = std::move(p);
  return ports;
}

result<uint64_t> local_server::ship_kv_here(uint64_t epoch, const std::vector<int64_t>& layers,
                                            const std::vector<int32_t>& to_ranks,
                                            const std::vector<int32_t>& from,
                                            const std::vector<int32_t>& to) {
  std::lock_guard<std::mutex> lock(shards_mu_);
  if (!pending_ || pending_->epoch != epoch || layers.size() != to_ranks.size() ||
      from.size() != to.size()) {
    return make_error("rank %d: no reshard to epoch %llu prepared here", link_.rank,
                      static_cast<unsigned long long>(epoch));
  }
  uint64_t bytes = 0;  // copied into this rank's new stages
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t layer = layers[i];
    const int32_t owner = stage_of_layer(opts_.stages, layer);
    if (owner < 0 || !computes_[static_cast<size_t>(owner)]) {
      return make_error("rank %d does not hold layer %lld", link_.rank,
                        static_cast<long long>(layer));
    }
    const int32_t next = stage_of_layer(pending_->stages, layer);
    if (to_ranks[i] == link_.rank && next >= 0 &&
        pending_->computes[static_cast<size_t>(next)] == computes_[static_cast<size_t>(owner)]) {
      continue;  // a stage kept as it was: its KV is where it belongs
    }
    auto rows = computes_[static_cast<size_t>(owner)]->export_kv(layer, from);
    if (!rows) {
      return make_error("rank %d: exporting the KV rows of layer %lld: %s", link_.rank,
                        static_cast<long long>(layer), rows.err().message.c_str());
    }
    if (to_ranks[i] == link_.rank) {
      bytes += rows->size();
      auto moved = next >= 0 && pending_->computes[static_cast<size_t>(next)]
                       ? pending_->computes[static_cast<size_t>(next)]->import_kv(layer, to, *rows)
                       : result<void>(make_error("no prepared stage here holds it"));
      if (!moved) {
        return make_error("rank %d: moving the KV rows of layer %lld: %s", link_.rank,
                          static_cast<long long>(layer), moved.err().message.c_str());
      }
      continue;
    }
    activations a;
    a.header.kind = payload_kind::kv_rows;
    a.header.stage = activation_header::kv_stage;
    a.header.epoch = epoch;
    a.header.to_rank = to_ranks[i];
    a.header.layer = layer;
    a.header.n_bytes = rows->size();
    a.bytes = std::move(*rows);
    data_->send(std::move(a));
  }
  return bytes;
}

result<uint64_t> local_server::take_kv_here(uint64_t epoch, const std::vector<int64_t>& layers,
                                            const std::vector<int32_t>& to) {
  uint64_t bytes = 0;
  for (const int64_t layer : layers) {
    // no lock while waiting: the rows come from another rank's agent (the transport polls
    // fast while they are expected: an idle rank's progress thread naps 100 ms at a time)
    data_->expect(activation_header::kv_stage);
    auto got = data_->recv_kv(epoch, layer, k_kv_wait);
    data_->expect_done(activation_header::kv_stage);
    if (!got) {
      return make_error("rank %d: the KV rows of layer %lld did not arrive within %lld s",
                        link_.rank, static_cast<long long>(layer),
                        static_cast<long long>(k_kv_wait.count()));
    }
    std::lock_guard<std::mutex> lock(shards_mu_);
    if (!pending_ || pending_->epoch != epoch) {
      return make_error("rank %d: no reshard to epoch %llu prepared here", link_.rank,
                        static_cast<unsigned long long>(epoch));
    }
    const int32_t next = stage_of_layer(pending_->stages, layer);
    auto moved = next >= 0 && pending_->computes[static_cast<size_t>(next)]
                     ? pending_->computes[static_cast<size_t>(next)]->import_kv(layer, to,
                                                                                 got->bytes)
                     : result<void>(make_error("no prepared stage here holds it"));
    if (!moved) {
      return make_error("rank %d: importing the KV rows of layer %lld: %s", link_.rank,
                        static_cast<long long>(layer), moved.err().message.c_str());
    }
    bytes += got->bytes.size();
  }
  return bytes;
}

void local_server::commit_here(uint64_t epoch) {
  std::vector<shard_actor> old;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    if (!pending_ || pending_->epoch != epoch) {
      return;
    }
    prepared p = std::move(*pending_);
    pending_.reset();
    old = std::exchange(local_shards_, {});
    for (const auto& s : p.shards) {
      if (s) {
        local_shards_.push_back(s);
      }
    }
    computes_ = std::move(p.computes);
    opts_.stages = std::move(p.stages);
    opts_.serving.n_blocks = p.n_blocks;
    opts_.n_stages = static_cast<int32_t>(opts_.stages.size());
    epoch_ = epoch;
    committed_epoch_ = epoch;
  }
  release_shards(old);
  data_->retire_before(epoch);
}

void local_server::abort_here(uint64_t epoch) {
  std::optional<prepared> p;
  {
    std::lock_guard<std::mutex> lock(shards_mu_);
    if (!pending_ || pending_->epoch != epoch) {
      return;
    }
    p = std::move(pending_);
    pending_.reset();
  }
  release_shards(p->shards);
}

void local_server::release_shards(const std::vector<shard_actor>& shards) {
  for (const auto& s : shards) {
    if (!s) {
      continue;
    }
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    if (link_.world > 1) {
      // the middleman holds published actors: let go, or the system waits for them forever
      auto ignored = sys_->middleman().unpublish(s, 0);
    }
  }
}

}  // namespace baton
