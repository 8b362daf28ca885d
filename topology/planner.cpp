// planner.hpp: a parsed topology checked against a model and an MPI world (ranks,
// devices, NCCL's one-rank-per-GPU rule, layer coverage), "auto" stages placed, and every
// stage's memory planned as vLLM sizes it (weights + buffers + KV within
// memory_utilization of the device, KV gets the rest; the numbers are memory_plan's).
// Over 500 lines because plan_pipeline is one sequence of checks (ranks, layers, devices,
// shares, auto runs, the plan) whose messages each point at a file:line; split, each
// part would need the same file, stage and budget state passed around.
//
// Auto placement. Explicit ranges must be in stage order without overlap; a run of
// "auto" stages shares the layers its explicit neighbours leave (all of them when every
// stage is auto), contiguously and in order, each at least one layer. Within a run the
// split minimizes the slowest stage's time, then the spread (sum of squares): decode is
// bandwidth-bound, so a stage's time is the bytes it reads per step — its layers, plus
// output_norm and the head on the pipeline's last stage (a full matmul). The embedding
// costs the first stage ~nothing (one row per token). Only splits whose every stage fits
// its budget (weights + buffers + one max_model_len sequence of KV) are considered, so a
// stage with a small budget hands layers to the others, as device_map="auto" does.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "runtime/system/budget.hpp"
#include "runtime/system/units.hpp"
#include "topology/planner.hpp"

namespace baton {

namespace {

/// "cluster.toml:7: ", "cluster.toml: " without a line, "" without a file.
std::string at(const std::string& file, int line) {
  if (file.empty()) {
    return "";
  }
  return line > 0 ? file + ":" + std::to_string(line) + ": " : file + ": ";
}

int line_or(int line, const stage_spec& s) {
  return line > 0 ? line : s.line;
}

std::string range_text(int64_t first, int64_t last) {
  std::string out = std::to_string(first);
  if (last - first != 1) {
    out.append("-").append(std::to_string(last - 1));
  }
  return out;
}

/// "layer 7" or "layers 7-9", with the verb that goes with it.
std::string layers_are(int64_t first, int64_t last) {
  std::string out(last - first == 1 ? "layer " : "layers ");
  out.append(range_text(first, last)).append(last - first == 1 ? " is" : " are");
  return out;
}

std::string quoted(const std::string& s) {
  std::string out("'");
  out.append(s).append("'");
  return out;
}

/// What one stage costs and needs, for layers [first, last) of the model.
struct stage_costs {
  const model& m;
  const pipeline_spec& p;
  int64_t n_stages = 0;
  std::vector<uint64_t> layer_bytes;  // [n_layer]
  uint64_t embd_bytes = 0;
  uint64_t head_bytes = 0;            // output_norm + head()
  uint64_t rope_bytes = 0;            // every stage ropes

  uint64_t layers(int64_t first, int64_t last) const {
    uint64_t n = 0;
    for (int64_t il = first; il < last; ++il) {
      n += layer_bytes[static_cast<size_t>(il)];
    }
    return n;
  }
  uint64_t weights(int64_t stage, int64_t first, int64_t last) const {
    return layers(first, last) + rope_bytes + (stage == 0 ? embd_bytes : 0) +
           (stage == n_stages - 1 ? head_bytes : 0);
  }
  /// Bytes read per decode step: the time it takes.
  uint64_t time(int64_t stage, int64_t first, int64_t last) const {
    return layers(first, last) + (stage == n_stages - 1 ? head_bytes : 0);
  }
  uint64_t kv_per_token(int64_t first, int64_t last) const {
    return m.config().kv_bytes_per_token(p.kv_type, first, last);
  }
  /// One sequence of max_model_len tokens, in whole blocks.
  uint64_t min_kv(int64_t first, int64_t last) const {
    const int64_t tokens = kv_blocks_for(p.max_model_len, p.block_size) * p.block_size;
    return kv_per_token(first, last) * static_cast<uint64_t>(tokens);
  }
};

uint64_t tensor_bytes(const tensor_info* t) {
  return t ? t->n_bytes : 0;
}

/// What a stage's device gives it.
struct stage_budget {
  device_info dev;
  double utilization = 0;           // resolved (explicit or the default share)
  std::optional<uint64_t> kv_explicit;
  uint64_t buffers = 0;
  uint64_t share = 0;               // floor(utilization x device memory)
  double speed = 1;                 // memory bandwidth relative to a CPU's
};

// Memory bandwidths assumed where a device does not report its own: a server CPU's
// DRAM, and a GPU's HBM/GDDR. Only their ratio matters: it makes "auto" fill GPUs before
// handing layers to a CPU stage, as device_map="auto" does, while CPU-only and GPU-only
// pipelines balance bytes exactly as before.
constexpr double k_cpu_bandwidth = 20e9;
constexpr double k_gpu_bandwidth = 1e12;

double relative_speed(const std::string& device, const device_info& d) {
  const double bw = d.bandwidth > 0 ? d.bandwidth
                                    : (device == "cpu" ? k_cpu_bandwidth : k_gpu_bandwidth);
  return bw / k_cpu_bandwidth;
}

/// " (physical RAM)": where a utilization budget's device memory came from.
std::string source_of(const stage_budget& b) {
  return b.kv_explicit ? std::string() : " (" + b.dev.source + ")";
}

/// Whether layers [first, last) fit stage `j`'s budget; the message says why not.
result<uint64_t> fit(const stage_costs& c, const stage_budget& b, int64_t j, int64_t first,
                     int64_t last) {
  return kv_budget_bytes(b.dev.memory_bytes, b.kv_explicit ? 1.0 : b.utilization,
                         c.weights(j, first, last), b.buffers, b.kv_explicit,
                         c.min_kv(first, last));
}

/// Splits layers [a, b) among stages j0..j0+k-1 (k <= b - a), minimizing the slowest
/// stage, then the sum of squares; with `check_fit`, only splits that fit every budget.
/// Returns the k + 1 boundaries, or nothing when no split fits.
std::optional<std::vector<int64_t>> balance(const stage_costs& c,
                                            const std::vector<stage_budget>& budgets, int64_t j0,
                                            int64_t k, int64_t a, int64_t b, bool check_fit) {
  struct score {
    uint64_t worst = std::numeric_limits<uint64_t>::max();
    double spread = 0;
    bool operator<(const score& o) const {
      return worst != o.worst ? worst < o.worst : spread < o.spread;
    }
  };
  const int64_t n = b - a;
  // best[q][e]: stages j0..j0+q-1 over layers [a, a+e); from[q][e]: where stage q-1 starts
  std::vector<std::vector<score>> best(static_cast<size_t>(k + 1),
                                       std::vector<score>(static_cast<size_t>(n + 1)));
  std::vector<std::vector<int64_t>> from(static_cast<size_t>(k + 1),
                                         std::vector<int64_t>(static_cast<size_t>(n + 1), -1));
  best[0][0] = score{0, 0};
  constexpr uint64_t inf = std::numeric_limits<uint64_t>::max();
  for (int64_t q = 1; q <= k; ++q) {
    const int64_t j = j0 + q - 1;
    for (int64_t e = q; e <= n - (k - q); ++e) {
      // larger starts first: on a tie the earlier stages keep the extra layer, as
      // split_layers does
      for (int64_t s = e - 1; s >= q - 1; --s) {
        const score& prev = best[static_cast<size_t>(q - 1)][static_cast<size_t>(s)];
        if (prev.worst == inf) {
          continue;
        }
        if (check_fit && !fit(c, budgets[static_cast<size_t>(j)], j, a + s, a + e)) {
          continue;
        }
        // a stage's time is the bytes it reads over its device's bandwidth
        const auto t = static_cast<uint64_t>(static_cast<double>(c.time(j, a + s, a + e)) /
                                             budgets[static_cast<size_t>(j)].speed);
        const score cand{std::max(prev.worst, t),
                         prev.spread + static_cast<double>(t) * static_cast<double>(t)};
        auto& cur = best[static_cast<size_t>(q)][static_cast<size_t>(e)];
        if (cand < cur) {
          cur = cand;
          from[static_cast<size_t>(q)][static_cast<size_t>(e)] = s;
        }
      }
    }
  }
  if (best[static_cast<size_t>(k)][static_cast<size_t>(n)].worst == inf) {
    return std::nullopt;
  }
  std::vector<int64_t> bounds(static_cast<size_t>(k + 1));
  int64_t e = n;
  for (int64_t q = k; q >= 1; --q) {
    bounds[static_cast<size_t>(q)] = a + e;
    e = from[static_cast<size_t>(q)][static_cast<size_t>(e)];
  }
  bounds[0] = a;
  return bounds;
}

std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

result<pipeline_plan> plan_pipeline(const topology& t, const model& m, const placement_env& env) {
  const model_config& cfg = m.config();
  const std::string& file = t.path;
  const int64_t n_layer = cfg.n_layer;
  const int64_t n_stages = static_cast<int64_t>(t.stages.size());
  if (n_stages == 0) {
    return make_error("%sno stages (expected at least one [[stage]])", at(file, 0).c_str());
  }
  if (n_stages > n_layer) {
    return make_error("%s%lld stages but the model has %lld layers (each stage needs at least "
                      "one)",
                      at(file, t.stages.back().line).c_str(), static_cast<long long>(n_stages),
                      static_cast<long long>(n_layer));
  }

  pipeline_plan plan;
  plan.resolved = t;
  topology& r = plan.resolved;
  pipeline_spec& p = r.pipeline;
  if (p.max_model_len == 0) {
    p.max_model_len = std::min<int64_t>(cfg.n_ctx_train, 4096);
  } else if (p.max_model_len > cfg.n_ctx_train) {
    return make_error("%s[pipeline] field 'max_model_len': %lld is more than the model's "
                      "training context (%lld tokens)",
                      at(file, p.line).c_str(), static_cast<long long>(p.max_model_len),
                      static_cast<long long>(cfg.n_ctx_train));
  }
  if (p.micro_batches == 0) {
    p.micro_batches = default_micro_batches(n_stages);
  }

  // -- ranks ----------------------------------------------------------------------
  const int32_t world = env.world_size;
  if (world < 1 || world > topology_limits::max_world_size) {
    return make_error("%sthe MPI world size is %d (expected 1 to %d ranks)", at(file, 0).c_str(),
                      world, topology_limits::max_world_size);
  }
  for (int64_t i = 0; i < n_stages; ++i) {
    const stage_spec& s = t.stages[static_cast<size_t>(i)];
    if (s.rank < 0 || s.rank >= world) {
      return make_error("%sstage %lld rank %d: the MPI world has %d rank%s (0-%d)",
                        at(file, line_or(s.rank_line, s)).c_str(), static_cast<long long>(i),
                        s.rank, world, world == 1 ? "" : "s", world - 1);
    }
  }

  // -- layers: explicit ranges in order, the "auto" runs between them -----------------
  struct auto_run {
    int64_t j0 = 0;  // first stage of the run
    int64_t k = 0;   // stages in it
    int64_t a = 0;   // layers [a, b) it shares
    int64_t b = 0;
  };
  std::vector<auto_run> runs;
  {
    int64_t pos = 0;        // the layer after the last explicit stage's
    int64_t prev = -1;      // the last explicit stage
    int64_t pending = 0;    // auto stages since
    auto close_run = [&](int64_t until, int64_t next, int line) -> result<void> {
      if (pending == 0) {
        return {};
      }
      const int64_t j0 = next - pending;
      if (until - pos < pending) {
        std::string left = "no layers";
        if (until > pos) {
          left = until - pos == 1 ? "only layer " : "only layers ";
          left.append(range_text(pos, until));
        }
        const std::string who =
            pending == 1 ? "stage " + std::to_string(j0) + " is \"auto\" but the explicit "
                                                           "stages around it leave "
                         : "stages " + std::to_string(j0) + "-" + std::to_string(next - 1) +
                               " are \"auto\" but the explicit stages around them leave ";
        return make_error("%s%s%s (each auto stage needs at least one layer)",
                          at(file, line).c_str(), who.c_str(), left.c_str());
      }
      runs.push_back({j0, pending, pos, until});
      pending = 0;
      return {};
    };
    // past the model, then out of order, before overlaps and gaps: each is the clearer
    // message for the mistakes that cause the later ones
    int64_t before = -1;  // the previous explicit stage
    for (int64_t i = 0; i < n_stages; ++i) {
      const stage_spec& s = t.stages[static_cast<size_t>(i)];
      if (s.layers.automatic) {
        continue;
      }
      const std::string where = at(file, line_or(s.layers_line, s));
      if (s.layers.last > n_layer) {
        return make_error("%sstage %lld field 'layers': %s is past the model's last layer (%lld "
                          "layers: 0-%lld)",
                          where.c_str(), static_cast<long long>(i),
                          quoted(s.layers.to_string()).c_str(), static_cast<long long>(n_layer),
                          static_cast<long long>(n_layer - 1));
      }
      if (before >= 0 && s.layers.first < t.stages[static_cast<size_t>(before)].layers.first) {
        return make_error("%sstage %lld field 'layers': %s is not in stage order: it comes "
                          "before stage %lld's '%s' (stages must run the layers in order)",
                          where.c_str(), static_cast<long long>(i),
                          quoted(s.layers.to_string()).c_str(), static_cast<long long>(before),
                          t.stages[static_cast<size_t>(before)].layers.to_string().c_str());
      }
      before = i;
    }
    for (int64_t i = 0; i < n_stages; ++i) {
      const stage_spec& s = t.stages[static_cast<size_t>(i)];
      const std::string where = at(file, line_or(s.layers_line, s));
      if (s.layers.automatic) {
        ++pending;
        continue;
      }
      const int64_t first = s.layers.first;
      const int64_t last = s.layers.last;
      const std::string text = quoted(s.layers.to_string());
      if (prev >= 0 && first < pos) {
        const stage_spec& ps = t.stages[static_cast<size_t>(prev)];
        return make_error("%sstage %lld field 'layers': %s overlaps stage %lld's '%s' (layer%s "
                          "%s would run twice)",
                          where.c_str(), static_cast<long long>(i), text.c_str(),
                          static_cast<long long>(prev), ps.layers.to_string().c_str(),
                          std::min(last, pos) - first == 1 ? "" : "s",
                          range_text(first, std::min(last, pos)).c_str());
      }
      if (pending > 0) {
        if (auto ok = close_run(first, i, line_or(s.layers_line, s)); !ok) {
          return ok.err();
        }
      } else if (first > pos) {
        const std::string gap = layers_are(pos, first);
        if (prev < 0) {
          return make_error("%s%s on no stage (stage %lld, the first, starts at layer %lld)",
                            where.c_str(), gap.c_str(),
                            static_cast<long long>(i), static_cast<long long>(first));
        }
        return make_error("%s%s on no stage (stage %lld ends at layer %lld, stage %lld starts "
                          "at %lld)",
                          where.c_str(), gap.c_str(),
                          static_cast<long long>(prev), static_cast<long long>(pos - 1),
                          static_cast<long long>(i), static_cast<long long>(first));
      }
      pos = last;
      prev = i;
    }
    const stage_spec& tail = t.stages.back();
    if (pending > 0) {
      if (auto ok = close_run(n_layer, n_stages, line_or(tail.layers_line, tail)); !ok) {
        return ok.err();
      }
    } else if (pos < n_layer) {
      return make_error("%s%s on no stage (the last stage, %lld, ends at layer %lld; the "
                        "model has %lld layers)",
                        at(file, line_or(tail.layers_line, tail)).c_str(),
                        layers_are(pos, n_layer).c_str(), static_cast<long long>(n_stages - 1),
                        static_cast<long long>(pos - 1), static_cast<long long>(n_layer));
    }
  }

  // -- devices --------------------------------------------------------------------
  std::vector<stage_budget> budgets(static_cast<size_t>(n_stages));
  auto host_of = [&](int32_t rank) {
    return static_cast<size_t>(rank) < env.rank_hosts.size()
               ? env.rank_hosts[static_cast<size_t>(rank)]
               : std::string();
  };
  std::map<std::pair<std::string, std::string>, int64_t> gpu_owner;  // (host, cuda:N) -> stage
  for (int64_t i = 0; i < n_stages; ++i) {
    const stage_spec& s = t.stages[static_cast<size_t>(i)];
    const std::string where = at(file, line_or(s.device_line, s));
    stage_budget& b = budgets[static_cast<size_t>(i)];
    b.dev = env.query_device ? env.query_device(s.rank, s.device) : query_local_device(s.device);
    b.speed = relative_speed(s.device, b.dev);
    if (!b.dev.exists) {
      return make_error("%sstage %lld device '%s' (rank %d): no such device (%s)", where.c_str(),
                        static_cast<long long>(i), s.device.c_str(), s.rank,
                        b.dev.source.c_str());
    }
    // kv_budget_bytes says so too; here the message can point at the field
    if (s.kv_cache_memory && *s.kv_cache_memory > b.dev.memory_bytes) {
      return make_error("%sstage %lld field 'kv_cache_memory': %s (%llu bytes) is more than the "
                        "memory of %s on rank %d: %s (%llu bytes, %s)",
                        at(file, line_or(s.memory_line, s)).c_str(), static_cast<long long>(i),
                        format_bytes(*s.kv_cache_memory).c_str(),
                        static_cast<unsigned long long>(*s.kv_cache_memory), s.device.c_str(),
                        s.rank, format_bytes(b.dev.memory_bytes).c_str(),
                        static_cast<unsigned long long>(b.dev.memory_bytes),
                        b.dev.source.c_str());
    }
    if (s.device != "cpu") {
      const auto key = std::make_pair(host_of(s.rank), s.device);
      auto [it, fresh] = gpu_owner.emplace(key, i);
      const stage_spec& other = t.stages[static_cast<size_t>(it->second)];
      if (!fresh && other.rank != s.rank) {
        const std::string host = key.first.empty() ? "one host" : "host '" + key.first + "'";
        return make_error("%sstage %lld (rank %d) and stage %lld (rank %d) both use %s on %s: "
                          "NCCL cannot place two ranks on one GPU (give each rank its own "
                          "device)",
                          where.c_str(), static_cast<long long>(it->second), other.rank,
                          static_cast<long long>(i), s.rank, s.device.c_str(), host.c_str());
      }
    }
  }

  // -- memory shares: the stages on one device of one host split it (RAM is the host's,
  // whichever rank a cpu stage runs in; a GPU belongs to one rank) ----------------------
  std::map<std::pair<std::string, std::string>, std::vector<int64_t>> groups;
  for (int64_t i = 0; i < n_stages; ++i) {
    const stage_spec& s = t.stages[static_cast<size_t>(i)];
    groups[{host_of(s.rank), s.device}].push_back(i);
  }
  for (const auto& [key, members] : groups) {
    double sum = 0;
    std::string terms;
    for (int64_t i : members) {
      stage_spec& s = r.stages[static_cast<size_t>(i)];
      stage_budget& b = budgets[static_cast<size_t>(i)];
      if (!s.memory_utilization && !s.kv_cache_memory) {
        s.memory_utilization = 0.9 / static_cast<double>(members.size());
      }
      b.kv_explicit = s.kv_cache_memory;
      if (s.memory_utilization) {
        b.utilization = *s.memory_utilization;
        sum += b.utilization;
        terms += (terms.empty() ? "" : " + ") + fmt_double(b.utilization) + " (stage " +
                 std::to_string(i) + ")";
      }
    }
    if (sum > 1.0 + 1e-9) {
      const stage_spec& s = t.stages[static_cast<size_t>(members.back())];
      const std::string host = key.first.empty() ? "one host" : "host '" + key.first + "'";
      return make_error("%sthe stages on %s of %s share its memory, and their "
                        "memory_utilization sums to %s > 1: %s",
                        at(file, line_or(s.memory_line, s)).c_str(), key.second.c_str(),
                        host.c_str(), fmt_double(sum).c_str(), terms.c_str());
    }
  }

  // -- per-stage numbers that do not depend on the layers ----------------------------
  stage_costs costs{m, p, n_stages, {}, 0, 0, 0};
  const model_weights& w = m.weights();
  for (int64_t il = 0; il < static_cast<int64_t>(w.layers.size()); ++il) {
    costs.layer_bytes.push_back(layer_weight_bytes(m, il));
  }
  costs.embd_bytes = tensor_bytes(w.token_embd);
  costs.head_bytes = tensor_bytes(w.output_norm) + tensor_bytes(w.head());
  costs.rope_bytes = tensor_bytes(w.rope_freqs);
  {
    // the parsed metadata + tokenizer once per rank, on its first cpu stage; logits for
    // every sequence on the last stage
    std::set<int32_t> ranks_with_metadata;
    for (int64_t i = 0; i < n_stages; ++i) {
      const stage_spec& s = t.stages[static_cast<size_t>(i)];
      stage_budget& b = budgets[static_cast<size_t>(i)];
      const bool metadata = s.device == "cpu" && ranks_with_metadata.insert(s.rank).second;
      b.buffers = step_buffer_bytes(m, p.max_num_batched_tokens,
                                    i == n_stages - 1 ? p.max_num_seqs : 0, metadata);
      const long double share =
          static_cast<long double>(b.dev.memory_bytes) * static_cast<long double>(b.utilization);
      b.share = static_cast<uint64_t>(std::floor(share));
    }
  }

  // -- auto runs --------------------------------------------------------------------
  for (const auto& run : runs) {
    std::vector<int64_t> bounds;
    if (t.even_split) {
      auto even = split_layers(run.b - run.a, run.k);
      if (!even) {
        return make_error("%s%s", at(file, 0).c_str(), even.err().message.c_str());
      }
      bounds.push_back(run.a);
      for (const auto& lr : *even) {
        bounds.push_back(run.a + lr.last);
      }
    } else if (auto fitted = balance(costs, budgets, run.j0, run.k, run.a, run.b, true)) {
      bounds = *fitted;
    } else if (run.k == 1 || run.b - run.a == run.k) {
      // one way to split: the memory plan below names what does not fit
      bounds = *balance(costs, budgets, run.j0, run.k, run.a, run.b, false);
    } else {
      // name the stage that fails in the split that ignores budgets
      bounds = *balance(costs, budgets, run.j0, run.k, run.a, run.b, false);
      for (int64_t q = 0; q < run.k; ++q) {
        const int64_t j = run.j0 + q;
        const int64_t first = bounds[static_cast<size_t>(q)];
        const int64_t last = bounds[static_cast<size_t>(q + 1)];
        auto f = fit(costs, budgets[static_cast<size_t>(j)], j, first, last);
        if (!f) {
          const stage_spec& s = t.stages[static_cast<size_t>(j)];
          return make_error("%sstage %lld (rank %d, %s, \"auto\"): no split of layers %s among "
                            "stages %lld-%lld fits their budgets; the balanced one gives it "
                            "layers %s, and %s%s",
                            at(file, line_or(s.memory_line, s)).c_str(), static_cast<long long>(j),
                            s.rank, s.device.c_str(), range_text(run.a, run.b).c_str(),
                            static_cast<long long>(run.j0),
                            static_cast<long long>(run.j0 + run.k - 1),
                            range_text(first, last).c_str(), f.err().message.c_str(),
                            source_of(budgets[static_cast<size_t>(j)]).c_str());
        }
      }
      // every stage fits alone but no split fits all at once: cannot happen with one
      // budget check per stage, since the balanced split is one of the candidates
      BATON_ASSERT(false && "balance() found no split but every stage of the balanced one fits");
    }
    for (int64_t q = 0; q < run.k; ++q) {
      r.stages[static_cast<size_t>(run.j0 + q)].layers =
          layer_range{bounds[static_cast<size_t>(q)], bounds[static_cast<size_t>(q + 1)], false};
    }
  }

  // -- the memory plan ------------------------------------------------------------
  std::map<int32_t, int32_t> cpu_stages_of_rank;
  for (const auto& s : r.stages) {
    if (s.device == "cpu") {
      ++cpu_stages_of_rank[s.rank];
    }
  }
  plan.capacity_tokens = std::numeric_limits<int64_t>::max();
  plan.n_blocks = std::numeric_limits<int32_t>::max();
  for (int64_t i = 0; i < n_stages; ++i) {
    const stage_spec& s = r.stages[static_cast<size_t>(i)];
    const stage_budget& b = budgets[static_cast<size_t>(i)];
    const int64_t first = s.layers.first;
    const int64_t last = s.layers.last;
    stage_plan sp;
    sp.layers = s.layers;
    sp.weight_bytes = costs.weights(i, first, last);
    sp.buffer_bytes = b.buffers;
    sp.kv_bytes_per_token = costs.kv_per_token(first, last);
    auto kv = fit(costs, b, i, first, last);
    if (!kv) {
      const stage_spec& orig = t.stages[static_cast<size_t>(i)];
      const std::string source = source_of(b);
      return make_error("%sstage %lld (rank %d, %s, layers %s): %s, max_model_len %lld tokens x "
                        "%llu B/token%s",
                        at(file, line_or(orig.memory_line, orig)).c_str(),
                        static_cast<long long>(i), s.rank, s.device.c_str(),
                        s.layers.to_string().c_str(), kv.err().message.c_str(),
                        static_cast<long long>(p.max_model_len),
                        static_cast<unsigned long long>(sp.kv_bytes_per_token), source.c_str());
    }
    sp.kv_bytes = *kv;
    if (b.kv_explicit) {
      sp.budget_bytes = sp.weight_bytes + sp.buffer_bytes + *b.kv_explicit;
      sp.budget_source = "kv_cache_memory " + format_bytes(*b.kv_explicit) + " + weights + buffers";
    } else {
      sp.budget_bytes = b.share;
      sp.budget_source = "memory_utilization " + fmt_double(b.utilization) + " of " +
                         format_bytes(b.dev.memory_bytes) + " (" + b.dev.source + ")";
    }
    sp.n_blocks = kv_blocks_in(sp.kv_bytes, sp.kv_bytes_per_token, p.block_size);
    sp.kv_capacity_tokens = static_cast<int64_t>(sp.n_blocks) * p.block_size;
    if (s.threads > 0) {
      sp.threads = s.threads;
    } else if (s.device == "cpu") {
      sp.threads = std::max<int32_t>(1, b.dev.threads / std::max(1, cpu_stages_of_rank[s.rank]));
    } else {
      sp.threads = 1;
    }
    plan.capacity_tokens = std::min(plan.capacity_tokens, sp.kv_capacity_tokens);
    plan.n_blocks = std::min(plan.n_blocks, sp.n_blocks);
    plan.stages.push_back(std::move(sp));
  }
  return plan;
}

placement_env local_placement_env(int32_t world_size) {
  placement_env env;
  env.world_size = world_size;
  env.query_device = [](int32_t, const std::string& device) { return query_local_device(device); };
  return env;
}

}  // namespace baton
