// What the OpenAI front end counts itself, beside the router's counters: latency
// histograms (Prometheus, fixed buckets), requests refused by reason, requests ended by
// finish reason. openai_server writes them out for /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

/// Why a request was refused, as /metrics labels it.
enum class reject_reason {
  invalid_request,
  context_length,
  model_not_found,
  unauthorized,
  queue_full,
  key_quota,
  unavailable,
  body_too_large,
  header_too_large,
  internal_error,
};

inline const char* label(reject_reason r) {
  switch (r) {
    case reject_reason::invalid_request: return "invalid_request";
    case reject_reason::context_length: return "context_length";
    case reject_reason::model_not_found: return "model_not_found";
    case reject_reason::unauthorized: return "unauthorized";
    case reject_reason::queue_full: return "queue_full";
    case reject_reason::key_quota: return "key_quota";
    case reject_reason::unavailable: return "unavailable";
    case reject_reason::body_too_large: return "body_too_large";
    case reject_reason::header_too_large: return "header_too_large";
    case reject_reason::internal_error: return "internal_error";
  }
  return "invalid_request";
}

/// What the front end counts itself (the router counts tokens, blocks and steps).
struct front_metrics {
  std::mutex mu;
  histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  histogram itl{{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5}};
  histogram e2e{{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  std::map<reject_reason, uint64_t> rejected;
  std::map<std::string, uint64_t> finished;      // by finish reason
  uint64_t requests = 0;                         // admitted
};

}  // namespace baton::api
