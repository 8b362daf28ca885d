// The /metrics text (Prometheus exposition format, vLLM's metric names under "baton:"):
// the pipeline's counters from the backend's snapshot, the HTTP server's connection
// counters and the front end's own histograms and refusal counts.
#include "launch/serve/front_metrics.hpp"

namespace baton::api {

using nlohmann::json;

std::string metrics_text(const serving_snapshot& snap, const http::server_counters& hc,
                         front_metrics& metrics) {
  const router_stats& s = snap.stats;
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
  gauge("recomputed_tokens_total", "Tokens computed again because a preemption dropped their KV.",
        static_cast<double>(s.recomputed_tokens), "counter");
  gauge("prompt_tokens_total", "Prompt tokens computed.", static_cast<double>(s.prompt_tokens),
        "counter");
  gauge("generation_tokens_total", "Tokens generated.", static_cast<double>(s.generated_tokens),
        "counter");
  gauge("steps_total", "Pipeline steps run.", static_cast<double>(s.steps), "counter");
  gauge("stage_down", "1 when a pipeline stage is down and not being replaced.",
        can_serve(s.state) ? 0 : 1);
  gauge("recovering", "1 while a lost stage is being replaced (requests wait).",
        s.state == pipeline_state::recovering ? 1 : 0);
  gauge("pipeline_epoch", "Pipelines switched to by live reshards and recoveries.",
        static_cast<double>(s.epoch));
  gauge("stage_failures_total", "Ranks holding a stage that died or hung (lost).",
        static_cast<double>(s.stage_failures), "counter");
  out += "# HELP baton:recoveries_total Lost stages replaced (ok) or not (failed: nothing "
         "fit).\n# TYPE baton:recoveries_total counter\n";
  out += "baton:recoveries_total{result=\"ok\"} " + json(s.recoveries_ok).dump() + "\n";
  out += "baton:recoveries_total{result=\"failed\"} " + json(s.recoveries_failed).dump() + "\n";
  gauge("recovery_seconds",
        "The last recovery: the loss seen to every replayed request's next token.",
        s.last_recovery_seconds);
  gauge("requests_replayed_total", "Requests recomputed on a new pipeline after a loss.",
        static_cast<double>(s.requests_replayed), "counter");
  out += "# HELP baton:reshards_total Live reshards, by result.\n# TYPE baton:reshards_total "
         "counter\n";
  out += "baton:reshards_total{result=\"ok\"} " + json(snap.reshards_ok).dump() + "\n";
  out += "baton:reshards_total{result=\"refused\"} " + json(snap.reshards_refused).dump() +
         "\n";
  gauge("reshard_pause_seconds", "The last reshard's pause (no step ran).",
        snap.last_reshard_pause_seconds);
  gauge("reshard_kv_bytes_moved_total", "KV bytes moved between stages by reshards.",
        static_cast<double>(snap.reshard_kv_bytes_moved), "counter");
  gauge("http_connections_open", "Client connections open.",
        static_cast<double>(hc.connections_open));
  gauge("http_connections_evicted_total",
        "Idle or half-sent connections closed to make room for new ones.",
        static_cast<double>(hc.evicted), "counter");
  gauge("http_connections_timed_out_total",
        "Connections closed by the keep-alive, header, body or send timeout.",
        static_cast<double>(hc.timed_out), "counter");
  gauge("http_connections_dropped_total",
        "Connections dropped for not reading their answer or pushing too much input.",
        static_cast<double>(hc.dropped_slow), "counter");
  {
    std::lock_guard<std::mutex> ml(metrics.mu);
    gauge("requests_total", "Requests admitted.", static_cast<double>(metrics.requests),
          "counter");
    out += "# HELP baton:request_rejected_total Requests refused, by reason.\n"
           "# TYPE baton:request_rejected_total counter\n";
    for (auto r : {reject_reason::invalid_request, reject_reason::context_length,
                   reject_reason::model_not_found, reject_reason::unauthorized,
                   reject_reason::queue_full, reject_reason::key_quota,
                   reject_reason::unavailable, reject_reason::body_too_large,
                   reject_reason::header_too_large, reject_reason::internal_error}) {
      auto it = metrics.rejected.find(r);
      uint64_t n = it == metrics.rejected.end() ? 0 : it->second;
      if (r == reject_reason::body_too_large) {
        n += hc.body_too_large;  // the server answered those before any handler ran
      } else if (r == reject_reason::header_too_large) {
        n += hc.header_too_large;
      } else if (r == reject_reason::invalid_request) {
        n += hc.bad_request;
      } else if (r == reject_reason::internal_error) {
        n += hc.handler_errors;
      }
      out += std::string("baton:request_rejected_total{reason=\"") + label(r) + "\"} " +
             std::to_string(n) + "\n";
    }
    out += "# HELP baton:request_finished_total Requests ended, by finish reason "
           "(each of a request's n choices counts).\n"
           "# TYPE baton:request_finished_total counter\n";
    for (const auto& [r, n] : metrics.finished) {
      out += "baton:request_finished_total{finished_reason=\"" + r + "\"} " + std::to_string(n) +
             "\n";
    }
    metrics.ttft.write(out, "baton:time_to_first_token_seconds", "Time to first token.");
    metrics.itl.write(out, "baton:inter_token_latency_seconds", "Time between two tokens.");
    metrics.e2e.write(out, "baton:e2e_request_latency_seconds", "Request latency.");
  }
  out += "# HELP baton:stage_step_seconds Mean time of a stage's last steps (up to 256).\n"
         "# TYPE baton:stage_step_seconds gauge\n";
  for (size_t stage = 0; stage < snap.stage_step_seconds.size(); ++stage) {
    out += "baton:stage_step_seconds{stage=\"" + std::to_string(stage) + "\"} " +
           json(snap.stage_step_seconds[stage]).dump() + "\n";
  }
  return out;
}

}  // namespace baton::api
