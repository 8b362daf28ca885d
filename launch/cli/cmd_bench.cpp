// `baton bench model`: prompt processing and generation speed of one sequence, as
// llama-bench measures them (-p tokens in one batch, then -n tokens one at a time),
// repeated -r times; medians are reported.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"

namespace baton::cli {

namespace {

struct bench_model_options {
  engine_flags engine;
  int64_t n_prompt = 128;
  int64_t n_gen = 32;
  int reps = 5;
  bool json = false;
};

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
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("model %s, %d threads, kernels %s, %d runs (medians)\n",
                l->m->file().path().c_str(), eng.options().n_threads, kernels.c_str(), o.reps);
    std::printf("pp%lld  %10.2f tokens/s\n", static_cast<long long>(o.n_prompt), pp_med);
    std::printf("tg%lld  %10.2f tokens/s\n", static_cast<long long>(o.n_gen), tg_med);
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
  cmd->callback([o, &status] { status = run_bench_model(*o); });
  add_bench_batch_command(*bench, status);
  add_bench_serve_command(*bench, status);
  add_bench_calibrate_command(*bench, status);
  add_bench_link_command(*bench, status);
  add_bench_grammar_command(*bench, status);
}

}  // namespace baton::cli
