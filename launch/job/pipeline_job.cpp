// pipeline_job.hpp: the stages from a topology file, --device or --stages, every rank's devices
// gathered for the planner, the NCCL id exchange for --nccl, the local_server started on every
// rank, and a teardown that leaves after 10 s if it hangs.
#include "launch/job/pipeline_job.hpp"

#include <chrono>
#include <filesystem>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "launch/job/signals.hpp"
#include "runtime/backend/cuda_backend.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/system/device.hpp"
#include "runtime/system/units.hpp"
#include "runtime/transport/gathered.hpp"
#include "topology/layer_range.hpp"
#include "topology/planner.hpp"


namespace baton::cli {

result<std::vector<stage_setup>> spread_stages(int64_t n_layer, int32_t n_stages, int32_t world) {
  const int32_t n = std::max(n_stages, world);
  auto ranges = split_layers(n_layer, n);
  if (!ranges) {
    return make_error("%d stages over %d ranks: %s", n, world, ranges.err().message.c_str());
  }
  std::vector<stage_setup> out;
  for (int32_t s = 0; s < n; ++s) {
    const auto& r = (*ranges)[static_cast<size_t>(s)];
    out.push_back(stage_setup{static_cast<int32_t>(static_cast<int64_t>(s) * world / n),
                              r.first, r.last, 0});
  }
  return out;
}

result<std::optional<topology>> read_topology(mpi_session& mpi, engine_flags& f) {
  if (f.topology.empty()) {
    return std::optional<topology>();
  }
  auto t = parse_topology_file(f.topology);
  if (auto ok = mpi.agree(t ? result<void>() : result<void>(t.err())); !ok) {
    return ok.err();
  }
  if (f.model.empty()) {
    f.model = t->model;
  }
  return std::optional<topology>(std::move(*t));
}

namespace {

/// The devices each rank describes: the CPU and the first GPUs of its host.
constexpr int k_described_gpus = 8;

std::vector<std::string> described_devices() {
  std::vector<std::string> out{to_string(device_id{})};
  for (int i = 0; i < k_described_gpus; ++i) {
    out.push_back(cuda_device_name(i));
  }
  return out;
}

/// Every rank describes its own devices; the plan is made from what all of them said,
/// identically on every rank (a malformed description is an error on every rank alike).
result<placement_env> gather_devices(mpi_session& mpi) {
  nlohmann::json mine = nlohmann::json::array();
  for (const std::string& d : described_devices()) {
    const device_info i = query_local_device(d);
    mine.push_back({{"device", d}, {"exists", i.exists}, {"memory", i.memory_bytes},
                    {"source", i.source}, {"threads", i.threads},
                    {"bandwidth", i.bandwidth}});
  }
  using described = std::map<std::string, device_info>;  // device -> what its rank said
  std::vector<described> all;
  auto read = read_payloads(
      mpi.allgather(to_payload({{"devices", mine}})), "describing the devices",
      [&](int32_t, const nlohmann::json& j) -> result<void> {
        described rank;
        for (const auto& d : j.at("devices")) {
          device_info out;
          out.exists = d.at("exists").get<bool>();
          out.memory_bytes = d.at("memory").get<uint64_t>();
          out.source = d.at("source").get<std::string>();
          out.threads = d.at("threads").get<int32_t>();
          out.bandwidth = d.at("bandwidth").get<double>();
          rank[d.at("device").get<std::string>()] = out;
        }
        all.push_back(std::move(rank));
        return {};
      });
  if (!read) {
    return read.err();
  }
  placement_env env;
  env.world_size = mpi.size();
  if (mpi.size() > 1) {
    env.rank_hosts = mpi.hosts();
  }
  env.query_device = [all](int32_t rank, const std::string& device) {
    device_info out;
    out.source = "not a device baton knows (expected cpu or cuda:0.." +
                 std::to_string(k_described_gpus - 1) + ")";
    if (rank < 0 || static_cast<size_t>(rank) >= all.size()) {
      return out;
    }
    const described& said = all[static_cast<size_t>(rank)];
    if (auto it = said.find(device); it != said.end()) {
      out = it->second;
    }
    return out;
  };
  return env;
}

/// `--device` without a topology file: the `--stages` split (spread over the ranks as
/// without a device) with every stage on the device, and the command's settings as the
/// [pipeline] table, so the planner sizes KV from the device's memory.
result<topology> device_topology(const mpi_session& mpi, const engine_flags& f,
                                 const std::string& model_path, const server_options& so) {
  const int32_t world = mpi.size();
  const int32_t n = std::max(f.stages, world);
  topology t = default_topology(model_path, n);
  t.path = "--device " + f.device;
  t.pipeline = pipeline_keys_of(so.serving);
  auto kv_flag = f.kv_cache_bytes();
  if (!kv_flag) {
    return kv_flag.err();
  }
  const std::optional<uint64_t> kv_bytes = *kv_flag;
  std::map<int32_t, int32_t> stages_of_rank;
  for (int32_t s = 0; s < n; ++s) {
    stage_spec& st = t.stages[static_cast<size_t>(s)];
    st.rank = static_cast<int32_t>(static_cast<int64_t>(s) * world / n);
    ++stages_of_rank[st.rank];
  }
  for (stage_spec& st : t.stages) {
    st.device = f.device;
    if (f.device == "cuda") {
      // the rank's index among the ranks of its host: one GPU each, as NCCL wants
      int32_t local = 0;
      for (int32_t r = 0; r < st.rank && world > 1; ++r) {
        local += mpi.hosts()[static_cast<size_t>(r)] == mpi.hosts()[static_cast<size_t>(st.rank)];
      }
      st.device = cuda_device_name(local);
    } else if (!cuda_device_index(f.device)) {
      return make_error("--device '%s': expected cpu, cuda:N or cuda", f.device.c_str());
    }
    // the rank's stages share its device and the flag's share of it
    const auto k = static_cast<double>(stages_of_rank[st.rank]);
    if (kv_bytes) {
      st.kv_cache_memory = static_cast<uint64_t>(static_cast<double>(*kv_bytes) / k);
    } else {
      st.memory_utilization = f.memory_utilization / k;
    }
  }
  return t;
}

std::string to_hex(const char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<unsigned char>(p[i]);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

bool from_hex(const std::string& text, char* out, size_t n) {
  if (text.size() != 2 * n) {
    return false;
  }
  auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  for (size_t i = 0; i < n; ++i) {
    const int hi = nibble(text[2 * i]);
    const int lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return true;
}

/// --nccl: the NCCL link between the ranks that run GPU stages, or nothing where no GPU
/// stage hands over to a GPU stage of another rank. Every rank calls it (collective).
/// NCCL takes one GPU per rank, and a pair's transfers must not wait on each other in a
/// cycle: the ranks must run the pipeline in order (stage ranks never decrease), so each
/// rank only receives from earlier ranks and sends to later ones.
result<std::shared_ptr<device_link>> device_link_for(mpi_session& mpi,
                                                     const std::vector<stage_setup>& stages) {
  std::map<int32_t, int> gpu_of_rank;  // rank -> its CUDA device
  bool crosses = false;
  for (size_t s = 0; s < stages.size(); ++s) {
    const auto dev = cuda_device_index(stages[s].device);
    if (!dev) {
      continue;
    }
    auto [it, fresh] = gpu_of_rank.emplace(stages[s].rank, *dev);
    if (!fresh && it->second != *dev) {
      return make_error("--nccl: rank %d runs stages on cuda:%d and cuda:%d; NCCL takes one GPU "
                        "per rank",
                        stages[s].rank, it->second, *dev);
    }
    if (s > 0 && stages[s].rank < stages[s - 1].rank) {
      return make_error("--nccl: stage %zu runs on rank %d after stage %zu on rank %d; the NCCL "
                        "path needs the ranks in pipeline order",
                        s, stages[s].rank, s - 1, stages[s - 1].rank);
    }
    crosses |= s > 0 && stages[s - 1].rank != stages[s].rank &&
               cuda_device_index(stages[s - 1].device).has_value();
  }
  if (!crosses) {
    return std::shared_ptr<device_link>();  // nothing goes GPU to GPU across ranks
  }
  std::vector<int32_t> members;
  for (const auto& [rank, dev] : gpu_of_rank) {
    members.push_back(rank);
  }
  // Every member checks what it needs before any joins the communicator (a member that
  // failed after the others entered ncclCommInitRank would leave them waiting forever);
  // the first also makes the id. One allgather tells everyone everything.
  const auto here = gpu_of_rank.find(mpi.rank());
  nlohmann::json mine = nlohmann::json::object();  // {} from a rank without a GPU stage
  if (here != gpu_of_rank.end()) {
    if (auto ready = cuda_backend::nccl_ready(here->second); !ready) {
      mine["error"] = ready.err().message;
    } else if (mpi.rank() == members.front()) {
      auto id = cuda_backend::nccl_make_id();
      if (id) {
        mine["nccl_id"] = to_hex(id->data(), id->size());
      } else {
        mine["error"] = id.err().message;
      }
    } else {
      mine["ready"] = true;
    }
  }
  std::string id_text;
  auto read = read_payloads(
      mpi.allgather(to_payload(mine)), "--nccl", [&](int32_t r, const nlohmann::json& j) -> result<void> {
        if (gpu_of_rank.count(r) == 0) {
          return {};
        }
        if (j.contains("error")) {
          return make_error("--nccl: rank %d: %s", r, j.at("error").get<std::string>().c_str());
        }
        if (j.empty()) {
          return make_error("--nccl: rank %d: said nothing", r);
        }
        if (r == members.front()) {
          id_text = j.at("nccl_id").get<std::string>();
        }
        return {};
      });
  if (!read) {
    return read.err();
  }
  cuda_backend::nccl_id id{};
  if (!from_hex(id_text, id.data(), id.size())) {
    return make_error("--nccl: rank %d sent a malformed NCCL id", members.front());
  }
  if (here == gpu_of_rank.end()) {
    return std::shared_ptr<device_link>();  // a CPU-only rank takes no part
  }
  auto l = cuda_backend::nccl_connect(id, members, mpi.rank(), here->second);
  if (!l) {
    return make_error("--nccl: rank %d (cuda:%d): %s", mpi.rank(), here->second,
                      l.err().message.c_str());
  }
  return std::shared_ptr<device_link>(std::move(*l));
}

}  // namespace

/// The stages a plan places (threads: --threads, else the plan's).
std::vector<stage_setup> stages_of(const pipeline_plan& plan, int32_t threads_flag) {
  std::vector<stage_setup> out;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const stage_plan& sp = plan.stages[i];
    out.push_back(stage_setup{plan.resolved.stages[i].rank, sp.layers.first, sp.layers.last,
                              threads_flag > 0 ? threads_flag : sp.threads,
                              plan.resolved.stages[i].device});
  }
  return out;
}

result<reshard_report> pipeline_job::reshard(std::string_view text, const std::string& name,
                                             bool* busy, bool recompute_kv) {
  reshard_settings how;
  how.recompute_kv = recompute_kv;
  auto stages = reshard_stages(text, name, &how.micro_batches, &how.n_blocks);
  if (!stages) {
    srv_->note_reshard_refused();
    return stages.err();
  }
  return srv_->reshard(std::move(*stages), busy, how);
}

result<std::vector<stage_setup>> pipeline_job::reshard_stages(std::string_view text,
                                                              const std::string& name,
                                                              int32_t* micro_batches,
                                                              int32_t* n_blocks) {
  auto t = parse_topology_text(text, name);
  if (!t) {
    return t.err();
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string running = model_->file().path();
  if (!t->model.empty() &&
      fs::weakly_canonical(t->model, ec) != fs::weakly_canonical(running, ec)) {
    return make_error("%s: model \"%s\" is not the model this job serves (%s): a reshard "
                      "keeps the model",
                      name.c_str(), t->model.c_str(), running.c_str());
  }
  // one rank describes its devices as they are now; the ranks of a job said at its start
  // what they have (a collective cannot be entered while serving: a rank may be gone)
  auto env = mpi_->size() == 1 ? gather_devices(*mpi_) : result<placement_env>(env_);
  if (!env) {
    return env.err();
  }
  const serving_config& now = srv_->options().serving;
  if (t->pipeline.max_model_len == 0) {
    t->pipeline.max_model_len = now.n_ctx;  // the file leaves the context as it runs
  }
  auto plan = plan_pipeline(*t, *model_, *env);
  if (!plan) {
    return plan.err();
  }
  // a [pipeline] table may restate the running settings, not change them (yet)
  if (t->pipeline.line > 0) {
    *micro_batches = t->pipeline.micro_batches;  // 0 (not in the table): as it is
    const serving_config want = with_pipeline_keys(now, plan->resolved.pipeline);
    const char* changed = want.kv_type != now.kv_type         ? "kv_cache_dtype"
                          : want.block_size != now.block_size ? "block_size"
                          : want.n_ctx != now.n_ctx           ? "max_model_len"
                          : want.max_num_seqs != now.max_num_seqs ? "max_num_seqs"
                          : want.max_num_batched_tokens != now.max_num_batched_tokens
                              ? "max_num_batched_tokens"
                              : nullptr;
    if (changed != nullptr) {
      return make_error("%s:%d: [pipeline] %s differs from the running job's; a reshard keeps "
                        "the KV cache type (%s), block size (%d), context length (%lld) and "
                        "batch limits (micro_batches may change): leave the table out or "
                        "restate them",
                        name.c_str(), t->pipeline.line, changed, kv_type_name(now.kv_type),
                        now.block_size, static_cast<long long>(now.n_ctx));
    }
  }
  // the KV pool: a file that sizes the stages' KV memory sizes the pool (capped as at
  // start; smaller or larger than the running one, it is laid out anew at the switch);
  // one that does not keeps the running pool, unless the new placement cannot hold it
  bool sized = false;
  for (const stage_spec& st : t->stages) {
    sized = sized || st.kv_cache_memory.has_value() || st.memory_utilization.has_value();
  }
  *n_blocks = pipeline_kv_blocks(*plan, sized ? n_blocks_cap_ : now.n_blocks);
  if (const int64_t one = kv_blocks_needed(1, now.n_ctx, now.block_size); *n_blocks < one) {
    return make_error("%s: the new placement holds %d KV blocks, fewer than one sequence of the "
                      "context length needs (%lld tokens: %lld blocks of %d)",
                      name.c_str(), *n_blocks, static_cast<long long>(now.n_ctx),
                      static_cast<long long>(one), now.block_size);
  }
  remember_specs(*plan);
  return stages_of(*plan, threads_flag_);
}

result<std::unique_ptr<pipeline_job>> pipeline_job::start(mpi_session& mpi,
                                                           const engine_flags& f,
                                                           const loaded& l, server_options so,
                                                           const std::optional<topology>& topo) {
  std::unique_ptr<pipeline_job> job(new pipeline_job());
  job->mpi_ = &mpi;
  job->model_ = l.m;
  job->threads_flag_ = f.threads;
  // every rank's devices, for the plan now and for reshards later
  auto env = gather_devices(mpi);
  if (!env) {
    return env.err();  // every rank read the same payloads: every rank fails alike
  }
  job->env_ = std::move(*env);
  std::optional<topology> from_device;
  if (!topo && f.device != "cpu") {
    auto t = device_topology(mpi, f, l.m->file().path(), so);
    if (auto ok = mpi.agree(t ? result<void>() : result<void>(t.err())); !ok) {
      return ok.err();
    }
    from_device = std::move(*t);
  }
  if (const std::optional<topology>& topo_or_device = topo ? topo : from_device; topo_or_device) {
    topology t = *topo_or_device;
    if (t.pipeline.max_model_len == 0) {
      t.pipeline.max_model_len = so.serving.n_ctx;  // the file leaves the context to -c
    }
    auto plan = plan_pipeline(t, *l.m, job->env_);
    if (auto ok = mpi.agree(plan ? result<void>() : result<void>(plan.err())); !ok) {
      return ok.err();
    }
    so.stages = stages_of(*plan, f.threads);
    job->remember_specs(*plan);
    so.serving = with_pipeline_keys(so.serving, plan->resolved.pipeline);
    job->n_blocks_cap_ = so.serving.n_blocks;
    so.serving.n_blocks = pipeline_kv_blocks(*plan, so.serving.n_blocks);
    if (!mpi.active() || mpi.rank() == 0) {
      if (!f.quiet) {
        std::fprintf(stderr, "baton: topology %s: %zu stages, KV capacity %lld tokens\n",
                     t.path.c_str(), plan->stages.size(),
                     static_cast<long long>(plan->capacity_tokens));
      }
    }
  } else {
    auto stages = spread_stages(l.m->config().n_layer, f.stages, mpi.size());
    if (auto ok = mpi.agree(stages ? result<void>() : result<void>(stages.err())); !ok) {
      return ok.err();
    }
    so.stages = *stages;
  }
  so.n_stages = static_cast<int32_t>(so.stages.size());
  // ranks sharing a host share its cores unless --threads or the topology says otherwise
  if (!topo && f.threads <= 0 && mpi.size() > 1) {
    int32_t here = 0;
    for (const auto& h : mpi.hosts()) {
      here += h == mpi.hosts()[static_cast<size_t>(mpi.rank())] ? 1 : 0;
    }
    so.n_threads = std::max(1, so.n_threads / here);
  }
  auto stage_timeout = f.stage_timeout_ms();
  if (auto ok = mpi.agree(stage_timeout ? result<void>() : result<void>(stage_timeout.err()));
      !ok) {
    return ok.err();
  }
  cluster_link link;
  link.stage_timeout = *stage_timeout;
  link.rank = mpi.rank();
  link.world = mpi.size();
  link.bind_host = mpi.bind_host();
  if (mpi.size() > 1) {
    std::vector<int32_t> ranks;
    for (const auto& st : so.stages) {
      ranks.push_back(st.rank);
    }
    auto dev = f.nccl ? device_link_for(mpi, so.stages) : result<std::shared_ptr<device_link>>(
                                                              std::shared_ptr<device_link>());
    if (auto ok = mpi.agree(dev ? result<void>() : result<void>(dev.err())); !ok) {
      return ok.err();
    }
    link.device_link = *dev != nullptr;
    job->mpi_data_ = std::make_shared<mpi_transport>(ranks, std::move(*dev));
    link.data = job->mpi_data_;
    link.allgather = [&mpi](const std::string& s) { return mpi.allgather(s); };
    std::weak_ptr<mpi_transport> data = job->mpi_data_;
    link.on_rank_down = [data, &mpi](int32_t rank) {
      if (auto d = data.lock()) {
        d->forget_peer(rank);
      }
      mpi.rank_died(rank);
    };
    pipeline_job* self = job.get();
    link.replan = [self](const std::vector<stage_setup>& running, const std::set<int32_t>& lost,
                         int32_t n_blocks) { return self->recovery_stages(running, lost, n_blocks); };
  }
  auto srv = local_server::create(l.m, l.tok, so, link);
  if (auto ok = mpi.agree(srv ? result<void>() : result<void>(srv.err())); !ok) {
    return ok.err();
  }
  job->srv_ = std::move(*srv);
  if (job->srv_->head()) {
    local_server* head = job->srv_.get();
    job->stop_listener_ = add_stop_listener([head] { head->begin_stop(); });
  }
  return job;
}

pipeline_job::~pipeline_job() {
  // A teardown that hangs must not keep the rank alive: after 10 s the rank still joins
  // MPI_Finalize (so the others' finalize completes and mpirun sees a clean exit) and
  // ends with the status the command set. Seen rarely under load, on a rank whose
  // actor system waited for a peer's proxy to let go.
  struct watchdog {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto w = std::make_shared<watchdog>();
  std::thread guard([w, mpi = mpi_] {
    std::unique_lock<std::mutex> lock(w->mu);
    if (!w->cv.wait_for(lock, std::chrono::seconds(10), [&] { return w->done; })) {
      std::fprintf(stderr, "baton: rank %d: shutdown did not finish within 10 s; leaving\n",
                   mpi->rank());
      mpi->finalize_and_exit();
    }
  });
  struct disarm {
    std::shared_ptr<watchdog> w;
    std::thread& t;
    ~disarm() {
      {
        std::lock_guard<std::mutex> lock(w->mu);
        w->done = true;
      }
      w->cv.notify_all();
      t.join();
    }
  } disarm_at_end{w, guard};
  if (stop_listener_ != 0) {
    remove_stop_listener(stop_listener_);
  }
  if (srv_ && srv_->peer_died()) {
    mpi_->rank_died(-1);
  }
  srv_.reset();  // actors first: they use the transport
  if (mpi_data_) {
    mpi_data_->stop();  // then the progress thread, before MPI_Finalize
    if (mpi_data_->abandoned()) {
      mpi_->rank_died(-1);
    }
  }
  mpi_data_.reset();
}

transport_stats pipeline_job::transfer_stats() const {
  return mpi_data_ ? mpi_data_->stats() : transport_stats{};
}

void pipeline_job::serve_until_shutdown() {
  // a handler, so that the signal does not end the process at once: the wait below sees
  // the flag and gives the head time to shut the job down in order
  on_stop_signal([] {});
  srv_->wait_for_shutdown(stop_requested());
  on_stop_signal({});
}

}  // namespace baton::cli
