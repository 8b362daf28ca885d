// local_server.hpp.
#include "actors/local_server.hpp"

#include "actors/admission.hpp"
#include "actors/router.hpp"
#include "actors/shard.hpp"
#include "topology/layer_range.hpp"

namespace baton {

void event_stream::push(gen_event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    q_.push_back(std::move(e));
  }
  cv_.notify_all();
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

result<std::unique_ptr<local_server>> local_server::create(std::shared_ptr<const model> m,
                                                           std::shared_ptr<const tokenizer> tok,
                                                           server_options o) {
  const auto& c = m->config();
  if (o.n_stages < 1 || o.n_stages > c.n_layer) {
    return make_error("stages (%d) must be between 1 and the model's layer count (%lld)",
                      o.n_stages, static_cast<long long>(c.n_layer));
  }
  if (o.micro_batches == 0) {
    o.micro_batches = o.n_stages;
  }
  if (o.max_num_batched_tokens < 1 || o.max_num_seqs < 1) {
    return make_error("max_num_batched_tokens (%d) and max_num_seqs (%d) must be >= 1",
                      o.max_num_batched_tokens, o.max_num_seqs);
  }
  if (o.n_ctx > c.n_ctx_train) {
    return make_error("context (%lld) is larger than the model's training context (%lld)",
                      static_cast<long long>(o.n_ctx), static_cast<long long>(c.n_ctx_train));
  }
  if (o.n_blocks <= 0) {
    o.n_blocks = static_cast<int32_t>((o.n_ctx + o.block_size - 1) / o.block_size);
  }
  return std::unique_ptr<local_server>(new local_server(std::move(m), std::move(tok), o));
}

local_server::local_server(std::shared_ptr<const model> m, std::shared_ptr<const tokenizer> tok,
                           server_options opts)
    : model_(std::move(m)), tok_(std::move(tok)), opts_(opts) {
  add_message_types(cfg_);
  // CAF's default work-stealing workers poll every 50 µs for ~25 ms after each message:
  // beside two spinning compute threads on two cores that cost 15 % of a decode step.
  // Sharing workers block on a queue instead (measured: overhead 15 % -> under 1 %).
  cfg_.set("scheduler.policy", caf::atom("sharing"));
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  data_ = std::make_shared<local_transport>();
  auto ranges = *split_layers(model_->config().n_layer, opts_.n_stages);
  for (int32_t s = 0; s < opts_.n_stages; ++s) {
    shard_config sc;
    sc.m = model_;
    sc.stage = s;
    sc.n_stages = opts_.n_stages;
    sc.first_layer = ranges[static_cast<size_t>(s)].first;
    sc.last_layer = ranges[static_cast<size_t>(s)].last;
    sc.n_blocks = opts_.n_blocks;
    sc.block_size = opts_.block_size;
    sc.kv_type = opts_.kv_type;
    // threads split over stages (each stage runs on its own, so they overlap)
    sc.n_threads = std::max(1, opts_.n_threads / opts_.n_stages);
    sc.kernels = opts_.kernels;
    sc.data = data_;
    shards_.push_back(spawn_shard(*sys_, sc));
  }
  router_config rc;
  rc.sched.max_num_seqs = opts_.max_num_seqs;
  rc.sched.max_num_batched_tokens = opts_.max_num_batched_tokens;
  rc.sched.micro_batches = opts_.micro_batches;
  rc.sched.n_blocks = opts_.n_blocks;
  rc.sched.block_size = opts_.block_size;
  rc.sched.n_ctx = opts_.n_ctx;
  rc.sched.enable_prefix_caching = opts_.enable_prefix_caching;
  rc.shards = shards_;
  rc.tok = tok_;
  router_ = spawn_router(*sys_, rc);
  admission_config ac;
  ac.max_num_seqs = opts_.max_num_seqs;
  ac.max_queue = opts_.max_queue;
  ac.max_per_key = opts_.max_per_key;
  ac.n_ctx = opts_.n_ctx;
  ac.kv_capacity_tokens = static_cast<int64_t>(opts_.n_blocks) * opts_.block_size;
  ac.router = router_;
  admission_ = spawn_admission(*sys_, ac);
}

local_server::~local_server() {
  caf::anon_send_exit(admission_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
  for (auto& s : shards_) {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  }
  // drop our references first: a detached shard's thread ends only once its actor is
  // destroyed, and the system's destructor waits for those threads
  shards_.clear();
  router_ = nullptr;
  admission_ = nullptr;
  sys_.reset();
}

std::shared_ptr<event_stream> local_server::submit(gen_request r, admission* decision) {
  if (r.id == 0) {
    r.id = next_id_++;
  }
  auto stream = std::make_shared<event_stream>();
  // the client actor forwards the router's events into the stream, and ends with them
  auto client = sys_->spawn([stream](caf::event_based_actor* self) -> caf::behavior {
    return {[=](event_atom, gen_event& e) {
      const bool last = !e.finish_reason.empty();
      stream->push(std::move(e));
      if (last) {
        self->quit();
      }
    }};
  });
  const uint64_t id = r.id;
  caf::scoped_actor self{*sys_};
  admission a{"never", "no answer from the admission actor", 0};
  self->request(admission_, caf::infinite, submit_atom::value, std::move(r), client)
      .receive([&](admission& got) { a = std::move(got); },
               [&](caf::error& e) { a.reason = sys_->render(e); });
  if (decision) {
    *decision = a;
  }
  if (a.decision != "ok") {
    gen_event e;
    e.request_id = id;
    e.finish_reason = "error";
    e.error = a.reason;
    stream->push(std::move(e));
    caf::anon_send_exit(client, caf::exit_reason::user_shutdown);
  }
  return stream;
}

void local_server::cancel(uint64_t id) { caf::anon_send(router_, cancel_atom::value, id); }

router_stats local_server::stats() {
  caf::scoped_actor self{*sys_};
  router_stats out;
  self->request(router_, caf::infinite, stats_atom::value)
      .receive([&](router_stats& s) { out = s; }, [&](caf::error&) {});
  return out;
}

std::vector<step_timing> local_server::timings(int32_t stage) {
  caf::scoped_actor self{*sys_};
  std::vector<step_timing> out;
  self->request(shards_.at(static_cast<size_t>(stage)), caf::infinite, stats_atom::value)
      .receive([&](std::vector<step_timing>& t) { out = std::move(t); }, [&](caf::error&) {});
  return out;
}

}  // namespace baton
