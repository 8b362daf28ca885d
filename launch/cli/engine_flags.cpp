// engine_flags.hpp: the flags, and `load`, which checks them against the model and the
// memory budget and asks topology/memory_plan for the KV blocks.
#include "launch/cli/engine_flags.hpp"

#include <algorithm>
#include <filesystem>
#include <thread>

#include "launch/cli/commands.hpp"
#include "runtime/system/budget.hpp"
#include "runtime/system/units.hpp"
#include "runtime/text/vocab.hpp"
#include "topology/memory_plan.hpp"

namespace baton::cli {

result<cpu::isa> kernels_isa(const std::string& kernels) {
  if (kernels.empty()) {
    return cpu::best_isa();
  }
  auto k = cpu::parse_isa(kernels);
  if (!k) {
    return make_error("--kernels '%s': expected scalar, avx2 or avx512", kernels.c_str());
  }
  if (!cpu::isa_supported(*k)) {
    return make_error("--kernels %s: this CPU cannot run them", kernels.c_str());
  }
  return *k;
}

void engine_flags::add_to(CLI::App& cmd) {
  cmd.add_option("-m,--model", model, "GGUF model file (default: the demo model)");
  cmd.add_option("-t,--threads", threads, "CPU threads (default: the cores this process may use)");
  cmd.add_option("--kv-type", kv_type, "KV cache type: f16 or f32")->capture_default_str();
  cmd.add_option("--kernels", kernels, "Pin the CPU kernels: scalar, avx2 or avx512");
  cmd.add_flag("--no-repack", no_repack,
               "Read the weights from the file's pages as they are (llama.cpp's flag): no copy "
               "in anonymous memory (2 MiB pages, quantized weights repacked for AVX-512), slower "
               "kernels, same outputs");
  cmd.add_option("-c,--ctx-size", ctx_size, "Context size per sequence (default min(model, 4096))");
  cmd.add_option("-b,--batch-size", batch_size, "Prompt tokens per forward step")->capture_default_str();
  cmd.add_option("--stages", stages, "Pipeline stages in this process (layers split evenly)")
      ->capture_default_str();
  cmd.add_option("--memory-utilization,--gpu-memory-utilization", memory_utilization,
                 "Share of the memory budget (cgroup limit, else RAM) for weights + buffers + KV")
      ->capture_default_str();
  cmd.add_option("--kv-cache-memory", kv_cache_memory,
                 "KV cache size in bytes (2GiB, 512M, ...), instead of the utilization share");
  cmd.add_flag("-q,--quiet", quiet, "Do not log the budget");
}

result<std::optional<uint64_t>> engine_flags::kv_cache_bytes() const {
  if (kv_cache_memory.empty()) {
    return std::optional<uint64_t>();
  }
  auto b = parse_bytes(kv_cache_memory);
  if (!b) {
    return make_error("--kv-cache-memory '%s': %s", kv_cache_memory.c_str(),
                      b.err().message.c_str());
  }
  return std::optional<uint64_t>(*b);
}

result<std::chrono::milliseconds> engine_flags::stage_timeout_ms() const {
  auto d = parse_duration(stage_timeout);
  if (!d) {
    return make_error("--stage-timeout: %s", d.err().message.c_str());
  }
  return *d;
}

void engine_flags::add_topology_to(CLI::App& cmd) {
  cmd.add_option("--topology", topology,
                 "Topology file (TOML): stages, ranks, devices, layers, budgets; see baton plan");
  cmd.add_option("--device", device,
                 "Where the stages run without --topology: cpu, cuda:N, or cuda (each rank "
                 "its own GPU: cuda:<rank's index on its host>)")
      ->capture_default_str();
  cmd.add_flag("--nccl", nccl,
               "GPU stages on different ranks pass activations device to device over NCCL "
               "(experimental: not yet run on a multi-GPU host); without it they go through "
               "host memory over MPI");
  cmd.add_option("--stage-timeout", stage_timeout,
                 "A rank that answers no heartbeat for this long (\"30s\", \"500ms\") is "
                 "lost: fenced, and its stages replaced on a standby rank or the survivors")
      ->capture_default_str();
}


result<loaded> load(const engine_flags& f, const load_request& req) {
  const int32_t n_seq_max = req.n_seq_max;
  const bool with_engine = req.with_engine;
  loaded out;
  const std::string path = f.model.empty() ? demo_model_path() : f.model;
  const resource_budget budget = detect_budget();
  // a pipeline with a topology or a GPU device: the planner sizes every stage's budget on
  // its own device (pipeline_job), so the host's budget does not bound the weights or
  // the KV here (an engine, always on this CPU, still is)
  const bool planned = !with_engine && (!f.topology.empty() || f.device != "cpu");
  // before anything is read: a file larger than the whole share cannot fit, and parsing
  // it under a tight cgroup limit would end in the OOM killer instead of this message
  if (!planned) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    const double share = f.memory_utilization * static_cast<double>(budget.memory_bytes);
    if (!ec && f.kv_cache_memory.empty() && static_cast<double>(size) > share) {
      return make_error("%s: the model file (%s) is larger than memory_utilization %.2f of "
                        "the memory budget: %s cannot hold the weights (%s)",
                        path.c_str(), format_bytes(size).c_str(), f.memory_utilization,
                        describe(budget).c_str(), format_bytes(size).c_str());
    }
  }
  auto m = model::open(path);
  if (!m) {
    return m.err();
  }
  out.m = *m;
  auto v = load_vocab(out.m->file());
  if (!v) {
    return v.err();
  }
  auto t = tokenizer::create(std::move(*v));
  if (!t) {
    return t.err();
  }
  out.tok = std::make_shared<tokenizer>(std::move(*t));
  const auto& c = out.m->config();

  engine_options o;
  o.n_threads = f.threads > 0 ? f.threads : budget.threads;
  const auto kv_type = parse_kv_type(f.kv_type);
  if (!kv_type) {
    return make_error("--kv-type '%s': expected f16 or f32", f.kv_type.c_str());
  }
  o.kv_type = *kv_type;
  if (!f.kernels.empty()) {
    auto k = kernels_isa(f.kernels);
    if (!k) {
      return k.err();
    }
    o.kernels = *k;
  }
  o.repack = !f.no_repack;
  if (f.ctx_size < 0) {
    return make_error("--ctx-size (%lld) must be >= 0", static_cast<long long>(f.ctx_size));
  }
  o.n_ctx = f.ctx_size > 0 ? f.ctx_size : std::min<int64_t>(c.n_ctx_train, 4096);
  if (f.batch_size <= 0) {
    return make_error("--batch-size (%lld) must be > 0", static_cast<long long>(f.batch_size));
  }
  if (f.stages < 1 || f.stages > c.n_layer) {
    return make_error("--stages (%d) must be between 1 and the model's layer count (%lld)",
                      f.stages, static_cast<long long>(c.n_layer));
  }
  o.max_batch_tokens = req.batch_tokens > 0 ? req.batch_tokens : f.batch_size;
  if (req.block_size > 0) {
    o.block_size = req.block_size;
  }
  o.n_seq_max = n_seq_max;

  // KV from the memory budget, as vLLM sizes it: weights + buffers + KV within the share
  auto kv_explicit = f.kv_cache_bytes();
  if (!kv_explicit) {
    return kv_explicit.err();
  }
  process_memory_request want;
  want.kv_type = o.kv_type;
  want.block_size = o.block_size;
  want.n_ctx = o.n_ctx;
  want.batch_tokens = o.max_batch_tokens;
  want.n_seqs = n_seq_max;
  want.memory_utilization = f.memory_utilization;
  want.kv_cache_bytes = *kv_explicit;
  want.planned = planned;
  auto mem = plan_process_memory(*out.m, want, budget.memory_bytes);
  if (!mem) {
    return make_error("%s (%s; raise --memory-utilization or lower --ctx-size)",
                      mem.err().message.c_str(), describe(budget).c_str());
  }
  out.n_blocks = mem->n_blocks;  // planned: at most, the plan may give fewer
  out.n_threads = o.n_threads;
  out.opts = o;
  if (planned) {
    return out;
  }
  if (!f.quiet) {
    std::fprintf(stderr, "baton: %s; using %d threads (%s); KV cache %s (%d blocks of %d tokens)\n",
                 describe(budget).c_str(), o.n_threads,
                 f.threads > 0 ? "--threads" : "from the budget",
                 format_bytes(static_cast<uint64_t>(out.n_blocks) * mem->kv_bytes_per_block).c_str(),
                 out.n_blocks, o.block_size);
  }
  if (with_engine) {
    auto e = engine::create(out.m, o);
    if (!e) {
      return e.err();
    }
    out.eng = std::move(*e);
  }
  return out;
}

server_options server_options_for(const loaded& l, int32_t n_stages, serving_config s) {
  server_options so;
  so.n_stages = n_stages;
  so.n_threads = l.n_threads;
  so.kernels = l.opts.kernels;
  so.repack = l.opts.repack;
  s.n_ctx = l.opts.n_ctx;
  s.kv_type = l.opts.kv_type;
  s.n_blocks = l.n_blocks;
  so.serving = s;
  return so;
}

}  // namespace baton::cli
