// simulate.hpp.
#include "launch/cli/simulate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "runtime/serving/step_pump.hpp"
#include "topology/planner.hpp"
#include "topology/topology_file.hpp"

namespace baton::cli {

sim_stage sim_stage_of(const model& m, int64_t first, int64_t last, ggml_type kv_type,
                       const device_profile& device) {
  const model_config& c = m.config();
  sim_stage st;
  st.device = device;
  uint64_t layers = 0;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const uint64_t b = layer_weight_bytes(m, il);
    layers += b;
    if (il >= first && il < last) {
      st.weight_bytes += b;
    }
  }
  const auto embd = static_cast<double>(c.n_embd);
  const double per_layer = embd * (embd + 2.0 * static_cast<double>(c.n_embd_k_gqa()) + embd) +
                           3.0 * embd * static_cast<double>(c.n_ff);
  st.n_layers = last - first;
  st.flops_per_token = 2.0 * per_layer * static_cast<double>(last - first);
  st.kv_bytes_per_position = static_cast<double>(c.kv_bytes_per_token(kv_type, first, last));
  if (last == c.n_layer) {
    // the head streams its matrix (the embedding when tied) and does 2 x vocab x embd a row
    const uint64_t rest = m.weight_bytes() - layers;
    st.weight_bytes += c.tied_output ? rest : rest / 2;
    st.head_flops_per_row = 2.0 * static_cast<double>(c.n_vocab) * embd;
  }
  return st;
}

sim_placement placement_from_profile(const pipeline_plan& plan, const profile_file& p) {
  sim_placement w;
  const auto& st = plan.resolved.stages;
  for (size_t k = 0; k < st.size(); ++k) {
    w.devices.push_back(p.device);
    w.control.push_back(st[k].rank == 0 ? sim_link{} : p.control);
    if (k + 1 < st.size()) {
      w.hops.push_back(st[k].rank == st[k + 1].rank ? sim_link{} : p.link);
    }
  }
  w.router_s = p.router_s;
  w.router_row_s = p.router_row_s;
  w.links = std::string("links ") +
            (p.has_link ? "from the profile" : "free (no 'link' in the profile)") +
            "; control " +
            (p.has_control ? "from the profile" : "free (no 'control' in the profile)");
  return w;
}

sim_placement placement_on_cluster(const pipeline_plan& plan, const cluster& c,
                                   const profile_file& fallback) {
  sim_placement w;
  w.router_s = fallback.router_s;
  w.router_row_s = fallback.router_row_s;
  const auto& st = plan.resolved.stages;
  for (size_t k = 0; k < st.size(); ++k) {
    w.devices.push_back(c.profile_of(st[k].rank, st[k].device, fallback.device));
    w.control.push_back(c.control(st[k].rank));
    if (k + 1 < st.size()) {
      w.hops.push_back(c.link(st[k].rank, st[k + 1].rank));
    }
  }
  w.links = "links and control from " + c.path;
  return w;
}

namespace {

sim_setup setup_for(const pipeline_plan& plan, const model& m, const sim_placement& where) {
  sim_setup s;
  // the live job's settings: the file's [pipeline], the planned pool, the defaults the
  // local_server resolves (resolve_serving); a plan is already checked against them
  serving_config sv = with_pipeline_keys(serving_config{}, plan.resolved.pipeline);
  sv.n_blocks = pipeline_kv_blocks(plan, 0);
  auto resolved = resolve_serving(sv, static_cast<int64_t>(plan.stages.size()),
                                  m.config().n_ctx_train);
  s.sched = resolved ? *resolved : sv;
  for (size_t k = 0; k < plan.stages.size(); ++k) {
    const stage_plan& sp = plan.stages[k];
    s.stages.push_back(
        sim_stage_of(m, sp.layers.first, sp.layers.last, s.sched.kv_type, where.devices[k]));
  }
  s.hops = where.hops;
  s.control_to = where.control;
  s.n_embd = m.config().n_embd;
  s.router_s = where.router_s;
  s.router_row_s = where.router_row_s;
  return s;
}

sim_report run_workload(sim_setup s, int32_t streams, const sim_request& req) {
  if (req.n_blocks > 0) {
    s.sched.n_blocks = req.n_blocks;
  }
  s.work.streams = streams;
  s.work.requests_per_stream = 1;
  s.work.prompt_tokens = req.prompt;
  s.work.gen_tokens = req.gen;
  return simulate(s);
}

nlohmann::json report_json(int32_t streams, const sim_report& r) {
  std::vector<double> idle;
  for (double b : r.stage_busy) {
    idle.push_back(1.0 - b);
  }
  return {{"streams", streams},
          {"output_tokens_per_s", r.output_tokens_per_s},
          {"decode_tokens_per_s", r.decode_tokens_per_s},
          {"total_tokens_per_s", r.total_tokens_per_s},
          {"ttft_mean_s", r.ttft_s.mean},
          {"ttft_p50_s", r.ttft_s.p50},
          {"ttft_p99_s", r.ttft_s.p99},
          {"tpot_mean_s", r.tpot_s.mean},
          {"tpot_p50_s", r.tpot_s.p50},
          {"tpot_p99_s", r.tpot_s.p99},
          {"stage_busy", r.stage_busy},
          {"stage_idle", idle},
          {"hop_busy", r.hop_busy},
          {"kv_usage_mean", r.kv_usage_mean},
          {"preemptions", r.preemptions},
          {"steps", r.steps},
          {"seconds", r.seconds}};
}

/// "62% 60% 58% 61%", or the range when there are many stages: "58-62% (8 stages)".
std::string busy_text(const std::vector<double>& busy) {
  if (busy.size() > 8) {
    const auto [lo, hi] = std::minmax_element(busy.begin(), busy.end());
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f-%.0f%% (%zu stages)", *lo * 100, *hi * 100, busy.size());
    return buf;
  }
  std::string out;
  for (double b : busy) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%.0f%%", out.empty() ? "" : " ", b * 100);
    out += buf;
  }
  return out;
}

void print_header() {
  std::printf("%8s %12s %12s %10s %10s %10s %10s %8s %8s  %s\n", "streams", "output tok/s",
              "decode tok/s", "TTFT mean", "TTFT p99", "TPOT mean", "TPOT p99", "KV use",
              "preempt", "stage busy");
}

void print_row(int32_t n, const sim_report& r) {
  std::printf("%8d %12.1f %12.1f %9.1fms %9.1fms %9.2fms %9.2fms %7.0f%% %8llu  %s\n", n,
              r.output_tokens_per_s, r.decode_tokens_per_s, r.ttft_s.mean * 1e3,
              r.ttft_s.p99 * 1e3, r.tpot_s.mean * 1e3, r.tpot_s.p99 * 1e3, r.kv_usage_mean * 100,
              static_cast<unsigned long long>(r.preemptions), busy_text(r.stage_busy).c_str());
}

/// "cpu (calibrated)", "h100-sxm (estimate)", or both kinds when stages differ.
std::string devices_text(const sim_placement& w) {
  std::set<std::string> names;
  for (const auto& d : w.devices) {
    names.insert(d.name + (d.estimate ? " (estimate)" : " (calibrated)"));
  }
  std::string out;
  for (const auto& n : names) {
    out += (out.empty() ? "" : ", ") + n;
  }
  return out;
}

/// "0-15 16-31" for a plan's layers.
std::string split_text(const pipeline_plan& plan) {
  std::string out;
  for (const auto& sp : plan.stages) {
    out += (out.empty() ? "" : " ") + sp.layers.to_string();
  }
  return out;
}

}  // namespace

int print_simulation(const pipeline_plan& plan, const model& m, const sim_placement& where,
                     const sim_request& req) {
  sim_setup base = setup_for(plan, m, where);
  if (req.n_blocks > 0) {
    base.sched.n_blocks = req.n_blocks;
  }
  if (!req.json) {
    std::printf("simulated: %zu stages (%s), %d micro-batches, %d KV blocks, %d-token prompts, "
                "%d generated; device %s; %s\n",
                plan.stages.size(), split_text(plan).c_str(), base.sched.micro_batches,
                base.sched.n_blocks, req.prompt, req.gen, devices_text(where).c_str(),
                where.links.c_str());
    print_header();
  }
  nlohmann::json all = nlohmann::json::array();
  for (const int32_t n : req.streams) {
    const sim_report r = run_workload(base, n, req);
    if (req.json) {
      all.push_back(report_json(n, r));
    } else {
      print_row(n, r);
    }
  }
  if (req.json) {
    bool estimate = false;
    for (const auto& d : where.devices) {
      estimate = estimate || d.estimate;
    }
    std::printf("%s\n", nlohmann::json{{"simulated", all},
                                       {"device", devices_text(where)},
                                       {"estimate", estimate},
                                       {"layers", split_text(plan)},
                                       {"micro_batches", base.sched.micro_batches},
                                       {"n_blocks", base.sched.n_blocks}}
                             .dump(2)
                             .c_str());
  }
  return exit_ok;
}

namespace {

/// A candidate of the search: explicit layer boundaries and a micro-batch count.
struct candidate {
  std::vector<int64_t> firsts;  ///< each stage's first layer
  int32_t micro_batches = 0;
  bool operator<(const candidate& o) const {
    return std::tie(firsts, micro_batches) < std::tie(o.firsts, o.micro_batches);
  }
};

struct scored {
  candidate c;
  pipeline_plan plan;
  sim_placement where;
  double score = 0;  ///< output tokens/s at the largest stream count
};

topology with_candidate(const topology& given, const candidate& c, int64_t n_layer) {
  topology t = given;
  t.even_split = false;
  t.pipeline.micro_batches = c.micro_batches;
  for (size_t k = 0; k < t.stages.size(); ++k) {
    t.stages[k].layers.automatic = false;
    t.stages[k].layers.first = c.firsts[k];
    t.stages[k].layers.last = k + 1 < c.firsts.size() ? c.firsts[k + 1] : n_layer;
  }
  return t;
}

}  // namespace

int print_search(const topology& given, const model& m, const replan_fn& replan,
                 const sim_request& req, int top) {
  const int64_t n_layer = m.config().n_layer;
  const auto n_stages = static_cast<int64_t>(given.stages.size());
  const int32_t workload = *std::max_element(req.streams.begin(), req.streams.end());
  const auto t0 = std::chrono::steady_clock::now();
  std::map<candidate, double> seen;
  std::vector<scored> fits;
  size_t refused = 0;
  std::string first_refusal;
  // re-plans and simulates `c` once; its score, or nothing when it does not fit
  auto evaluate = [&](const candidate& c) -> std::optional<double> {
    if (auto it = seen.find(c); it != seen.end()) {
      return it->second < 0 ? std::nullopt : std::optional<double>(it->second);
    }
    auto placed = replan(with_candidate(given, c, n_layer));
    if (!placed) {
      seen[c] = -1;
      ++refused;
      if (first_refusal.empty()) {
        first_refusal = placed.err().message;
      }
      return std::nullopt;
    }
    const sim_report r = run_workload(setup_for(placed->first, m, placed->second), workload, req);
    seen[c] = r.output_tokens_per_s;
    fits.push_back(scored{c, std::move(placed->first), std::move(placed->second),
                          r.output_tokens_per_s});
    return r.output_tokens_per_s;
  };
  // micro-batch counts: 1, every stage one, one more, two per stage (and the file's)
  std::set<int32_t> micro = {1, static_cast<int32_t>(n_stages), static_cast<int32_t>(n_stages + 1),
                             static_cast<int32_t>(2 * n_stages)};
  if (given.pipeline.micro_batches > 0) {
    micro.insert(given.pipeline.micro_batches);
  }
  std::vector<std::vector<int64_t>> starts;
  // the given file's split ("auto" stages as the planner balances them)
  if (auto placed = replan(given)) {
    std::vector<int64_t> f;
    for (const auto& sp : placed->first.stages) {
      f.push_back(sp.layers.first);
    }
    starts.push_back(f);
  }
  {
    std::vector<int64_t> even;
    for (int64_t k = 0; k < n_stages; ++k) {
      even.push_back(k * n_layer / n_stages);
    }
    starts.push_back(even);
  }
  for (const auto& f : starts) {
    for (int32_t mb : micro) {
      evaluate(candidate{f, mb});
    }
  }
  // what the search is measured against: layers split evenly, the default micro-batches
  // (vLLM's split and baton's default)
  const candidate even_default{starts.back(), default_micro_batches(n_stages)};
  const std::optional<double> even_score = evaluate(even_default);
  if (fits.empty()) {
    return fail("--search: no split fits" +
                (first_refusal.empty() ? std::string() : ": " + first_refusal));
  }
  // hill climb from the best: move one layer over one boundary while that helps
  auto best_of = [&] {
    return std::max_element(fits.begin(), fits.end(),
                            [](const scored& a, const scored& b) { return a.score < b.score; });
  };
  for (int round = 0; round < 16 && n_stages > 1; ++round) {
    const candidate from = best_of()->c;
    const double before = best_of()->score;
    for (int64_t b = 1; b < n_stages; ++b) {
      for (int64_t d : {-1, 1}) {
        candidate c = from;
        c.firsts[static_cast<size_t>(b)] += d;
        const int64_t lo = c.firsts[static_cast<size_t>(b - 1)];
        const int64_t hi = b + 1 < n_stages ? c.firsts[static_cast<size_t>(b + 1)] : n_layer;
        if (c.firsts[static_cast<size_t>(b)] <= lo || c.firsts[static_cast<size_t>(b)] >= hi) {
          continue;
        }
        evaluate(c);
      }
    }
    if (best_of()->score <= before * 1.001) {
      break;
    }
  }
  // how much of the gain is the split's: the even split at the best one's micro-batches
  // (a candidate too: it may itself be the best)
  const std::optional<double> even_same_micro =
      evaluate(candidate{even_default.firsts, best_of()->c.micro_batches});
  std::sort(fits.begin(), fits.end(),
            [](const scored& a, const scored& b) { return a.score > b.score; });
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json all = nlohmann::json::array();
  if (!req.json) {
    std::printf("search: %zu candidates fit, %zu refused by the planner, %.1f s; ranked by "
                "output tokens/s at %d streams\n",
                fits.size(), refused, took, workload);
    if (even_score) {
      std::printf("even split, %d micro-batches: %.1f output tokens/s; the best below: %.2fx",
                  even_default.micro_batches, *even_score, fits.front().score / *even_score);
      if (even_same_micro) {
        std::printf("; the even split with %d micro-batches: %.1f (the split alone: %.2fx)",
                    fits.front().c.micro_batches, *even_same_micro,
                    fits.front().score / *even_same_micro);
      }
      std::printf("\n");
    } else {
      std::printf("even split, %d micro-batches: does not fit\n", even_default.micro_batches);
    }
  }
  for (size_t i = 0; i < fits.size() && static_cast<int>(i) < top; ++i) {
    const scored& s = fits[i];
    const sim_setup base = setup_for(s.plan, m, s.where);
    nlohmann::json rows = nlohmann::json::array();
    if (!req.json) {
      std::printf("\n#%zu: layers %s, %d micro-batches, %d KV blocks\n", i + 1,
                  split_text(s.plan).c_str(), base.sched.micro_batches, base.sched.n_blocks);
      print_header();
    }
    for (const int32_t n : req.streams) {
      const sim_report r = run_workload(base, n, req);
      if (req.json) {
        rows.push_back(report_json(n, r));
      } else {
        print_row(n, r);
      }
    }
    if (req.json) {
      all.push_back({{"rank", i + 1},
                     {"layers", split_text(s.plan)},
                     {"micro_batches", base.sched.micro_batches},
                     {"n_blocks", base.sched.n_blocks},
                     {"simulated", rows}});
    }
  }
  if (req.json) {
    std::printf("%s\n", nlohmann::json{{"search", all},
                                       {"candidates", fits.size()},
                                       {"even_split_output_tokens_per_s",
                                        even_score ? nlohmann::json(*even_score) : nlohmann::json()},
                                       {"even_split_same_micro_batches_output_tokens_per_s",
                                        even_same_micro ? nlohmann::json(*even_same_micro)
                                                        : nlohmann::json()},
                                       {"refused", refused},
                                       {"ranked_at_streams", workload}}
                             .dump(2)
                             .c_str());
  }
  return exit_ok;
}

}  // namespace baton::cli
