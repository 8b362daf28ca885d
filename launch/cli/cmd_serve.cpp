// `baton serve`: its flags (vLLM's and uvicorn's names), and the wiring of the HTTP
// server (launch/http/http_server) and the OpenAI front end (launch/serve/openai_server) over the
// actor pipeline on rank 0 (one process, --stages N, or a --topology spread over mpirun
// ranks; the other ranks serve their shards).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/http/http_server.hpp"
#include "launch/serve/openai_server.hpp"
#include "launch/job/start_job.hpp"
#include "launch/job/signals.hpp"

namespace baton::cli {

namespace {

struct serve_options {
  engine_flags engine;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::vector<std::string> admin_keys;
  std::string reshard_kv = "move";       ///< a live reshard's KV: "move" or "recompute"
  std::string served_model_name;
  serving_config serving;                ///< the flags below; context, KV from `load`
  uint64_t max_body_bytes = 4 * 1024 * 1024;
  std::string timeout_keep_alive = "5";  ///< seconds (uvicorn's flag), or "500ms"
  std::string header_timeout = "10";
  std::string body_timeout = "30";
  int64_t max_connections = 0;           ///< 0: what the descriptor limit allows
  int32_t frontend_threads = 2;
  bool allow_special_tokens_in_chat = false;
  std::string allowed_origins;           ///< CORS (vLLM's flags); empty: no CORS headers
  std::string allowed_methods = "*";
  std::string allowed_headers = "*";
  bool allow_credentials = false;
};

/// "5", "2.5", "5s" or "500ms" as a duration; an error names the flag.
result<std::chrono::milliseconds> parse_timeout(const std::string& flag, const std::string& v) {
  std::string num = v;
  double scale = 1000;
  if (num.size() > 2 && num.compare(num.size() - 2, 2, "ms") == 0) {
    num.resize(num.size() - 2);
    scale = 1;
  } else if (!num.empty() && num.back() == 's') {
    num.pop_back();
  }
  char* end = nullptr;
  const double x = num.empty() ? NAN : std::strtod(num.c_str(), &end);
  if (num.empty() || end != num.c_str() + num.size() || !(x > 0) || x * scale > 86400e3) {
    return make_error("%s %s: expected a duration in seconds (5, 2.5, 5s or 500ms), more than "
                      "0 and at most a day", flag.c_str(), v.c_str());
  }
  return std::chrono::milliseconds(std::max<int64_t>(1, std::llround(x * scale)));
}

/// The live pipeline as the front end sees it.
class pipeline_backend final : public api::serving_backend {
 public:
  pipeline_backend(pipeline_job& job, std::string reshard_kv)
      : job_(job), srv_(job.server()), reshard_kv_(std::move(reshard_kv)) {}
  std::shared_ptr<event_stream> submit(gen_request r, admission* decision) override {
    return srv_.submit(std::move(r), decision);
  }
  void cancel(uint64_t id) override { srv_.cancel(id); }
  serving_snapshot snapshot() const override { return srv_.snapshot(); }
  result<reshard_report> reshard(const std::string& toml, const std::string& name,
                                 bool* busy, const std::string& kv) override {
    auto r = job_.reshard(toml, name, busy, (kv.empty() ? reshard_kv_ : kv) == "recompute");
    if (r) {
      // one line per phase, then the summary
      const auto epoch = static_cast<unsigned long long>(r->epoch);
      std::fprintf(stderr, "baton: reshard to epoch %llu: prepare %.3f s (new stages made "
                           "while serving)\n", epoch, r->prepare_seconds);
      std::fprintf(stderr, "baton: reshard to epoch %llu: drain %.3f s (steps in flight "
                           "finished)\n", epoch, r->drain_seconds);
      std::fprintf(stderr, "baton: reshard to epoch %llu: KV %.3f s (%llu bytes, %llu to other "
                           "ranks)\n", epoch, r->kv_seconds,
                   static_cast<unsigned long long>(r->kv_bytes_moved),
                   static_cast<unsigned long long>(r->kv_bytes_sent));
      std::fprintf(stderr, "baton: reshard to epoch %llu: switch %.3f s (new shards in, "
                           "steps resumed)\n", epoch,
                   std::max(0.0, r->pause_seconds - r->drain_seconds - r->kv_seconds));
      std::fprintf(stderr, "baton: reshard: epoch %llu, %zu stages; prepared in %.3f s, paused "
                           "%.3f s (steps in flight %.3f s, KV %.3f s), moved %llu KV bytes "
                           "(%llu to other ranks); %d KV blocks, %llu sequences preempted\n",
                   static_cast<unsigned long long>(r->epoch), srv_.options().stages.size(),
                   r->prepare_seconds, r->pause_seconds, r->drain_seconds, r->kv_seconds,
                   static_cast<unsigned long long>(r->kv_bytes_moved),
                   static_cast<unsigned long long>(r->kv_bytes_sent), r->n_blocks,
                   static_cast<unsigned long long>(r->preempted));
    } else {
      std::fprintf(stderr, "baton: reshard refused: %s\n", r.err().message.c_str());
    }
    return r;
  }

 private:
  // -- member variables -------------------------------------------------------
  pipeline_job& job_;
  local_server& srv_;
  std::string reshard_kv_;  ///< --reshard-kv: what a reshard that does not say does
};

/// SIGHUP: re-reads the topology file the server started with and reshards to it, on a
/// thread of its own (the signal thread only wakes it). Ends with the server.
class topology_reloader {
 public:
  topology_reloader(std::string path, api::serving_backend& backend)
      : path_(std::move(path)), backend_(backend), thread_([this] { loop(); }) {}
  ~topology_reloader() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  /// Asks for one reload (several while one runs make one more).
  void poke() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      wanted_ = true;
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return wanted_ || done_; });
      if (done_) {
        return;
      }
      wanted_ = false;
      lock.unlock();
      reload();
      lock.lock();
    }
  }
  void reload() {
    if (path_.empty()) {
      std::fprintf(stderr, "baton: SIGHUP: the server started without --topology: no file to "
                           "re-read\n");
      return;
    }
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) {
      std::fprintf(stderr, "baton: SIGHUP: cannot read %s\n", path_.c_str());
      return;
    }
    bool busy = false;
    (void)backend_.reshard(text.str(), path_, &busy, "");  // the backend logs what happened
  }

  // -- member variables -------------------------------------------------------
  std::string path_;
  api::serving_backend& backend_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;
  bool done_ = false;
  std::thread thread_;
};

int run_serve(serve_options o) {
  if (o.port < 0 || o.port > 65535) {
    return fail("--port " + std::to_string(o.port) + ": expected 0..65535 (0: any free port)");
  }
  const serving_config& sv = o.serving;
  if (sv.max_num_seqs < 1 || sv.max_queue < 0 || sv.block_size < 1 ||
      sv.max_num_batched_tokens < 1) {
    return fail("--max-num-seqs, --max-num-batched-tokens and --block-size must be >= 1, "
                "--max-queue >= 0");
  }
  if (sv.max_per_key < 0) {
    return fail("--max-concurrent-per-key " + std::to_string(sv.max_per_key) +
                ": expected 0 (no quota) or more");
  }
  auto cors = http::cors_policy::parse(o.allowed_origins, o.allowed_methods, o.allowed_headers,
                                       o.allow_credentials);
  if (!cors) {
    return fail(cors.err().message);
  }
  if (o.frontend_threads < 1 || o.frontend_threads > 256) {
    return fail("--frontend-threads " + std::to_string(o.frontend_threads) +
                ": expected 1..256");
  }
  http::server_limits limits;
  limits.body_bytes = o.max_body_bytes;
  for (auto [flag, text, out] :
       {std::tuple{"--timeout-keep-alive", &o.timeout_keep_alive, &limits.keep_alive},
        std::tuple{"--header-timeout", &o.header_timeout, &limits.header},
        std::tuple{"--body-timeout", &o.body_timeout, &limits.body}}) {
    auto d = parse_timeout(flag, *text);
    if (!d) {
      return fail(d.err().message);
    }
    *out = *d;
  }
  // every idle socket costs a descriptor: take all the process may have, and keep a
  // reserve for the model file, MPI, CAF and the log
  const uint64_t fd_limit = http::raise_descriptor_limit();
  const uint64_t reserve = 128;
  const uint64_t fd_room = fd_limit > reserve + 16 ? fd_limit - reserve : 16;
  if (o.max_connections < 0 || static_cast<uint64_t>(o.max_connections) > fd_room) {
    return fail("--max-connections " + std::to_string(o.max_connections) + ": expected 1.." +
                std::to_string(fd_room) + " (the descriptor limit " + std::to_string(fd_limit) +
                " less a reserve of " + std::to_string(reserve) + "), or 0 for that");
  }
  limits.max_connections = o.max_connections == 0 ? fd_room
                                                  : static_cast<uint64_t>(o.max_connections);
  auto keys = api::api_keys::load(o.api_keys, o.api_key_file);
  if (!keys) {
    return fail(keys.err().message);
  }
  if (sv.max_per_key > 0 && !keys->required()) {
    std::fprintf(stderr, "baton: --max-concurrent-per-key without --api-key: the quota holds "
                         "per request 'user' field, and requests without one share one quota\n");
  }
  auto admin_keys = api::api_keys::load(o.admin_keys, "");
  if (!admin_keys) {
    return fail(admin_keys.err().message);
  }
  auto j = open_job(o.engine, [&](const mpi_session&,
                                  const std::optional<topology>&) -> result<load_request> {
    return load_request{o.serving.max_num_seqs, false, o.serving.block_size,
                        o.serving.max_num_batched_tokens};
  });
  if (j.status != exit_ok) {
    return j.status;
  }
  auto job = start_job(j, o.engine, server_options_for(j.l, o.engine.stages, o.serving));
  if (!job) {
    return fail_agreed(*j.mpi, job.err().message);
  }
  if (!*job) {
    return exit_ok;  // a rank other than the head: the head has ended the job
  }
  local_server& srv = (*job)->server();
  api::front_end_options fo;
  fo.n_ctx = srv.options().serving.n_ctx;
  fo.n_vocab = j.l.m->config().n_vocab;
  fo.max_num_seqs = srv.options().serving.max_num_seqs;
  fo.created = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  fo.model_name = o.served_model_name.empty()
                      ? std::filesystem::path(j.l.m->file().path()).filename().string()
                      : o.served_model_name;
  fo.n_workers = o.frontend_threads;
  fo.allow_special_tokens_in_chat = o.allow_special_tokens_in_chat;
  fo.admin_keys = std::move(*admin_keys);
  const bool keyed = keys->required();
  pipeline_backend backend(**job, o.reshard_kv);
  api::front_end fe(fo, std::move(*keys), j.l.tok, backend);
  auto http_server = http::server::create(
      o.host, static_cast<uint16_t>(o.port),
      [&fe](http::request rq, std::shared_ptr<http::response> res) {
        fe.handle(std::move(rq), std::move(res));
      },
      limits, std::move(*cors));
  if (!http_server) {
    return fail(http_server.err().message);
  }
  http::server* hs = http_server->get();
  fe.set_http_counters([hs] { return hs->counters(); });
  // SIGINT/SIGTERM: refuse new requests, end the running ones with a final event (an
  // error chunk and [DONE], or a 503), give the answers up to 3 s to leave, then stop
  on_stop_signal([hs, &fe] {
    fe.stop(std::chrono::seconds(3));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the last bytes leave
    hs->stop();
  });
  // SIGHUP re-reads the topology: ready before the line that says the server is up
  topology_reloader reloader(o.engine.topology, backend);
  on_reload_signal([&reloader] { reloader.poke(); });
  std::fprintf(stderr, "baton: serving %s on http://%s:%u (%d stage(s), %d rank(s)%s)\n",
               fo.model_name.c_str(), o.host.c_str(), hs->port(), srv.options().n_stages,
               j.mpi->size(), keyed ? ", API keys required" : "");
  hs->run();
  on_reload_signal({});
  on_stop_signal({});
  std::fprintf(stderr, "baton: shutting down\n");
  http_server->reset();  // open connections close; the job's teardown ends their requests
  return exit_ok;
}

}  // namespace

void add_serve_command(CLI::App& app, int& status) {
  auto o = std::make_shared<serve_options>();
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server over the pipeline");
  o->engine.add_to(*cmd);
  o->engine.add_topology_to(*cmd);
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0: any free one)")->capture_default_str();
  cmd->add_option("--api-key", o->api_keys, "Required Bearer key for /v1 (repeatable)");
  cmd->add_option("--admin-key", o->admin_keys,
                  "Bearer key for admin calls (POST /admin/topology); without one they are "
                  "taken from this host only (repeatable)");
  cmd->add_option("--reshard-kv", o->reshard_kv,
                  "What a live reshard does with the KV cache: move it to the stages' new "
                  "owners, or drop it and recompute the running sequences")
      ->check(CLI::IsMember({"move", "recompute"}))
      ->capture_default_str();
  cmd->add_option("--api-key-file", o->api_key_file,
                  "File of keys, one per line (blank lines and # comments skipped)");
  cmd->add_option("--served-model-name", o->served_model_name,
                  "Model name in the API (default: the model file's name)");
  cmd->add_option("--max-num-seqs", o->serving.max_num_seqs, "Sequences in the running batch")
      ->capture_default_str();
  // one step size: the memory plan's and the scheduler's (-b is llama-server's name for it)
  cmd->remove_option(cmd->get_option("--batch-size"));
  cmd->add_option("--max-num-batched-tokens,-b,--batch-size", o->serving.max_num_batched_tokens,
                  "Tokens per step (prompt chunks and decodes together)")
      ->capture_default_str();
  cmd->add_option("--max-queue", o->serving.max_queue, "Requests waiting beyond max-num-seqs (then 429)")
      ->capture_default_str();
  cmd->add_option("--max-concurrent-per-key", o->serving.max_per_key,
                  "Requests one API key (or, without keys, one 'user') may have in flight, "
                  "running or queued; beyond, 429 (0: no quota)")
      ->capture_default_str();
  cmd->add_option("--block-size", o->serving.block_size, "Tokens per KV block")->capture_default_str();
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", o->serving.enable_prefix_caching,
                "Reuse KV blocks of shared prompt prefixes (on by default)");
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 beyond)")
      ->capture_default_str();
  cmd->add_option("--timeout-keep-alive", o->timeout_keep_alive,
                  "Seconds an idle keep-alive connection stays open")
      ->capture_default_str();
  cmd->add_option("--header-timeout", o->header_timeout,
                  "Seconds a client has to send a request's header")
      ->capture_default_str();
  cmd->add_option("--body-timeout", o->body_timeout,
                  "Seconds a client has to send a request's body")
      ->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections,
                  "Open connections (0: the descriptor limit less a reserve); beyond, the "
                  "oldest idle one is closed")
      ->capture_default_str();
  cmd->add_option("--frontend-threads", o->frontend_threads,
                  "Threads that parse, template and tokenise requests")
      ->capture_default_str();
  cmd->add_option("--allowed-origins", o->allowed_origins,
                  "CORS: origins allowed to call the API from a browser, a JSON list "
                  "('[\"*\"]', '[\"http://localhost:3000\"]') or a comma-separated one "
                  "(default: none, no CORS headers)");
  cmd->add_option("--allowed-methods", o->allowed_methods,
                  "CORS: methods a preflight may ask for (JSON or comma-separated list)")
      ->capture_default_str();
  cmd->add_option("--allowed-headers", o->allowed_headers,
                  "CORS: request headers a preflight may ask for (JSON or comma-separated list)")
      ->capture_default_str();
  cmd->add_flag("--allow-credentials", o->allow_credentials,
                "CORS: allow cookies and Authorization from browsers (the origin is echoed, "
                "never *)");
  cmd->add_flag("--allow-special-tokens-in-chat", o->allow_special_tokens_in_chat,
                "Parse special-token text (<|eot_id|>...) inside chat messages, as llama-server "
                "does (trusted clients only: it lets a message forge other turns)");
  cmd->callback([o, &status] { status = run_serve(*o); });
}

}  // namespace baton::cli
