// What the OpenAI front end counts itself, beside the router's counters: latency
// histograms (Prometheus, fixed buckets), requests refused by reason (status_table.hpp
// names them), requests ended by finish reason; and `metrics_text`, which writes them
// with the pipeline's and the HTTP server's counters for /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "actors/local_server.hpp"
#include "launch/http/http_server.hpp"
#include "launch/serve/status_table.hpp"

namespace baton::api {

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
      out += name + "_bucket{le=\"" + nlohmann::json(bounds[i]).dump() + "\"} " + std::to_string(cum) + "\n";
    }
    cum += counts.back();
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
    out += name + "_sum " + nlohmann::json(sum).dump() + "\n" + name + "_count " + std::to_string(n) + "\n";
  }
};

/// What the front end counts itself (the router counts tokens, blocks and steps).
struct front_metrics {
  std::mutex mu;
  histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  histogram itl{{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5}};
  histogram e2e{{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  std::map<reject_reason, uint64_t> rejected;
  std::map<std::string, uint64_t> finished;      // by finish reason, one per choice
  uint64_t requests = 0;                         // admitted
};

/// The /metrics page: `snap`'s pipeline counters, the HTTP server's counters `hc`, and
/// the front end's own `metrics` (locked while read).
std::string metrics_text(const serving_snapshot& snap, const http::server_counters& hc,
                         front_metrics& metrics);

}  // namespace baton::api
