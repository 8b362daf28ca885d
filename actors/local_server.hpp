// The in-process API over the actor system, what the front end and `baton run` use:
// submit(request) gives a stream of events (text pieces with their token ids, then a
// final event with the finish reason: stop / length / cancelled / error with its message);
// cancel(id) stops a request and frees its blocks. All stages live in this process and
// hand activations over in memory; the next issue spreads the same actors over ranks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/messages.hpp"
#include "kernels/cpu/isa.hpp"
#include "runtime/model_config.hpp"
#include "runtime/tokenizer.hpp"
#include "runtime/transport.hpp"

namespace baton {

struct server_options {
  int32_t n_stages = 1;
  int32_t micro_batches = 0;           ///< 0: the number of stages
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_queue = 1024;
  int32_t max_per_key = 0;
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  int32_t n_blocks = 0;                ///< KV capacity in blocks (the memory plan decides)
  int64_t n_ctx = 4096;
  ggml_type kv_type = ggml_type::f16;
  int32_t n_threads = 2;               ///< in all, split over the stages
  cpu::isa kernels = cpu::best_isa();
};

/// The events of one request, in order; thread-safe.
class event_stream {
 public:
  void push(gen_event e);
  /// The next event, or nothing after `timeout`.
  std::optional<gen_event> next(std::chrono::milliseconds timeout = std::chrono::minutes(10));

 private:
  // -- member variables -------------------------------------------------------
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<gen_event> q_;
};

class local_server {
 public:
  static result<std::unique_ptr<local_server>> create(std::shared_ptr<const model> m,
                                                      std::shared_ptr<const tokenizer> tok,
                                                      server_options opts);
  ~local_server();

  /// Submits a request (its id is assigned when 0). A refusal arrives on the stream as a
  /// final event with finish_reason "error" and the admission's reason in `error`.
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision = nullptr);
  void cancel(uint64_t id);
  router_stats stats();
  /// Every step's begin and end on one stage.
  std::vector<step_timing> timings(int32_t stage);
  const server_options& options() const { return opts_; }

 private:
  local_server(std::shared_ptr<const model> m, std::shared_ptr<const tokenizer> tok,
               server_options opts);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<const model> model_;
  std::shared_ptr<const tokenizer> tok_;
  server_options opts_;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::shared_ptr<local_transport> data_;
  std::vector<shard_actor> shards_;
  router_actor router_;
  admission_actor admission_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace baton
