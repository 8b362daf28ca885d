// `baton bench model`: prompt processing and generation speed of one sequence, as
// llama-bench measures them (-p tokens in one batch, then -n tokens one at a time),
// repeated -r times; medians are reported. With --limits the machine's limits
// (kernels/cpu/machine_limits) are measured first on as many threads, and decode is also
// stated as weight GB/s against the best read bandwidth, prefill as GOPS against the int8
// dot-product peak (quantized weights) or the f32 FMA peak (float weights).
// `baton bench limits` prints the limits alone.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kernels/cpu/machine_limits.hpp"
#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "runtime/system/budget.hpp"

namespace baton::cli {

namespace {

struct bench_model_options {
  engine_flags engine;
  int64_t n_prompt = 128;
  int64_t n_gen = 32;
  int reps = 5;
  bool json = false;
  bool limits = false;  ///< measure the machine's limits first and state shares of them
};

struct bench_limits_options {
  int threads = 0;      ///< 0: as many as the budget gives the engine
  std::string kernels;  ///< empty: the best this CPU runs
  bool json = false;
};

// -- the machine's limits ---------------------------------------------------------

/// The read buffer: cpu::default_read_bytes(), but at most an eighth of the memory budget,
/// so that the measurement never pushes out the model or another process.
size_t limits_read_bytes() {
  return static_cast<size_t>(std::min<uint64_t>(cpu::default_read_bytes(),
                                                detect_budget().memory_bytes / 8));
}

cpu::machine_limits measure_limits(int n_threads, cpu::isa v) {
  cpu::thread_pool pool(n_threads);
  cpu::limits_options o;
  o.v = v;
  o.read_bytes = limits_read_bytes();
  return cpu::measure_machine_limits(pool, o);
}

nlohmann::json limits_json(const cpu::machine_limits& m) {
  nlohmann::json reads = nlohmann::json::array();
  for (const auto& f : m.reads) {
    reads.push_back({{"scheme", cpu::read_scheme_name(f.scheme)}, {"gb_per_s", f.gb_per_s}});
  }
  return {{"kernels", std::string(cpu::isa_name(m.v))},
          {"threads", m.n_threads},
          {"read_bytes", m.read_bytes},
          {"reads", reads},
          {"read_gb_per_s", m.best_read.gb_per_s},
          {"read_scheme", cpu::read_scheme_name(m.best_read.scheme)},
          {"int8_gops_per_core", m.int8_gops_per_core},
          {"int8_gops", m.int8_gops},
          {"f32_gflops_per_core", m.f32_gflops_per_core},
          {"f32_gflops", m.f32_gflops},
          {"seconds", m.seconds}};
}

/// One line: the best read and the two peaks.
void print_limits_line(const cpu::machine_limits& m) {
  std::printf("limits  read %.1f GB/s (%s over %.2f GiB), int8 dot %.1f GOPS (%.1f a core), "
              "f32 FMA %.1f GFLOP/s (%.1f a core); %d thread%s, %s, measured in %.1f s\n",
              m.best_read.gb_per_s, cpu::read_scheme_name(m.best_read.scheme).c_str(),
              static_cast<double>(m.read_bytes) / (1 << 30), m.int8_gops, m.int8_gops_per_core,
              m.f32_gflops, m.f32_gflops_per_core, m.n_threads, m.n_threads == 1 ? "" : "s",
              std::string(cpu::isa_name(m.v)).c_str(), m.seconds);
}

int run_bench_limits(const bench_limits_options& o) {
  if (o.threads < 0 || o.threads > cpu::k_max_threads) {
    return fail("bench limits: -t (" + std::to_string(o.threads) + ") must be between 1 and " +
                std::to_string(cpu::k_max_threads) + ", or 0 for the cores this process may use");
  }
  const auto v = kernels_isa(o.kernels);
  if (!v) {
    return fail(v.err().message);
  }
  const int n_threads = o.threads > 0 ? o.threads : detect_budget().threads;
  const cpu::machine_limits m = measure_limits(n_threads, *v);
  if (o.json) {
    std::printf("%s\n", limits_json(m).dump(2).c_str());
    return exit_ok;
  }
  for (const auto& f : m.reads) {
    std::printf("read  %-20s %8.2f GB/s%s\n", cpu::read_scheme_name(f.scheme).c_str(),
                f.gb_per_s, f.gb_per_s == m.best_read.gb_per_s ? "  (best)" : "");
  }
  const char* plural = m.n_threads == 1 ? "" : "s";
  std::printf("int8 dot  %8.1f GOPS a core, %8.1f GOPS on %d thread%s (1 MAC = 2 ops)\n",
              m.int8_gops_per_core, m.int8_gops, m.n_threads, plural);
  std::printf("f32 FMA   %8.1f GFLOP/s a core, %8.1f GFLOP/s on %d thread%s\n",
              m.f32_gflops_per_core, m.f32_gflops, m.n_threads, plural);
  print_limits_line(m);
  return exit_ok;
}

// -- the model's work per token ----------------------------------------------------

/// What one sequence's steps read and compute, for stating speeds against the limits.
struct model_work {
  /// Weight bytes a decode step reads: every tensor but an untied token_embd (of which it
  /// reads one row); a tied token_embd is the output head, read whole. The KV cache read
  /// is left out (at -p 128 -n 32 on a 1B model it is well under 1% of the weights).
  double decode_bytes = 0;
  /// 2 x the weight elements of the layers' matmuls: their ops per prompt token.
  double layer_ops_per_token = 0;
  /// 2 x the head's elements: the head runs for the prompt's last row only.
  double head_ops_per_prompt = 0;
  /// Most of the matmul elements are in quantized types (int8 dot products), else float.
  bool quantized = false;
};

model_work work_of(const model& m) {
  const model_weights& w = m.weights();
  model_work k;
  k.decode_bytes = static_cast<double>(m.weight_bytes() - (w.output ? w.token_embd->n_bytes : 0));
  double quantized = 0, all = 0;
  for (const layer_weights& l : w.layers) {
    for (const tensor_info* t : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down}) {
      const auto n = static_cast<double>(t->n_elements());
      all += n;
      quantized += traits(t->type).quantized ? n : 0.0;
    }
  }
  k.layer_ops_per_token = 2.0 * all;
  k.head_ops_per_prompt = 2.0 * static_cast<double>(w.head()->n_elements());
  k.quantized = quantized * 2 >= all;
  return k;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench_model(bench_model_options o) {
  if (o.n_prompt < 1 || o.n_gen < 0 || o.reps < 1) {
    return fail("bench model: -p must be >= 1, -n >= 0, -r >= 1");
  }
  o.engine.batch_size = std::max(o.engine.batch_size, o.n_prompt);
  if (o.engine.ctx_size == 0) {
    o.engine.ctx_size = o.n_prompt + o.n_gen;
  }
  auto l = load(o.engine);
  if (!l) {
    return fail(l.err().message);
  }
  engine& eng = *l->eng;
  // with --limits: the limits first, then the read bandwidth again right before and after
  // each run's decode, on a pool of as many threads
  std::optional<cpu::machine_limits> limits;
  std::optional<cpu::thread_pool> read_pool;
  std::optional<cpu::read_meter> meter;
  if (o.limits) {
    limits = measure_limits(eng.options().n_threads, eng.options().kernels);
    read_pool.emplace(eng.options().n_threads);
    meter.emplace(*read_pool, eng.options().kernels, limits_read_bytes());
  }
  auto read_now = [&] { return cpu::best_of(meter->measure(1)).gb_per_s; };
  std::vector<double> read_next_to_tg;  // per run: the better of the reads before and after
  // tokens as llama-bench uses them: arbitrary ids, fixed here for repeatability
  std::vector<int32_t> prompt(static_cast<size_t>(o.n_prompt));
  for (size_t i = 0; i < prompt.size(); ++i) {
    prompt[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<size_t>(eng.config().n_vocab));
  }
  std::vector<double> pp, tg;
  using clk = std::chrono::steady_clock;
  for (int r = 0; r < o.reps + 1; ++r) {  // the first round warms up
    sequence seq;
    const auto t0 = clk::now();
    auto lg = eng.prefill(seq, prompt, o.n_prompt);
    if (!lg) {
      return fail(lg.err().message);
    }
    const double s_pp = std::chrono::duration<double>(clk::now() - t0).count();
    int32_t next = 1;
    const bool read_next = meter && r > 0 && o.n_gen > 0;  // as tg gets this run's figure
    const double read_before = read_next ? read_now() : 0.0;
    const auto t1 = clk::now();
    for (int64_t i = 0; i < o.n_gen; ++i) {
      feed_item item{&seq, std::span<const int32_t>(&next, 1), true};
      auto out = eng.feed(std::span<const feed_item>(&item, 1));
      if (!out) {
        return fail(out.err().message);
      }
      next = static_cast<int32_t>((next * 31 + 7) % eng.config().n_vocab);
    }
    const double s_tg = std::chrono::duration<double>(clk::now() - t1).count();
    if (read_next) {
      read_next_to_tg.push_back(std::max(read_before, read_now()));
    }
    eng.release(seq);
    if (r > 0) {
      pp.push_back(static_cast<double>(o.n_prompt) / s_pp);
      if (o.n_gen > 0) {
        tg.push_back(static_cast<double>(o.n_gen) / s_tg);
      }
    }
  }
  const double pp_med = median(pp);
  const double tg_med = tg.empty() ? 0.0 : median(tg);
  const std::string kernels(cpu::isa_name(eng.options().kernels));
  // prefill ops of one prompt: 2 x n_prompt x (the layers' matmul elements) + 2 x (the
  // head's elements), the head running for the last row alone; attention's own products
  // (~1% at -p 128) are left out. Decode: the weight bytes a step reads x tokens/s.
  const model_work work = work_of(*l->m);
  const double pp_gops = pp_med / static_cast<double>(o.n_prompt) *
                         (static_cast<double>(o.n_prompt) * work.layer_ops_per_token +
                          work.head_ops_per_prompt) / 1e9;
  const double tg_gb_per_s = tg_med * work.decode_bytes / 1e9;
  const char* peak_name = work.quantized ? "int8 dot" : "f32 FMA";
  const double peak = !limits ? 0.0 : work.quantized ? limits->int8_gops : limits->f32_gflops;
  const double pp_share = peak > 0 ? pp_gops / peak : 0.0;
  // against the best read of the whole run (the limits' and every one next to a decode),
  // and each run's decode against the read measured next to it (median of the runs)
  double best_read = limits ? limits->best_read.gb_per_s : 0.0;
  std::vector<double> tg_shares_next;
  for (size_t i = 0; i < read_next_to_tg.size(); ++i) {
    best_read = std::max(best_read, read_next_to_tg[i]);
    if (read_next_to_tg[i] > 0) {
      tg_shares_next.push_back(tg[i] * work.decode_bytes / 1e9 / read_next_to_tg[i]);
    }
  }
  const double tg_share = best_read > 0 ? tg_gb_per_s / best_read : 0.0;
  const double tg_share_next = tg_shares_next.empty() ? 0.0 : median(tg_shares_next);
  if (o.json) {
    nlohmann::json j = {{"model", l->m->file().path()},
                        {"threads", eng.options().n_threads},
                        {"kernels", kernels},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"reps", o.reps},
                        {"prompt_tokens_per_s", pp},
                        {"gen_tokens_per_s", tg},
                        {"prompt_tokens_per_s_median", pp_med},
                        {"gen_tokens_per_s_median", tg_med},
                        {"weight_bytes", l->m->weight_bytes()}};
    if (limits) {
      j["limits"] = limits_json(*limits);
      j["decode_bytes_per_token"] = work.decode_bytes;
      j["gen_gb_per_s"] = tg_gb_per_s;
      j["best_read_gb_per_s"] = best_read;
      j["gen_share_of_read"] = tg_share;
      j["read_gb_per_s_next_to_gen"] = read_next_to_tg;
      j["gen_share_of_read_next_to_it"] = tg_share_next;
      j["prompt_ops_per_token"] = work.layer_ops_per_token;
      j["prompt_head_ops"] = work.head_ops_per_prompt;
      j["prompt_gops"] = pp_gops;
      j["prompt_peak"] = work.quantized ? "int8_gops" : "f32_gflops";
      j["prompt_share_of_peak"] = pp_share;
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("model %s, %d threads, kernels %s, %d runs (medians)\n",
                l->m->file().path().c_str(), eng.options().n_threads, kernels.c_str(), o.reps);
    if (!limits) {
      std::printf("pp%lld  %10.2f tokens/s\n", static_cast<long long>(o.n_prompt), pp_med);
      std::printf("tg%lld  %10.2f tokens/s\n", static_cast<long long>(o.n_gen), tg_med);
      return exit_ok;
    }
    print_limits_line(*limits);
    std::printf("pp%-5lld %10.2f tokens/s %8.1f GOPS    %5.1f%% of the %s peak\n",
                static_cast<long long>(o.n_prompt), pp_med, pp_gops, 100 * pp_share, peak_name);
    std::printf("tg%-5lld %10.2f tokens/s %8.2f GB/s    %5.1f%% of the run's best read "
                "(%.1f GB/s); %.1f%% of the read measured next to each run (median)\n",
                static_cast<long long>(o.n_gen), tg_med, tg_gb_per_s, 100 * tg_share, best_read,
                100 * tg_share_next);
  }
  return exit_ok;
}

}  // namespace

void add_bench_command(CLI::App& app, int& status) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto o = std::make_shared<bench_model_options>();
  auto* cmd = bench->add_subcommand("model", "Prefill and decode tokens/s of one sequence");
  o->engine.add_to(*cmd);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (one batch)")->capture_default_str();
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens (one at a time)")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Runs (medians reported)")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_flag("--limits", o->limits,
                "Measure the machine's read bandwidth and compute peaks first (a few seconds, "
                "same threads) and state decode and prefill as shares of them");
  cmd->callback([o, &status] { status = run_bench_model(*o); });
  auto lo = std::make_shared<bench_limits_options>();
  auto* lim = bench->add_subcommand(
      "limits", "This machine's read bandwidth (best of several schemes) and int8/f32 peaks");
  lim->add_option("-t,--threads", lo->threads,
                  "CPU threads (default: the cores this process may use)");
  lim->add_option("--kernels", lo->kernels, "Vector width: scalar, avx2 or avx512");
  lim->add_flag("--json", lo->json, "Print JSON");
  lim->callback([lo, &status] { status = run_bench_limits(*lo); });
  add_bench_batch_command(*bench, status);
  add_bench_serve_command(*bench, status);
  add_bench_calibrate_command(*bench, status);
  add_bench_link_command(*bench, status);
  add_bench_grammar_command(*bench, status);
}

}  // namespace baton::cli
