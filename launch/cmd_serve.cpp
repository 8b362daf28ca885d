// `baton serve`: the OpenAI-compatible HTTP front end on rank 0 over the actor pipeline
// (one process, --stages N, or a --topology spread over mpirun ranks; the other ranks
// serve their shards). Endpoints: POST /v1/completions, POST /v1/chat/completions (SSE
// with stream: true), GET /v1/models, GET /health, GET /metrics (Prometheus, baton:
// prefix). Errors are OpenAI error objects; flags follow vLLM's names.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "launch/commands.hpp"
#include "launch/engine_flags.hpp"
#include "launch/http_server.hpp"
#include "launch/openai_api.hpp"
#include "launch/pipeline_job.hpp"
#include "launch/signals.hpp"

namespace baton::cli {

namespace {

using nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct serve_options {
  engine_flags engine;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::string served_model_name;
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_queue = 1024;
  int32_t block_size = 16;
  bool enable_prefix_caching = true;
  uint64_t max_body_bytes = 4 * 1024 * 1024;
};

/// A Prometheus histogram with fixed buckets.
struct histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bucket, not cumulative; the last is +Inf
  double sum = 0;
  uint64_t n = 0;

  explicit histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}
  void observe(double v) {
    size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) {
      ++i;
    }
    ++counts[i];
    sum += v;
    ++n;
  }
  void write(std::string& out, const std::string& name, const std::string& help) const {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t cum = 0;
    for (size_t i = 0; i < bounds.size(); ++i) {
      cum += counts[i];
      out += name + "_bucket{le=\"" + json(bounds[i]).dump() + "\"} " + std::to_string(cum) + "\n";
    }
    cum += counts.back();
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
    out += name + "_sum " + json(sum).dump() + "\n" + name + "_count " + std::to_string(n) + "\n";
  }
};

/// What the front end counts itself (the router counts tokens, blocks and steps).
struct front_metrics {
  std::mutex mu;
  histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  histogram itl{{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5}};
  histogram e2e{{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  std::map<std::string, uint64_t> rejected;      // by reason
  std::map<std::string, uint64_t> finished;      // by finish reason
  uint64_t requests = 0;                         // admitted
};

/// Everything a request handler needs.
struct front_end {
  serve_options o;
  std::shared_ptr<const model> m;
  std::shared_ptr<tokenizer> tok;
  local_server* srv = nullptr;
  std::string model_name;
  std::set<std::string> keys;
  int64_t n_ctx = 0;
  int64_t created = 0;
  front_metrics metrics;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stopping{false};   ///< a signal came: new requests get 503
  std::mutex active_mu;
  std::set<uint64_t> active;           ///< requests not finished yet
};

void send_error(http::response& res, const api::api_error& e, http::header_list headers = {}) {
  res.send(e.status, "application/json", api::error_json(e).dump(), std::move(headers));
}

void send_json(http::response& res, int status, const json& j) {
  res.send(status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// One admitted request's life: its events in, its answer out.
struct request_state {
  front_end* fe = nullptr;
  api::completion_request req;
  uint64_t id = 0;
  std::string object_id;
  std::shared_ptr<event_stream> stream;
  std::shared_ptr<http::response> res;
  clock_type::time_point t0 = clock_type::now();
  clock_type::time_point t_last;
  bool first = true;
  bool finished = false;
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> tops;  // per token: the alternatives
  std::mutex mu;  // drains come from CAF threads
};

std::string piece_text(const request_state& st, int32_t id) {
  auto piece = st.fe->tok->token_piece(id, true);
  return piece ? std::string(*piece) : std::string();
}

std::vector<int> piece_bytes(const std::string& t) {
  std::vector<int> bytes;
  for (char c : t) {
    bytes.push_back(static_cast<unsigned char>(c));
  }
  return bytes;
}

json logprobs_json(const request_state& st, size_t from, size_t to) {
  if (!st.req.logprobs) {
    return nullptr;
  }
  json content = json::array();
  json tokens = json::array();
  json values = json::array();
  json tops = json::array();
  for (size_t i = from; i < to; ++i) {
    const std::string t = piece_text(st, st.tokens[i]);
    json alts = json::array();
    json alt_map = json::object();
    for (const auto& [id, lp] : st.tops[i]) {
      const std::string a = piece_text(st, id);
      alts.push_back({{"token", a}, {"logprob", lp}, {"bytes", piece_bytes(a)}});
      alt_map[a] = lp;
    }
    content.push_back({{"token", t}, {"logprob", st.logprobs[i]}, {"bytes", piece_bytes(t)},
                       {"top_logprobs", alts}});
    tokens.push_back(t);
    values.push_back(st.logprobs[i]);
    tops.push_back(alt_map);
  }
  if (st.req.chat) {
    return {{"content", content}};
  }
  return {{"tokens", tokens},
          {"token_logprobs", values},
          {"top_logprobs", st.req.sampling.top_logprobs > 0 ? tops : json(nullptr)}};
}

json chunk_json(const request_state& st, const std::string& text, const json& finish,
                const json& logprobs, bool role) {
  json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", finish}};
  if (st.req.chat) {
    json delta = json::object();
    if (role) {
      delta["role"] = "assistant";
    }
    if (role || !text.empty()) {
      delta["content"] = text;
    }
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", st.object_id},
          {"object", st.req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", st.fe->created},
          {"model", st.fe->model_name},
          {"choices", json::array({choice})}};
}

/// Takes whatever events wait and answers with them (a stream's chunks, or the whole
/// response at the end).
void drain(const std::shared_ptr<request_state>& st) {
  std::lock_guard<std::mutex> lock(st->mu);
  front_end& fe = *st->fe;
  while (!st->finished) {
    auto e = st->stream->try_next();
    if (!e) {
      return;
    }
    const auto now = clock_type::now();
    const size_t before = st->tokens.size();
    if (e->token >= 0) {
      std::lock_guard<std::mutex> ml(fe.metrics.mu);
      if (st->first) {
        fe.metrics.ttft.observe(std::chrono::duration<double>(now - st->t0).count());
      } else {
        fe.metrics.itl.observe(std::chrono::duration<double>(now - st->t_last).count());
      }
      st->first = false;
      st->t_last = now;
      st->tokens.push_back(e->token);
      st->logprobs.push_back(e->logprob);
      std::vector<std::pair<int32_t, float>> alt;
      for (size_t k = 0; k < e->top_ids.size() && k < e->top_logprobs.size(); ++k) {
        alt.emplace_back(e->top_ids[k], e->top_logprobs[k]);
      }
      st->tops.push_back(std::move(alt));
    }
    st->text += e->text;
    const bool last = !e->finish_reason.empty();
    if (st->req.stream && (!e->text.empty() || (st->req.logprobs && e->token >= 0))) {
      st->res->chunk("data: " + dump(chunk_json(*st, e->text, nullptr,
                                                logprobs_json(*st, before, st->tokens.size()),
                                                false)) + "\n\n");
    }
    if (!last) {
      continue;
    }
    st->finished = true;
    st->stream->on_push(nullptr);  // the callback holds st: let both go
    {
      std::lock_guard<std::mutex> al(fe.active_mu);
      fe.active.erase(st->id);
    }
    {
      std::lock_guard<std::mutex> ml(fe.metrics.mu);
      fe.metrics.finished[e->finish_reason] += 1;
      fe.metrics.e2e.observe(std::chrono::duration<double>(now - st->t0).count());
    }
    if (e->finish_reason == "cancelled" && !fe.stopping) {
      if (st->req.stream) {
        st->res->end();
      }
      return;  // the client is gone
    }
    if (e->finish_reason == "cancelled") {  // the server stops: say so, as a final event
      e->finish_reason = "error";
      e->error = "the server is shutting down";
    }
    const json usage = api::usage_json(e->prompt_tokens, e->completion_tokens, e->cached_tokens);
    if (e->finish_reason == "error") {
      api::api_error err{500, e->error, "server_error", "", ""};
      if (e->error.find("is down") != std::string::npos || fe.stopping) {
        err.status = 503;
      }
      if (st->req.stream) {
        st->res->chunk("data: " + dump(api::error_json(err)) + "\n\n");
        st->res->chunk("data: [DONE]\n\n");
        st->res->end();
      } else {
        send_error(*st->res, err);
      }
      return;
    }
    if (st->req.stream) {
      st->res->chunk("data: " + dump(chunk_json(*st, "", e->finish_reason, nullptr, false)) +
                     "\n\n");
      if (st->req.include_usage) {
        json u = chunk_json(*st, "", nullptr, nullptr, false);
        u["choices"] = json::array();
        u["usage"] = usage;
        st->res->chunk("data: " + dump(u) + "\n\n");
      }
      st->res->chunk("data: [DONE]\n\n");
      st->res->end();
      return;
    }
    json choice = {{"index", 0},
                   {"logprobs", logprobs_json(*st, 0, st->tokens.size())},
                   {"finish_reason", e->finish_reason}};
    if (st->req.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", st->text}};
    } else {
      choice["text"] = st->text;
    }
    send_json(*st->res, 200,
              {{"id", st->object_id},
               {"object", st->req.chat ? "chat.completion" : "text_completion"},
               {"created", fe.created},
               {"model", fe.model_name},
               {"choices", json::array({choice})},
               {"usage", usage}});
  }
}

void reject(front_end& fe, http::response& res, const api::api_error& e,
            const std::string& reason, http::header_list headers = {}) {
  {
    std::lock_guard<std::mutex> ml(fe.metrics.mu);
    fe.metrics.rejected[reason] += 1;
  }
  send_error(res, e, std::move(headers));
}

void handle_completion(front_end& fe, const http::request& rq, std::shared_ptr<http::response> res,
                       bool chat, const std::string& key) {
  json body = json::parse(rq.body, nullptr, false);
  if (body.is_discarded()) {
    return reject(fe, *res, {400, "the request body is not valid JSON", "invalid_request_error",
                             "", ""}, "invalid_request");
  }
  auto parsed = api::parse_request(body, chat);
  if (auto* e = std::get_if<api::api_error>(&parsed)) {
    return reject(fe, *res, *e, "invalid_request");
  }
  auto st = std::make_shared<request_state>();
  st->fe = &fe;
  st->req = std::move(std::get<api::completion_request>(parsed));
  auto& r = st->req;
  if (!r.model.empty() && r.model != fe.model_name) {
    return reject(fe, *res, {404, "The model '" + r.model + "' does not exist (this server serves '" +
                                      fe.model_name + "')", "invalid_request_error", "model",
                             "model_not_found"}, "model_not_found");
  }
  std::vector<int32_t> prompt;
  if (chat) {
    auto t = apply_chat_template(fe.tok->chat_template(), r.messages, true);
    if (!t) {
      return reject(fe, *res, {400, t.err().message, "invalid_request_error", "messages", ""},
                    "invalid_request");
    }
    prompt = fe.tok->encode(*t, true, true);
  } else if (!r.prompt_tokens.empty()) {
    const int64_t n_vocab = fe.m->config().n_vocab;
    for (int32_t t : r.prompt_tokens) {
      if (t < 0 || t >= n_vocab) {
        return reject(fe, *res, {400, "prompt token id " + std::to_string(t) +
                                          " is outside the vocabulary (0.." +
                                          std::to_string(n_vocab - 1) + ")",
                                 "invalid_request_error", "prompt", ""}, "invalid_request");
      }
    }
    prompt = r.prompt_tokens;
  } else {
    prompt = fe.tok->encode(r.prompt, true, true);
  }
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  if (r.max_tokens < 0) {
    r.max_tokens = static_cast<int32_t>(std::max<int64_t>(1, fe.n_ctx - n_prompt));
  }
  if (n_prompt + r.max_tokens > fe.n_ctx) {
    return reject(fe, *res,
                  {400, "This model's maximum context length is " + std::to_string(fe.n_ctx) +
                            " tokens. However, you requested " +
                            std::to_string(n_prompt + r.max_tokens) + " tokens (" +
                            std::to_string(n_prompt) + " in the " + (chat ? "messages" : "prompt") +
                            ", " + std::to_string(r.max_tokens) +
                            " in the completion). Please reduce the length of the " +
                            (chat ? "messages" : "prompt") + " or completion.",
                   "invalid_request_error", chat ? "messages" : "prompt",
                   "context_length_exceeded"},
                  "context_length");
  }
  gen_request g;
  st->id = fe.next_id++;
  g.id = st->id;
  g.key = key.empty() ? r.user : key;
  g.prompt = std::move(prompt);
  g.max_tokens = r.max_tokens;
  g.sampling = r.sampling;
  g.stop = r.stop;
  g.ignore_eos = r.ignore_eos;
  st->object_id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(st->id);
  st->res = res;
  admission decision;
  st->stream = fe.srv->submit(std::move(g), &decision);
  if (decision.decision != "ok") {
    if (decision.reason == "queue full" || decision.reason.rfind("key quota", 0) == 0) {
      return reject(fe, *res, {429, "the server is busy: " + decision.reason + "; retry later",
                               "rate_limit_exceeded", "", "rate_limit_exceeded"},
                    decision.reason == "queue full" ? "queue_full" : "key_quota",
                    {{"Retry-After", std::to_string(std::max(1, decision.retry_after_s))}});
    }
    if (decision.reason.find("is down") != std::string::npos) {
      return reject(fe, *res, {503, decision.reason, "server_error", "", ""}, "unavailable");
    }
    return reject(fe, *res, {400, decision.reason, "invalid_request_error", "", ""},
                  "invalid_request");
  }
  {
    std::lock_guard<std::mutex> ml(fe.metrics.mu);
    fe.metrics.requests += 1;
  }
  if (r.stream) {
    res->start_stream(200, "text/event-stream");
    if (chat) {
      res->chunk("data: " + dump(chunk_json(*st, "", nullptr, nullptr, true)) + "\n\n");
    }
  }
  {
    std::lock_guard<std::mutex> al(fe.active_mu);
    fe.active.insert(st->id);
  }
  local_server* srv = fe.srv;
  const uint64_t id = st->id;
  res->on_close([srv, id] { srv->cancel(id); });  // a client that goes away frees its blocks
  st->stream->on_push([st] { drain(st); });  // drain() lets go of it at the end
}

std::string metrics_text(front_end& fe) {
  const router_stats s = fe.srv->stats();
  std::string out;
  auto gauge = [&](const std::string& name, const std::string& help, double v,
                   const std::string& type = "gauge") {
    out += "# HELP baton:" + name + " " + help + "\n# TYPE baton:" + name + " " + type + "\n";
    out += "baton:" + name + " " + json(v).dump() + "\n";
  };
  gauge("num_requests_running", "Requests in the running batch.", s.running);
  gauge("num_requests_waiting", "Requests waiting for a slot or KV blocks.", s.waiting);
  gauge("kv_cache_usage_perc", "Share of KV blocks in use (1 = full).",
        s.total_blocks ? 1.0 - static_cast<double>(s.free_blocks) / s.total_blocks : 0.0);
  gauge("kv_cache_blocks_total", "KV blocks in the pool.", s.total_blocks);
  gauge("kv_cache_blocks_free", "KV blocks free (cached ones count as free).", s.free_blocks);
  gauge("prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.",
        static_cast<double>(s.cached_prompt_tokens), "counter");
  gauge("num_preemptions_total", "Sequences preempted for lack of KV blocks.",
        static_cast<double>(s.preemptions), "counter");
  gauge("prompt_tokens_total", "Prompt tokens computed.", static_cast<double>(s.prompt_tokens),
        "counter");
  gauge("generation_tokens_total", "Tokens generated.", static_cast<double>(s.generated_tokens),
        "counter");
  gauge("steps_total", "Pipeline steps run.", static_cast<double>(s.steps), "counter");
  gauge("stage_down", "1 when a pipeline stage is down.", s.down.empty() ? 0 : 1);
  {
    std::lock_guard<std::mutex> ml(fe.metrics.mu);
    gauge("requests_total", "Requests admitted.", static_cast<double>(fe.metrics.requests),
          "counter");
    out += "# HELP baton:request_rejected_total Requests refused, by reason.\n"
           "# TYPE baton:request_rejected_total counter\n";
    for (const char* r : {"invalid_request", "context_length", "model_not_found", "unauthorized",
                          "queue_full", "key_quota", "unavailable", "body_too_large"}) {
      auto it = fe.metrics.rejected.find(r);
      out += std::string("baton:request_rejected_total{reason=\"") + r + "\"} " +
             std::to_string(it == fe.metrics.rejected.end() ? 0 : it->second) + "\n";
    }
    out += "# HELP baton:request_finished_total Requests ended, by finish reason.\n"
           "# TYPE baton:request_finished_total counter\n";
    for (const auto& [r, n] : fe.metrics.finished) {
      out += "baton:request_finished_total{finished_reason=\"" + r + "\"} " + std::to_string(n) +
             "\n";
    }
    fe.metrics.ttft.write(out, "baton:time_to_first_token_seconds", "Time to first token.");
    fe.metrics.itl.write(out, "baton:inter_token_latency_seconds", "Time between two tokens.");
    fe.metrics.e2e.write(out, "baton:e2e_request_latency_seconds", "Request latency.");
  }
  out += "# HELP baton:stage_step_seconds Mean time of a stage's last steps (up to 256).\n"
         "# TYPE baton:stage_step_seconds gauge\n";
  for (int32_t stage = 0; stage < fe.srv->options().n_stages; ++stage) {
    if (fe.srv->options().stages[static_cast<size_t>(stage)].rank == s.down_rank) {
      continue;  // a dead rank's shard answers nothing
    }
    const auto t = fe.srv->timings(stage);
    double sum = 0;
    size_t n = 0;
    for (size_t i = t.size() > 256 ? t.size() - 256 : 0; i < t.size(); ++i, ++n) {
      sum += static_cast<double>(t[i].end_us - t[i].begin_us) * 1e-6;
    }
    out += "baton:stage_step_seconds{stage=\"" + std::to_string(stage) + "\"} " +
           json(n ? sum / static_cast<double>(n) : 0.0).dump() + "\n";
  }
  return out;
}

void handle(front_end& fe, const http::request& rq, std::shared_ptr<http::response> res) {
  // the key is checked before anything else is done
  std::string key;
  if (!fe.keys.empty()) {
    const std::string prefix = "Bearer ";
    if (rq.authorization.rfind(prefix, 0) == 0) {
      key = rq.authorization.substr(prefix.size());
    }
    const bool open_path = rq.target == "/health" || rq.target == "/metrics";
    if (!open_path && !fe.keys.count(key)) {
      return reject(fe, *res, {401, key.empty() ? "Missing API key (Authorization: Bearer ...)"
                                                : "Incorrect API key provided",
                               "invalid_request_error", "", "invalid_api_key"},
                    "unauthorized");
    }
  }
  if (rq.target == "/health" && rq.method == "GET") {
    const auto s = fe.srv->stats();
    if (!s.down.empty()) {
      return send_json(*res, 503, {{"status", "unavailable"}, {"error", s.down}});
    }
    return send_json(*res, 200, {{"status", "ok"}});
  }
  if (rq.target == "/metrics" && rq.method == "GET") {
    return res->send(200, "text/plain; version=0.0.4", metrics_text(fe));
  }
  if (rq.target == "/v1/models" && rq.method == "GET") {
    return send_json(*res, 200,
                     {{"object", "list"},
                      {"data", json::array({{{"id", fe.model_name},
                                             {"object", "model"},
                                             {"created", fe.created},
                                             {"owned_by", "baton"},
                                             {"max_model_len", fe.n_ctx}}})}});
  }
  const bool chat = rq.target == "/v1/chat/completions";
  if (chat || rq.target == "/v1/completions") {
    if (rq.method != "POST") {
      return send_error(*res, {405, "use POST on " + rq.target, "invalid_request_error", "", ""});
    }
    if (fe.stopping) {
      return reject(fe, *res, {503, "the server is shutting down", "server_error", "", ""},
                    "unavailable");
    }
    const auto s = fe.srv->stats();
    if (!s.down.empty()) {
      return reject(fe, *res, {503, s.down, "server_error", "", ""}, "unavailable");
    }
    return handle_completion(fe, rq, std::move(res), chat, key);
  }
  send_error(*res, {404, "no route " + rq.method + " " + rq.target, "invalid_request_error", "",
                    "not_found"});
}

int run_serve(serve_options o) {
  if (o.port < 0 || o.port > 65535) {
    return fail("--port " + std::to_string(o.port) + ": expected 0..65535 (0: any free port)");
  }
  if (o.max_num_seqs < 1 || o.max_queue < 0 || o.block_size < 1 || o.max_num_batched_tokens < 1) {
    return fail("--max-num-seqs, --max-num-batched-tokens and --block-size must be >= 1, "
                "--max-queue >= 0");
  }
  auto mpi = mpi_session::init();
  if (!mpi) {
    return fail(mpi.err().message);
  }
  const bool head = (*mpi)->rank() == 0;
  auto topo = read_topology(**mpi, o.engine);
  if (!topo) {
    return fail_agreed(**mpi, topo.err().message);
  }
  if (!head) {
    o.engine.quiet = true;
  }
  front_end fe;
  fe.o = o;
  if (!o.api_key_file.empty()) {
    std::ifstream in(o.api_key_file);
    if (!in) {
      return fail("--api-key-file " + o.api_key_file + ": cannot read it");
    }
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) {
        fe.keys.insert(line);
      }
    }
  }
  for (const auto& k : o.api_keys) {
    fe.keys.insert(k);
  }
  auto l = load(o.engine, o.max_num_seqs, false);
  if (auto ok = (*mpi)->agree(l ? result<void>() : result<void>(l.err())); !ok) {
    return fail_agreed(**mpi, ok.err().message);
  }
  server_options so;
  so.n_stages = o.engine.stages;
  so.n_threads = l->n_threads;
  so.n_ctx = l->opts.n_ctx;
  so.n_blocks = l->n_blocks;
  so.kv_type = l->opts.kv_type;
  so.kernels = l->opts.kernels;
  so.max_num_seqs = o.max_num_seqs;
  so.max_num_batched_tokens = o.max_num_batched_tokens;
  so.max_queue = o.max_queue;
  so.block_size = o.block_size;
  so.enable_prefix_caching = o.enable_prefix_caching;
  auto job = pipeline_job::start(**mpi, o.engine, *l, so, *topo);
  if (!job) {
    return fail_agreed(**mpi, job.err().message);
  }
  if (!(*job)->head()) {
    (*job)->serve_until_shutdown();
    return exit_ok;
  }
  fe.m = l->m;
  fe.tok = l->tok;
  fe.srv = &(*job)->server();
  fe.n_ctx = fe.srv->options().n_ctx;
  fe.created = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  if (!o.served_model_name.empty()) {
    fe.model_name = o.served_model_name;
  } else {
    fe.model_name = std::filesystem::path(l->m->file().path()).filename().string();
  }
  auto http_server = http::server::create(
      o.host, static_cast<uint16_t>(o.port),
      [&fe](http::request rq, std::shared_ptr<http::response> res) {
        handle(fe, rq, std::move(res));
      },
      o.max_body_bytes);
  if (!http_server) {
    return fail(http_server.err().message);
  }
  http::server* hs = http_server->get();
  // SIGINT/SIGTERM: refuse new requests, end the running ones with a final event (an
  // error chunk and [DONE], or a 503), give the answers up to 3 s to leave, then stop
  on_stop_signal([hs, &fe] {
    fe.stopping = true;
    std::set<uint64_t> ids;
    {
      std::lock_guard<std::mutex> al(fe.active_mu);
      ids = fe.active;
    }
    for (uint64_t id : ids) {
      fe.srv->cancel(id);
    }
    for (int i = 0; i < 60; ++i) {
      {
        std::lock_guard<std::mutex> al(fe.active_mu);
        if (fe.active.empty()) {
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the last bytes leave
    hs->stop();
  });
  std::fprintf(stderr, "baton: serving %s on http://%s:%u (%d stage(s), %d rank(s)%s)\n",
               fe.model_name.c_str(), o.host.c_str(), hs->port(), fe.srv->options().n_stages,
               (*mpi)->size(), fe.keys.empty() ? "" : ", API keys required");
  hs->run();
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
  cmd->add_option("--api-key", o->api_keys, "Required Bearer key (repeatable)");
  cmd->add_option("--api-key-file", o->api_key_file, "File of keys, one per line");
  cmd->add_option("--served-model-name", o->served_model_name,
                  "Model name in the API (default: the model file's name)");
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Sequences in the running batch")
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Tokens per step")
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue, "Requests waiting beyond max-num-seqs (then 429)")
      ->capture_default_str();
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block")->capture_default_str();
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", o->enable_prefix_caching,
                "Reuse KV blocks of shared prompt prefixes (on by default)");
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 beyond)")
      ->capture_default_str();
  cmd->callback([o, &status] { status = run_serve(*o); });
}

}  // namespace baton::cli
