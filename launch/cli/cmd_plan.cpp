// `baton plan --topology T [--model M] [--np N] [--json] [--write resolved.toml]
// [--against OLD [--url URL]]`: checks
// a topology file against its model and an MPI world of N ranks (every rank's devices
// described as this host's), resolves "auto" layers, and prints each stage's memory
// plan — weights, KV bytes per token, budget and its source, KV bytes and tokens — and
// the pipeline's capacity (the smallest stage's), and the ranks of the world that hold no
// stage (standby). --write saves the resolved file. --against OLD also plans OLD and says
// what a live reshard from it would move, rank by rank (layers gained and lost, weight
// bytes to load, KV bytes to receive at full capacity, or with --url at a running
// server's occupancy).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "launch/cli/commands.hpp"
#include "launch/cli/simulate.hpp"
#include "launch/http/http_client.hpp"
#include "runtime/model/shape_model.hpp"
#include "runtime/system/device.hpp"
#include "runtime/system/units.hpp"
#include "topology/cluster_file.hpp"
#include "topology/planner.hpp"
#include "topology/reshard_plan.hpp"
#include "topology/topology_file.hpp"

namespace baton::cli {

namespace {

struct plan_options {
  std::string topology;
  std::string model;
  int32_t np = 0;  ///< 0: the highest rank + 1
  bool json = false;
  std::string write;
  std::string against;  ///< the running topology a reshard would leave
  std::string url;      ///< a running head: KV to move at its occupancy, not at capacity
  bool simulate = false;         ///< predict throughput and latency (runtime/sim)
  std::string profile;           ///< the device profile (baton bench calibrate)
  std::string streams = "1,16,64";
  int32_t n_prompt = 128;
  int32_t n_gen = 64;
  std::string shape;             ///< a model shape without a file (model_builder presets)
  std::string type;              ///< with --shape: its file type (Q4_K_M, F16, ...)
  std::string cluster;           ///< a cluster description instead of this host
  int32_t pp = 0;                ///< no --topology: this many "auto" stages, one per rank
  int32_t max_num_seqs = 0;      ///< overrides the file's [pipeline] (0: keep)
  bool search = false;           ///< --simulate over the splits and micro-batches that fit
  int32_t n_blocks = 0;          ///< --simulate: the KV pool in blocks (0: as planned)
};

/// --pp N without a file: N "auto" stages, stage k on rank k, on the rank's k-th GPU of
/// its host when the cluster gives the host GPUs, else its cpu.
topology pipeline_topology(int32_t n, const std::optional<cluster>& c) {
  topology t;
  t.path = "--pp " + std::to_string(n);
  for (int32_t k = 0; k < n; ++k) {
    stage_spec s;
    s.rank = k;
    s.layers.automatic = true;
    if (c && k < c->world_size()) {
      const cluster_host& h = c->host_of(k);
      if (h.gpus > 0) {
        s.device = cuda_device_name((k - h.first_rank) % h.gpus);
      }
    }
    t.stages.push_back(s);
  }
  return t;
}

/// The ranks of the world with no stage.
std::vector<int32_t> standby_ranks(const pipeline_plan& plan, int32_t world) {
  std::vector<int32_t> out;
  for (int32_t r = 0; r < world; ++r) {
    bool holds = false;
    for (const auto& s : plan.resolved.stages) {
      holds = holds || s.rank == r;
    }
    if (!holds) {
      out.push_back(r);
    }
  }
  return out;
}

nlohmann::json to_json(const topology& given, const pipeline_plan& plan, const model& m,
                       int32_t world) {
  const topology& r = plan.resolved;
  const pipeline_spec& p = r.pipeline;
  nlohmann::json j;
  j["topology"] = given.path;
  j["model"] = r.model;
  j["n_layer"] = m.config().n_layer;
  j["world_size"] = world;
  j["pipeline"] = {
      {"micro_batches", p.micro_batches},
      {"max_num_seqs", p.max_num_seqs},
      {"max_num_batched_tokens", p.max_num_batched_tokens},
      {"block_size", p.block_size},
      {"max_model_len", p.max_model_len},
      {"kv_cache_dtype", kv_type_name(p.kv_type)},
  };
  j["stages"] = nlohmann::json::array();
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const stage_plan& sp = plan.stages[i];
    const stage_spec& s = r.stages[i];
    j["stages"].push_back({
        {"stage", i},
        {"rank", s.rank},
        {"device", s.device},
        {"layers", sp.layers.to_string()},
        {"first_layer", sp.layers.first},
        {"n_layers", sp.layers.size()},
        {"auto", given.stages[i].layers.automatic},
        {"weight_bytes", sp.weight_bytes},
        {"buffer_bytes", sp.buffer_bytes},
        {"kv_bytes_per_token", sp.kv_bytes_per_token},
        {"budget_bytes", sp.budget_bytes},
        {"budget_source", sp.budget_source},
        {"kv_bytes", sp.kv_bytes},
        {"kv_capacity_tokens", sp.kv_capacity_tokens},
        {"n_blocks", sp.n_blocks},
        {"threads", sp.threads},
    });
  }
  j["capacity_tokens"] = plan.capacity_tokens;
  j["n_blocks"] = plan.n_blocks;
  j["standby_ranks"] = standby_ranks(plan, world);
  return j;
}

void print_table(const topology& given, const pipeline_plan& plan, const model& m,
                 int32_t world, const std::string& devices_from) {
  const topology& r = plan.resolved;
  const pipeline_spec& p = r.pipeline;
  std::printf("topology  %s\n", given.path.c_str());
  std::printf("model     %s (%lld layers)\n", r.model.c_str(),
              static_cast<long long>(m.config().n_layer));
  std::printf("world     %d rank%s, devices %s\n", world, world == 1 ? "" : "s",
              devices_from.c_str());
  std::printf("pipeline  micro_batches %d, max_num_seqs %d, max_num_batched_tokens %d, "
              "block_size %d, max_model_len %lld, kv %s\n\n",
              p.micro_batches, p.max_num_seqs, p.max_num_batched_tokens, p.block_size,
              static_cast<long long>(p.max_model_len), kv_type_name(p.kv_type));
  std::printf("%-5s %-4s %-8s %-12s %11s %11s %9s %11s %11s %11s %7s\n", "stage", "rank",
              "device", "layers", "weights", "buffers", "KV/token", "budget", "KV", "KV tokens",
              "threads");
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const stage_plan& sp = plan.stages[i];
    const stage_spec& s = r.stages[i];
    std::string layers = sp.layers.to_string();
    if (given.stages[i].layers.automatic) {
      layers += " auto";
    }
    std::printf("%-5zu %-4d %-8s %-12s %11s %11s %9s %11s %11s %11lld %7d\n", i, s.rank,
                s.device.c_str(), layers.c_str(), format_bytes(sp.weight_bytes).c_str(),
                format_bytes(sp.buffer_bytes).c_str(),
                format_bytes(sp.kv_bytes_per_token).c_str(),
                format_bytes(sp.budget_bytes).c_str(), format_bytes(sp.kv_bytes).c_str(),
                static_cast<long long>(sp.kv_capacity_tokens), sp.threads);
  }
  std::printf("\nbudgets\n");
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    std::printf("  stage %zu: %s\n", i, plan.stages[i].budget_source.c_str());
  }
  std::printf("\npipeline capacity: %lld tokens of KV (%d blocks of %d; the smallest stage's)\n",
              static_cast<long long>(plan.capacity_tokens), plan.n_blocks, p.block_size);
  const auto standby = standby_ranks(plan, world);
  if (!standby.empty()) {
    std::printf("standby ranks (no stage; they can take stages in a reshard):");
    for (int32_t rank : standby) {
      std::printf(" %d", rank);
    }
    std::printf("\n");
  }
}

nlohmann::json moves_json(const std::vector<rank_moves>& moves) {
  nlohmann::json out = nlohmann::json::array();
  for (const rank_moves& mv : moves) {
    out.push_back({{"rank", mv.rank},
                   {"gained", mv.gained},
                   {"lost", mv.lost},
                   {"weight_bytes_to_load", mv.weight_bytes_to_load},
                   {"kv_bytes_in_at_capacity", mv.kv_bytes_in},
                   {"standby", mv.standby}});
  }
  return out;
}

/// The KV tokens a running server holds for its sequences now: its KV blocks in use
/// (total minus free in /metrics) times the block size.
result<int64_t> live_kv_tokens(const std::string& url, int32_t block_size) {
  auto u = parse_http_url(url);
  if (!u) {
    return u.err();
  }
  http_client http(*u, "", std::chrono::seconds(30));
  auto r = http.get("/metrics");
  if (!r) {
    return make_error("--url %s: %s", url.c_str(), r.err().message.c_str());
  }
  if (!r->ok()) {
    return make_error("--url %s: GET /metrics: HTTP %d", url.c_str(), r->status);
  }
  std::optional<double> total;
  std::optional<double> free;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    auto value = [&](const std::string& name) -> std::optional<double> {
      if (line.rfind(name + " ", 0) != 0) {
        return std::nullopt;
      }
      char* end = nullptr;
      const double v = std::strtod(line.c_str() + name.size() + 1, &end);
      return end != line.c_str() + name.size() + 1 && v >= 0 ? std::optional<double>(v)
                                                              : std::nullopt;
    };
    total = total ? total : value("baton:kv_cache_blocks_total");
    free = free ? free : value("baton:kv_cache_blocks_free");
  }
  if (!total || !free || *free > *total) {
    return make_error("--url %s: /metrics has no baton:kv_cache_blocks_total and _free (is "
                      "it a baton server?)",
                      url.c_str());
  }
  return static_cast<int64_t>(*total - *free) * block_size;
}

void print_moves(const std::string& against, const std::vector<rank_moves>& moves,
                 const std::string& at) {
  std::printf("\nreshard from %s (KV %s):\n", against.c_str(), at.c_str());
  for (const rank_moves& mv : moves) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) {
        s += (s.empty() ? "" : ", ") + x;
      }
      return s.empty() ? std::string("nothing") : s;
    };
    std::printf("  rank %d: gains %s; loses %s; loads %s of weights, receives %s of KV%s\n",
                mv.rank, list(mv.gained).c_str(), list(mv.lost).c_str(),
                format_bytes(mv.weight_bytes_to_load).c_str(),
                format_bytes(mv.kv_bytes_in).c_str(), mv.standby ? " (standby after)" : "");
  }
}

int run_plan(const plan_options& o) {
  std::optional<cluster> c;
  if (!o.cluster.empty()) {
    auto parsed = parse_cluster_file(o.cluster);
    if (!parsed) {
      return fail(parsed.err().message);
    }
    c = std::move(*parsed);
  }
  result<topology> t = error{""};
  if (!o.topology.empty()) {
    t = parse_topology_file(o.topology);
  } else if (o.pp >= 1 && o.pp <= 4096) {
    t = pipeline_topology(o.pp, c);
  } else {
    return fail("plan: give --topology T, or --pp N (1-4096) for N auto stages one per rank");
  }
  if (!t) {
    return fail(t.err().message);
  }
  if (o.max_num_seqs > 0) {
    t->pipeline.max_num_seqs = o.max_num_seqs;
  }
  if (!o.model.empty()) {
    t->model = o.model;
  }
  std::shared_ptr<const model> mp;
  if (!o.shape.empty() && !o.write.empty()) {
    return fail("--write saves a topology to run, which needs a model file: not with --shape");
  }
  if (!o.shape.empty()) {
    // a shape and type without a file: the header alone, typed as baton quantize would
    auto shape = preset_shape(o.shape);
    if (!shape) {
      return fail("--shape '" + o.shape + "': expected " + preset_names());
    }
    const auto type = parse_ftype(o.type);
    if (!type) {
      return fail("--shape needs --type, one of " + ftype_names(" or ") +
                  (o.type.empty() ? std::string() : " (got '" + o.type + "')"));
    }
    auto m = shape_model(*shape, *type);
    if (!m) {
      return fail(m.err().message);
    }
    mp = *m;
    t->model = o.shape + " " + std::string(info(*type).name) + " (shape only, no file)";
  } else {
    if (t->model.empty()) {
      return fail(t->path + ": no model (expected a 'model' key, --model or --shape)");
    }
    auto m = model::open(t->model);
    if (!m) {
      return fail(m.err().message);
    }
    mp = *m;
  }
  const model& model_ref = *mp;
  // int64: the highest rank + 1 must not wrap (ranks are bounded when the file is read)
  int64_t world = o.np;
  if (c && o.np != 0 && o.np != c->world_size()) {
    return fail("--np " + std::to_string(o.np) + " with --cluster: " + c->path + " has " +
                std::to_string(c->world_size()) + " ranks (its hosts decide the world)");
  }
  if (c) {
    world = c->world_size();
  } else if (world == 0) {
    for (const auto& s : t->stages) {
      world = std::max<int64_t>(world, int64_t{s.rank} + 1);
    }
  } else if (world < 0 || world > topology_limits::max_world_size) {
    return fail("--np (" + std::to_string(world) + ") must be 1 to " +
                std::to_string(topology_limits::max_world_size));
  }
  const placement_env env =
      c ? cluster_placement_env(*c) : local_placement_env(static_cast<int32_t>(world));
  auto plan = plan_pipeline(*t, model_ref, env);
  if (!plan) {
    return fail(plan.err().message);
  }
  if (!o.write.empty()) {
    topology out = plan->resolved;
    std::error_code ec;
    const auto abs = std::filesystem::absolute(out.model, ec);
    if (!ec) {
      out.model = abs.lexically_normal().string();  // the written file may live elsewhere
    }
    std::ofstream f(o.write, std::ios::binary | std::ios::trunc);
    f << to_toml(out);
    f.close();
    if (!f) {
      return fail(o.write + ": cannot write the resolved topology");
    }
  }
  std::optional<std::vector<rank_moves>> moves;
  std::string at = "at full capacity";
  if (!o.url.empty() && o.against.empty()) {
    return fail("--url goes with --against (the topology the server runs)");
  }
  if (!o.against.empty()) {
    auto old = parse_topology_file(o.against);
    if (!old) {
      return fail(old.err().message);
    }
    old->model = t->model;  // a reshard keeps the model
    auto old_plan = plan_pipeline(*old, model_ref, env);
    if (!old_plan) {
      return fail(old_plan.err().message);
    }
    moves = plan_reshard_moves(*old_plan, *plan, model_ref, static_cast<int32_t>(world));
    if (!o.url.empty()) {
      // the moves are at the new plan's capacity: scale them to what the server holds
      auto live = live_kv_tokens(o.url, plan->resolved.pipeline.block_size);
      if (!live) {
        return fail(live.err().message);
      }
      const double capacity = static_cast<double>(plan->n_blocks) *
                              static_cast<double>(plan->resolved.pipeline.block_size);
      for (rank_moves& mv : *moves) {
        mv.kv_bytes_in = capacity > 0 ? static_cast<uint64_t>(static_cast<double>(mv.kv_bytes_in) *
                                                               std::min(1.0, *live / capacity))
                                      : 0;
      }
      at = "at the server's occupancy: " + std::to_string(*live) + " tokens";
    }
  }
  if (o.simulate || o.search) {
    profile_file profile;
    if (!o.profile.empty()) {
      auto p = read_profile(o.profile);
      if (!p) {
        return fail(p.err().message);
      }
      profile = *p;
    } else if (!c) {
      return fail("--simulate needs --profile P.json (baton bench calibrate -o P.json makes one "
                  "on the machine the stages run on) or --cluster C.toml");
    }
    sim_request req;
    std::stringstream list(o.streams);
    for (std::string item; std::getline(list, item, ',');) {
      char* end = nullptr;
      const long v = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || v < 1 || v > 4096) {
        return fail("--streams '" + o.streams + "': expected stream counts 1-4096, comma-separated");
      }
      req.streams.push_back(static_cast<int32_t>(v));
    }
    if (req.streams.empty()) {
      return fail("--streams: expected at least one stream count");
    }
    if (o.n_prompt < 1 || o.n_gen < 1 ||
        int64_t{o.n_prompt} + o.n_gen > plan->resolved.pipeline.max_model_len) {
      return fail("-p and -n must be >= 1 and fit the context (" +
                  std::to_string(plan->resolved.pipeline.max_model_len) + " tokens)");
    }
    req.prompt = o.n_prompt;
    req.gen = o.n_gen;
    req.json = o.json;
    if (o.n_blocks < 0) {
      return fail("--num-gpu-blocks-override must be >= 0 (0: as the plan sizes the pool)");
    }
    req.n_blocks = o.n_blocks;
    auto place = [&](const pipeline_plan& p) {
      return c ? placement_on_cluster(p, *c, profile) : placement_from_profile(p, profile);
    };
    if (o.search) {
      const replan_fn replan =
          [&](const topology& cand) -> result<std::pair<pipeline_plan, sim_placement>> {
        auto p = plan_pipeline(cand, model_ref, env);
        if (!p) {
          return p.err();
        }
        sim_placement w = place(*p);
        return std::pair{std::move(*p), std::move(w)};
      };
      return print_search(*t, model_ref, replan, req, 3);
    }
    return print_simulation(*plan, model_ref, place(*plan), req);
  }
  if (o.json) {
    auto j = to_json(*t, *plan, model_ref, static_cast<int32_t>(world));
    if (moves) {
      j["reshard_from"] = o.against;
      j["reshard_moves"] = moves_json(*moves);
      j["reshard_kv_at"] = at;
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    print_table(*t, *plan, model_ref, static_cast<int32_t>(world),
                c ? "from " + c->path : std::string("as this host's"));
    if (moves) {
      print_moves(o.against, *moves, at);
    }
  }
  return exit_ok;
}

}  // namespace

void add_plan_command(CLI::App& app, int& status) {
  auto opts = std::make_shared<plan_options>();
  auto* cmd = app.add_subcommand(
      "plan", "Check a topology file and print each stage's layers and memory plan");
  cmd->add_option("-T,--topology", opts->topology, "Topology file (TOML); or --pp N");
  cmd->add_option("--pp,--pipeline-parallel-size", opts->pp,
                  "Without --topology: N auto stages, stage k on rank k (on its host's GPUs "
                  "with --cluster)");
  cmd->add_option("--shape", opts->shape,
                  "Plan a model shape without its file: " + preset_names() + " (with --type)");
  cmd->add_option("--type", opts->type, "With --shape: the file type (" + ftype_names(" or ") + ")");
  cmd->add_option("--cluster", opts->cluster,
                  "A cluster description (TOML: hosts, GPUs, links) to plan and simulate on "
                  "instead of this host");
  cmd->add_option("--num-gpu-blocks-override", opts->n_blocks,
                  "With --simulate: the KV pool in blocks instead of the plan's (vLLM's flag; "
                  "as bench batch takes it)");
  cmd->add_option("--max-num-seqs", opts->max_num_seqs,
                  "Overrides the topology's max_num_seqs (sequences in the running batch)");
  cmd->add_flag("--search", opts->search,
                "Simulate the splits and micro-batch counts that fit and print the best 3 for "
                "the workload (ranked at the largest --streams)");
  cmd->add_option("-m,--model", opts->model, "GGUF model file (overrides the file's 'model')");
  cmd->add_option("--np,--world", opts->np,
                  "MPI world size for the rank checks; ranks beyond the stages' are standby "
                  "(default: highest rank + 1)");
  cmd->add_option("--against", opts->against,
                  "The running topology: also print what a live reshard from it would move");
  cmd->add_option("--url", opts->url,
                  "With --against: the running server (its KV in use, from /metrics) sizes the "
                  "KV to move instead of full capacity");
  cmd->add_flag("--json", opts->json, "Print JSON");
  cmd->add_option("--write", opts->write, "Write the resolved topology (explicit layers) here");
  cmd->add_flag("--simulate", opts->simulate,
                "Predict output and decode tokens/s, TTFT, TPOT, stage busy shares, KV use and "
                "preemptions for --streams clients (a simulation on the real scheduler)");
  cmd->add_option("--profile", opts->profile,
                  "With --simulate: the device profile (baton bench calibrate -o P.json)");
  cmd->add_option("--streams", opts->streams, "With --simulate: stream counts, comma-separated")
      ->capture_default_str();
  cmd->add_option("-p,--n-prompt", opts->n_prompt, "With --simulate: prompt tokens a request")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", opts->n_gen, "With --simulate: generated tokens a request")
      ->capture_default_str();
  cmd->callback([opts, &status] { status = run_plan(*opts); });
}

}  // namespace baton::cli
