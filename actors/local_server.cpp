// local_server.hpp: checking the stages and serving settings, building this rank's shards and
// exchanging their endpoints with the other ranks, the router and admission on the head, the
// stage-time poller, submit through the admission actor, and a shutdown that every rank hears.
#include "actors/local_server.hpp"

#include "runtime/serving/step_pump.hpp"

#include "actors/admission.hpp"
#include "actors/router.hpp"
#include "actors/shard.hpp"
#include "runtime/transport/gathered.hpp"
#include "topology/layer_range.hpp"
#include "topology/memory_plan.hpp"

#include <caf/io/all.hpp>

namespace baton {

void event_stream::push(gen_event e) {
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    q_.push_back(std::move(e));
    fn = on_push_;
  }
  cv_.notify_all();
  if (fn) {
    fn();
  }
}

std::optional<gen_event> event_stream::try_next() {
  std::lock_guard<std::mutex> lock(mu_);
  if (q_.empty()) {
    return std::nullopt;
  }
  gen_event e = std::move(q_.front());
  q_.pop_front();
  return e;
}

void event_stream::on_push(std::function<void()> fn) {
  bool waiting = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_push_ = fn;
    waiting = !q_.empty();
  }
  if (waiting && fn) {
    fn();
  }
}

std::optional<gen_event> event_stream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !q_.empty(); })) {
    return std::nullopt;
  }
  gen_event e = std::move(q_.front());
  q_.pop_front();
  return e;
}

/// Stages that run the model's layers [0, n_layer) in order, each on a rank of `world`.
result<void> check_stages(const std::vector<stage_setup>& stages, int64_t n_layer,
                          int32_t world) {
  int64_t next = 0;
  for (size_t s = 0; s < stages.size(); ++s) {
    const stage_setup& st = stages[s];
    if (st.first_layer != next || st.last_layer <= st.first_layer || st.last_layer > n_layer) {
      return make_error("stage %zu: layers [%lld, %lld) do not continue the pipeline at layer "
                        "%lld within the model's %lld layers",
                        s, static_cast<long long>(st.first_layer),
                        static_cast<long long>(st.last_layer), static_cast<long long>(next),
                        static_cast<long long>(n_layer));
    }
    if (st.rank < 0 || st.rank >= world) {
      return make_error("stage %zu: rank %d is outside the MPI world of %d ranks", s, st.rank,
                        world);
    }
    next = st.last_layer;
  }
  if (next != n_layer) {
    return make_error("the stages cover layers [0, %lld) of the model's %lld",
                      static_cast<long long>(next), static_cast<long long>(n_layer));
  }
  return {};
}

/// Stages of `stages` on `rank`.
int32_t stages_on(const std::vector<stage_setup>& stages, int32_t rank) {
  int32_t n = 0;
  for (const auto& st : stages) {
    n += st.rank == rank ? 1 : 0;
  }
  return n;
}

int32_t stage_of_layer(const std::vector<stage_setup>& stages, int64_t layer) {
  for (size_t s = 0; s < stages.size(); ++s) {
    if (stages[s].first_layer <= layer && layer < stages[s].last_layer) {
      return static_cast<int32_t>(s);
    }
  }
  return -1;
}


result<std::unique_ptr<local_server>> local_server::create(std::shared_ptr<const model> m,
                                                           std::shared_ptr<const tokenizer> tok,
                                                           server_options o, cluster_link link) {
  const auto& c = m->config();
  if (o.stages.empty()) {
    if (o.n_stages < 1 || o.n_stages > c.n_layer) {
      return make_error("stages (%d) must be between 1 and the model's layer count (%lld)",
                        o.n_stages, static_cast<long long>(c.n_layer));
    }
    auto ranges = *split_layers(c.n_layer, o.n_stages);
    for (const auto& r : ranges) {
      o.stages.push_back(stage_setup{0, r.first, r.last, 0});
    }
  }
  o.n_stages = static_cast<int32_t>(o.stages.size());
  if (auto ok = check_stages(o.stages, c.n_layer, link.world); !ok) {
    return ok.err();
  }
  auto sv = resolve_serving(o.serving, o.n_stages, c.n_ctx_train);  // as the simulator does
  if (!sv) {
    return sv.err();
  }
  o.serving = *sv;
  if (link.world > 1 && !link.allgather) {
    return make_error("a job of %d ranks needs an allgather to exchange endpoints", link.world);
  }
  std::unique_ptr<local_server> srv(
      new local_server(std::move(m), std::move(tok), o, std::move(link)));
  if (auto started = srv->start(); !started) {
    return started.err();
  }
  return srv;
}

local_server::local_server(std::shared_ptr<const model> m, std::shared_ptr<const tokenizer> tok,
                           server_options opts, cluster_link link)
    : model_(std::move(m)), tok_(std::move(tok)), opts_(std::move(opts)), link_(std::move(link)) {
  add_message_types(cfg_);
  // CAF's default work-stealing workers poll every 50 µs for ~25 ms after each message:
  // beside two spinning compute threads on two cores that cost 15 % of a decode step.
  // Sharing workers block on a queue instead (measured: overhead 15 % -> under 1 %).
  cfg_.set("scheduler.policy", caf::atom("sharing"));
  if (link_.world > 1) {
    cfg_.load<caf::io::middleman>();
  }
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  data_ = link_.data ? link_.data : std::make_shared<local_transport>();
}

stage_compute_options local_server::compute_options(const std::vector<stage_setup>& stages,
                                                    int32_t s, int32_t n_local,
                                                    int32_t n_blocks) const {
  const stage_setup& st = stages[static_cast<size_t>(s)];
  const serving_config& sv = opts_.serving;
  stage_compute_options co;
  co.m = model_;
  co.first_layer = st.first_layer;
  co.last_layer = st.last_layer;
  co.device = st.device;
  co.n_blocks = n_blocks;
  co.block_size = sv.block_size;
  co.kv_type = sv.kv_type;
  // threads: the rank's share split over the stages it runs (they overlap in time)
  co.n_threads = st.n_threads > 0 ? st.n_threads : std::max(1, opts_.n_threads / n_local);
  co.kernels = opts_.kernels;
  co.repack = opts_.repack;
  co.max_tokens = sv.max_num_batched_tokens;
  co.max_logits = sv.max_num_seqs;
  co.max_context = sv.n_ctx;
  if (static_cast<size_t>(s) + 1 < stages.size()) {
    const stage_setup& next = stages[static_cast<size_t>(s) + 1];
    co.keep_output_on_device = (next.rank == link_.rank || link_.device_link) &&
                               cuda_device_index(st.device) && cuda_device_index(next.device);
  }
  return co;
}

shard_actor local_server::spawn_stage(const std::vector<stage_setup>& stages, int32_t s,
                                      std::shared_ptr<stage_compute> compute, uint64_t epoch) {
  const stage_setup& st = stages[static_cast<size_t>(s)];
  shard_config sc;
  sc.m = model_;
  sc.stage = s;
  sc.n_stages = static_cast<int32_t>(stages.size());
  sc.epoch = epoch;
  sc.first_layer = st.first_layer;
  sc.last_layer = st.last_layer;
  sc.compute = std::move(compute);
  sc.data = data_;
  sc.on_shutdown = [this](bool peer_died) {
    {
      std::lock_guard<std::mutex> lock(shutdown_mu_);
      shutdown_ = true;
      peer_died_ = peer_died_ || peer_died;
    }
    shutdown_cv_.notify_all();
  };
  return spawn_shard(*sys_, sc);
}

result<void> local_server::start() {
  const int32_t n_stages = opts_.n_stages;
  const int32_t n_local = stages_on(opts_.stages, link_.rank);
  computes_.assign(static_cast<size_t>(n_stages), nullptr);
  shards_.assign(static_cast<size_t>(n_stages), shard_actor{});
  // {"host": "10.0.0.2", "stages": [{"stage": 1, "port": 41234}]}, or {"error": "..."}
  nlohmann::json mine = {{"host", link_.bind_host}, {"stages", nlohmann::json::array()}};
  std::string failed;  // a rank that cannot publish still joins the exchange, to say so
  for (int32_t s = 0; s < n_stages; ++s) {
    const stage_setup& st = opts_.stages[static_cast<size_t>(s)];
    if (st.rank != link_.rank) {
      continue;
    }
    auto compute =
        make_stage_compute(compute_options(opts_.stages, s, n_local, opts_.serving.n_blocks));
    if (!compute) {
      // still joins the endpoint exchange below, which carries the message to every rank
      failed = "stage " + std::to_string(s) + ": " + compute.err().message;
      continue;
    }
    computes_[static_cast<size_t>(s)] = std::move(*compute);
    auto shard = spawn_stage(opts_.stages, s, computes_[static_cast<size_t>(s)], 0);
    shards_[static_cast<size_t>(s)] = shard;
    local_shards_.push_back(shard);
    if (link_.world > 1) {
      auto port = sys_->middleman().publish(shard, 0, link_.bind_host.c_str());
      if (!port) {
        failed = "cannot publish stage " + std::to_string(s) + " on " + link_.bind_host + ": " +
                 sys_->render(port.error());
        continue;
      }
      mine["stages"].push_back({{"stage", s}, {"port", *port}});
    }
  }
  // every rank's agent: the head reaches it for the job's end and for reshards (a rank
  // with no stage, a standby rank, has only its agent)
  agent_ = spawn_agent();
  pulse_ = spawn_pulse();
  if (link_.world > 1 && failed.empty()) {
    auto port = sys_->middleman().publish(agent_, 0, link_.bind_host.c_str());
    auto pulse_port = sys_->middleman().publish(pulse_, 0, link_.bind_host.c_str());
    if (!port || !pulse_port) {
      failed = "cannot publish the rank's agent on " + link_.bind_host + ": " +
               sys_->render(port ? pulse_port.error() : port.error());
    } else {
      mine["agent"] = *port;
      mine["pulse"] = *pulse_port;
    }
  }
  struct endpoint {
    int32_t rank = 0;
    std::string host;
    int32_t stage = 0;
    uint16_t port = 0;
  };
  std::vector<endpoint> agents;  // every rank's (stage unused)
  std::vector<endpoint> pulses;  // every rank's
  std::vector<endpoint> remote;  // every other rank's stages
  if (link_.world > 1) {
    const auto said = link_.allgather(
        to_payload(failed.empty() ? mine : nlohmann::json{{"error", failed}}));
    auto read = read_payloads(
        said, "exchanging the stages' endpoints",
        [&](int32_t r, const nlohmann::json& j) -> result<void> {
          if (j.contains("error")) {
            return make_error("rank %d: %s", r, j.at("error").get<std::string>().c_str());
          }
          const auto host = j.at("host").get<std::string>();
          rank_hosts_.push_back(host);
          {
            const auto port = j.at("agent").get<int64_t>();
            if (port < 1 || port > 65535) {
              return make_error("rank %d published its agent on port %lld (expected 1-65535)",
                                r, static_cast<long long>(port));
            }
            agents.push_back({r, host, -1, static_cast<uint16_t>(port)});
            const auto pulse = j.at("pulse").get<int64_t>();
            if (pulse < 1 || pulse > 65535) {
              return make_error("rank %d published its pulse on port %lld (expected 1-65535)",
                                r, static_cast<long long>(pulse));
            }
            pulses.push_back({r, host, -1, static_cast<uint16_t>(pulse)});
          }
          for (const auto& e : j.at("stages")) {
            const auto stage = e.at("stage").get<int64_t>();
            const auto port = e.at("port").get<int64_t>();
            if (stage < 0 || stage >= n_stages || port < 1 || port > 65535 ||
                opts_.stages[static_cast<size_t>(stage)].rank != r) {
              return make_error("rank %d published stage %lld on port %lld (expected one of its "
                                "own stages and a port 1-65535)",
                                r, static_cast<long long>(stage), static_cast<long long>(port));
            }
            if (r != link_.rank) {
              remote.push_back({r, host, static_cast<int32_t>(stage), static_cast<uint16_t>(port)});
            }
          }
          return {};
        });
    if (!read) {
      return read;
    }
  } else if (!failed.empty()) {
    return make_error("%s", failed.c_str());
  }
  if (!head()) {
    return {};
  }
  // the head reaches every remote stage through a proxy
  for (const endpoint& e : remote) {
    auto proxy = sys_->middleman().remote_actor<shard_actor>(e.host, e.port);
    if (!proxy) {
      return make_error("cannot reach stage %d on rank %d at %s:%u: %s", e.stage, e.rank,
                        e.host.c_str(), e.port, sys_->render(proxy.error()).c_str());
    }
    shards_.at(static_cast<size_t>(e.stage)) = *proxy;
  }
  agents_.assign(static_cast<size_t>(link_.world), agent_actor{});
  agents_[static_cast<size_t>(link_.rank)] = agent_;
  for (const endpoint& e : agents) {
    if (e.rank == link_.rank) {
      continue;
    }
    auto proxy = sys_->middleman().remote_actor<agent_actor>(e.host, e.port);
    if (!proxy) {
      return make_error("cannot reach the agent of rank %d at %s:%u: %s", e.rank, e.host.c_str(),
                        e.port, sys_->render(proxy.error()).c_str());
    }
    agents_[static_cast<size_t>(e.rank)] = *proxy;
  }
  std::vector<pulse_actor> pulse_of(static_cast<size_t>(link_.world));
  pulse_of[static_cast<size_t>(link_.rank)] = pulse_;
  for (const endpoint& e : pulses) {
    if (e.rank == link_.rank) {
      continue;
    }
    auto proxy = sys_->middleman().remote_actor<pulse_actor>(e.host, e.port);
    if (!proxy) {
      return make_error("cannot reach the pulse of rank %d at %s:%u: %s", e.rank, e.host.c_str(),
                        e.port, sys_->render(proxy.error()).c_str());
    }
    pulse_of[static_cast<size_t>(e.rank)] = *proxy;
  }
  for (int32_t s = 0; s < n_stages; ++s) {
    if (!shards_[static_cast<size_t>(s)]) {
      return make_error("stage %d (rank %d) published no endpoint", s,
                        opts_.stages[static_cast<size_t>(s)].rank);
    }
  }
  router_config rc;
  rc.sched = opts_.serving;
  rc.shards = shards_;
  for (const auto& st : opts_.stages) {
    rc.stage_ranks.push_back(st.rank);
  }
  view_->snap.stage_step_seconds.assign(static_cast<size_t>(n_stages), 0.0);
  rc.on_rank_down = [view = view_, down = link_.on_rank_down](int32_t rank) {
    {
      std::lock_guard<std::mutex> lock(view->mu);
      view->rank_died = true;
    }
    if (down) {
      down(rank);
    }
  };
  if (link_.world > 1) {
    // a lost stage is replaced and its requests replayed (local_server_recovery.cpp)
    rc.on_stage_lost = [this](int32_t rank, const std::string& why) { rank_lost(rank, why); };
  }
  rc.on_stats = [view = view_](const router_stats& s) {
    std::lock_guard<std::mutex> lock(view->mu);
    auto down = [](pipeline_state x) {
      return x == pipeline_state::stage_down || x == pipeline_state::stopped;
    };
    const bool newly_down = down(s.state) && !down(view->snap.stats.state);
    view->snap.stats = s;
    if (newly_down && view->admission && !view->stopping) {
      caf::anon_send(view->admission, refuse_atom::value, refusal::stage_down, s.down_message);
    }
  };
  rc.tok = tok_;
  rc.trace = opts_.trace;
  router_ = spawn_router(*sys_, rc);
  admission_config ac{opts_.serving, router_};
  admission_ = spawn_admission(*sys_, ac);
  // the router publishes its counters when it starts: once it has answered, the
  // snapshot holds them (a reader never sees an empty cache)
  (void)stats();
  std::lock_guard<std::mutex> lock(view_->mu);
  view_->admission = admission_;
  if (link_.world > 1) {
    start_recovery(std::move(pulse_of));
  }
  // a stage went down before the admission was there
  if (view_->snap.stats.state == pipeline_state::stage_down) {
    caf::anon_send(admission_, refuse_atom::value, refusal::stage_down,
                   view_->snap.stats.down_message);
  }
  return {};
}

local_server::~local_server() {
  {
    std::lock_guard<std::mutex> lock(view_->mu);
    view_->poll_stop = true;
    view_->admission = nullptr;
  }
  view_->cv.notify_all();
  if (poller_.joinable()) {
    poller_.join();
  }
  {
    // no recovery from here on: the ranks leave in any order
    std::lock_guard<std::mutex> lock(lost_mu_);
    recovery_stop_ = true;
  }
  lost_cv_.notify_all();
  if (recovery_.joinable()) {
    recovery_.join();
  }
  if (head()) {
    router_stats st;
    if (router_) {
      // from here on a stage going down is the shutdown, not a failure
      caf::anon_send(router_, shutdown_atom::value);
      // which rank is gone, if one is: ask the router before it goes
      st = stats();
      caf::anon_send_exit(admission_, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
    }
    // tell the other ranks the job is over, and wait until each has heard it: its reply,
    // or its going away (a rank may exit before its reply leaves), at most 5 s
    caf::scoped_actor self{*sys_};
    const std::set<int32_t> lost = lost_ranks();
    const bool died = peer_died() || !lost.empty();
    for (size_t rank = 0; rank < agents_.size(); ++rank) {
      if (!agents_[rank] || static_cast<int32_t>(rank) == link_.rank ||
          static_cast<int32_t>(rank) == st.down_rank || lost.count(static_cast<int32_t>(rank))) {
        continue;
      }
      // first the pulse: the watcher's going away, later, is then no lost head to it
      if (rank < pulses_.size() && pulses_[rank]) {
        caf::anon_send(pulses_[rank], shutdown_atom::value);
      }
      self->monitor(agents_[rank]);
      self->send(agents_[rank], shutdown_atom::value, died);
      bool heard = false;
      const caf::actor_addr agent = agents_[rank].address();
      self->receive_while([&] { return !heard; })(
          [&](bool) { heard = true; },
          // this rank's agent went (an earlier rank's leaving is no answer from this one)
          [&](caf::down_msg& dm) { heard = heard || dm.source == agent; },
          caf::after(std::chrono::seconds(5)) >> [&] { heard = true; });
    }
    agents_.clear();
    // only now: a rank whose head's watcher goes before it heard the shutdown leaves on
    // its own, as from a dead head
    if (watcher_) {
      caf::anon_send_exit(watcher_, caf::exit_reason::user_shutdown);
      watcher_ = nullptr;
    }
    pulses_.clear();
  }
  release_shards(local_shards_);
  if (pending_) {
    release_shards(pending_->shards);
    pending_.reset();
  }
  if (pulse_) {
    caf::anon_send_exit(pulse_, caf::exit_reason::user_shutdown);
    if (link_.world > 1) {
      auto ignored = sys_->middleman().unpublish(pulse_, 0);
    }
    pulse_ = nullptr;
  }
  if (agent_) {
    caf::anon_send_exit(agent_, caf::exit_reason::user_shutdown);
    if (link_.world > 1) {
      auto ignored = sys_->middleman().unpublish(agent_, 0);
    }
    agent_ = nullptr;
  }
  // drop our references first: a detached shard's thread ends only once its actor is
  // destroyed, and the system's destructor waits for those threads
  shards_.clear();
  local_shards_.clear();
  router_ = nullptr;
  admission_ = nullptr;
  if (link_.world > 1) {
    // Every actor here has been told to exit. Tearing the system down waits for actors
    // a peer node may still refer to, and that wait hung under load (10 s and more, on
    // non-head ranks, cause not found). The process ends right after the job: leave
    // the system to it (the launcher then exits without running static destructors).
    (void)sys_.release();
    return;
  }
  sys_.reset();
}

bool local_server::peer_died() {
  if (head()) {
    std::lock_guard<std::mutex> lock(view_->mu);
    return view_->rank_died;
  }
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  return peer_died_;
}

serving_snapshot local_server::snapshot() const {
  std::lock_guard<std::mutex> lock(view_->mu);
  if (head() && !view_->poll_started && !view_->poll_stop) {
    view_->poll_started = true;
    poller_ = std::thread([this] { poll_stage_times(); });
  }
  return view_->snap;
}

void local_server::poll_stage_times() const {
  caf::scoped_actor self{*sys_};
  std::vector<double> seconds;
  std::unique_lock<std::mutex> lock(view_->mu);
  while (!view_->poll_stop) {
    lock.unlock();
    const std::vector<shard_actor> shards = current_shards();  // a reshard may swap them
    seconds.resize(shards.size(), 0.0);
    for (size_t s = 0; s < shards.size(); ++s) {
      // bounded: a stage whose rank died may not answer (its proxy may not know yet);
      // it keeps its last value
      self->request(shards[s], std::chrono::seconds(1), stats_atom::value, int32_t{256})
          .receive(
              [&](std::vector<step_timing>& t) {
                if (t.empty()) {
                  return;
                }
                double sum_us = 0;
                for (const auto& x : t) {
                  sum_us += static_cast<double>(x.end_us - x.begin_us);
                }
                seconds[s] = sum_us / 1e6 / static_cast<double>(t.size());
              },
              [&](caf::error&) {});
    }
    lock.lock();
    view_->snap.stage_step_seconds = seconds;
    view_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return view_->poll_stop; });
  }
}

void local_server::begin_stop() {
  if (!head()) {
    return;
  }
  admission_actor admission;
  {
    std::lock_guard<std::mutex> lock(view_->mu);
    if (view_->stopping) {
      return;
    }
    view_->stopping = true;
    admission = view_->admission;
  }
  caf::anon_send(router_, shutdown_atom::value);
  if (admission) {
    caf::anon_send(admission, refuse_atom::value, refusal::shutting_down,
                   std::string("the server is shutting down"));
  }
}

void local_server::wait_for_shutdown(const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(shutdown_mu_);
  while (!shutdown_ && !stop.load()) {
    shutdown_cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
  // a signal reaches every rank at once (mpirun forwards it): the head ends its requests
  // and then shuts the job down; leave on our own only if it does not within 10 s
  shutdown_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return shutdown_; });
}

std::shared_ptr<event_stream> local_server::submit(gen_request r, admission* decision) {
  const int32_t n_choices = std::max<int32_t>(1, r.n);
  if (r.id == 0) {
    r.id = next_id_.fetch_add(static_cast<uint64_t>(n_choices));  // ids id .. id + n - 1
  }
  auto stream = std::make_shared<event_stream>();
  // the client actor forwards the router's events into the stream, and ends with the
  // last choice's final one. The stream is a spawn argument, not a capture: CAF 0.17
  // keeps a spawn's arguments behind a shared_ptr it leaves null when there are none,
  // then dereferences it (UBSan stops the process there)
  auto client = sys_->spawn(
      [](client_actor::pointer self, std::shared_ptr<event_stream> events,
         int32_t n_open) -> client_actor::behavior_type {
        auto open = std::make_shared<int32_t>(n_open);
        return {[=](event_atom, gen_event& e) {
          const bool last = e.finish != finish_reason::none && --*open <= 0;
          events->push(std::move(e));
          if (last) {
            self->quit();
          }
        }};
      },
      stream, n_choices);
  const uint64_t id = r.id;
  caf::scoped_actor self{*sys_};
  // no answer: the admission actor is gone, which only the server's end does
  admission a{admit::never, refusal::shutting_down, "no answer from the admission actor", 0};
  self->request(admission_, caf::infinite, submit_atom::value, std::move(r), client)
      .receive([&](admission& got) { a = std::move(got); },
               [&](caf::error& e) { a.message = sys_->render(e); });
  if (decision) {
    *decision = a;
  }
  if (a.verdict != admit::ok) {
    gen_event e;
    e.request_id = id;
    e.finish = finish_reason::error;
    e.error = a.message;
    e.error_kind = a.reason;
    stream->push(std::move(e));
    caf::anon_send_exit(client, caf::exit_reason::user_shutdown);
  }
  return stream;
}

void local_server::cancel(uint64_t id) { caf::anon_send(router_, cancel_atom::value, id); }

router_stats local_server::stats() const {
  caf::scoped_actor self{*sys_};
  router_stats out;
  self->request(router_, caf::infinite, stats_atom::value)
      .receive([&](router_stats& s) { out = s; }, [&](caf::error&) {});
  return out;
}

std::vector<step_timing> local_server::timings(int32_t stage) {
  caf::scoped_actor self{*sys_};
  std::vector<step_timing> out;
  // bounded: a stage whose rank died answers nothing (its proxy may not know yet)
  self->request(current_shards().at(static_cast<size_t>(stage)), std::chrono::seconds(2),
                stats_atom::value)
      .receive([&](std::vector<step_timing>& t) { out = std::move(t); }, [&](caf::error&) {});
  return out;
}

std::vector<shard_actor> local_server::current_shards() const {
  std::lock_guard<std::mutex> lock(shards_mu_);
  return shards_;
}

}  // namespace baton
