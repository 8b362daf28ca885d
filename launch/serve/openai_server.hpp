// The OpenAI-compatible front end of `baton serve`, apart from sockets and from the
// pipeline: the routes (POST /v1/completions, POST /v1/chat/completions with SSE,
// GET /v1/models, GET /health, GET /metrics, POST /tokenize and /detokenize), API keys,
// the metrics, and each admitted
// request's life from its body to its last event. It talks to the pipeline through
// `serving_backend` (the live local_server, or a stub in tests and the fuzzer) and to
// the client through http::response. Every handler runs behind a boundary that turns
// any exception into a 500 OpenAI error; nothing slow runs on the io thread: /health
// and /metrics answer from the backend's snapshot, completions are parsed, templated and
// tokenised on a small worker pool.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actors/local_server.hpp"
#include "launch/serve/api_keys.hpp"
#include "launch/http/http_server.hpp"
#include "runtime/text/tokenizer.hpp"

namespace baton::api {

/// What the front end needs of the pipeline.
class serving_backend {
 public:
  virtual ~serving_backend() = default;
  /// Submits a tokenised request; may block briefly (runs on a worker thread).
  virtual std::shared_ptr<event_stream> submit(gen_request r, admission* decision) = 0;
  virtual void cancel(uint64_t id) = 0;
  /// Never blocks: what the router last published.
  virtual serving_snapshot snapshot() const = 0;
  /// POST /admin/topology (and SIGHUP): applies an edited topology (TOML text, `name` in
  /// errors) to the running pipeline; `busy` turns true when another reshard runs.
  /// `kv`: "move" or "recompute" (what becomes of the KV cache), "" for the server's
  /// default. Blocks for the reshard.
  virtual result<reshard_report> reshard(const std::string& toml, const std::string& name,
                                         bool* busy, const std::string& kv) {
    (void)toml;
    (void)name;
    (void)busy;
    (void)kv;
    return make_error("this server cannot change its pipeline while serving");
  }
};

struct front_end_options {
  std::string model_name;
  int64_t n_ctx = 0;
  int64_t n_vocab = 0;
  int32_t max_num_seqs = 0;                 ///< a request's n above it is a 400 (0: unchecked)
  int64_t created = 0;                      ///< the models' "created" timestamp
  int32_t n_workers = 2;                    ///< threads that parse and tokenise requests
  bool allow_special_tokens_in_chat = false;///< trusted deployments: parse <|...|> in content
  /// --admin-key: what admin calls (POST /admin/topology) must carry; with none, they are
  /// taken from loopback clients only.
  api_keys admin_keys;
};

class front_end {
 public:
  front_end(front_end_options o, api_keys keys, std::shared_ptr<const tokenizer> tok,
            serving_backend& backend);
  ~front_end();

  /// The http::handler: runs on the io thread and never blocks it.
  void handle(http::request rq, std::shared_ptr<http::response> res);
  /// The server's own counters (413s, 431s...), read by /metrics.
  void set_http_counters(std::function<http::server_counters()> fn);
  /// SIGTERM: new requests get 503; running ones end with a final event (an error chunk
  /// and [DONE], or a 503); waits up to `wait` for their answers to leave.
  void stop(std::chrono::milliseconds wait);
  /// Requests not finished yet.
  size_t n_active() const;

  struct impl;

 private:
  // -- member variables -------------------------------------------------------
  std::unique_ptr<impl> impl_;
};

}  // namespace baton::api
