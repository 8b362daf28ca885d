// `baton run`: one prompt, generated in this process and streamed to stdout as it comes
// (like `ollama run` / llama-cli). Prompt and generation speed go to stderr at the end.
#include <chrono>
#include <cstdio>

#include "launch/commands.hpp"
#include "actors/local_server.hpp"
#include "launch/engine_flags.hpp"
#include "launch/pipeline_job.hpp"
#include "launch/signals.hpp"
#include "runtime/chat_template.hpp"
#include "runtime/sampler.hpp"
#include "runtime/stop_strings.hpp"

namespace baton::cli {

namespace {

struct run_options {
  engine_flags engine;
  std::string prompt;
  std::string system;
  bool chat = false;
  int64_t n_predict = 128;
  sampling_params sampling;
  std::vector<std::string> stop;
  bool no_stats = false;
};

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// The same generation through the actor pipeline: --stages shards in this process, or
/// the stages spread over the ranks of an MPI job; a router and an admission actor on
/// rank 0. Tokens equal the single-stage path's for the same seed.
int run_pipeline(const run_options& o, loaded& l, const std::vector<int32_t>& prompt,
                 mpi_session& mpi, const std::optional<topology>& topo) {
  server_options so;
  so.n_stages = o.engine.stages;
  so.n_threads = l.n_threads;
  so.n_ctx = l.opts.n_ctx;
  so.n_blocks = l.n_blocks;
  so.kv_type = l.opts.kv_type;
  so.kernels = l.opts.kernels;
  so.max_num_batched_tokens = static_cast<int32_t>(l.opts.max_batch_tokens);
  auto job = pipeline_job::start(mpi, o.engine, l, so, topo);
  if (!job) {
    return mpi.rank() == 0 ? fail(job.err().message) : exit_bad_input;
  }
  if (!(*job)->head()) {
    (*job)->serve_until_shutdown();
    return exit_ok;
  }
  local_server* srv = &(*job)->server();
  gen_request r;
  r.prompt = prompt;
  r.max_tokens = static_cast<int32_t>(std::max<int64_t>(o.n_predict, 1));
  r.sampling = o.sampling;
  r.stop = o.stop;
  const auto t0 = clock_type::now();
  const uint64_t id = 1;
  r.id = id;
  // Ctrl-C (or SIGTERM from mpirun): the request ends with a final "cancelled" event
  on_stop_signal([srv, id] { srv->cancel(id); });
  auto stream = srv->submit(std::move(r));
  double t_first = 0;
  int32_t n_gen = 0;
  for (;;) {
    auto e = stream->next(std::chrono::minutes(30));
    if (!e) {
      return fail("no answer from the pipeline within 30 minutes");
    }
    if (e->token >= 0 && n_gen++ == 0) {
      t_first = seconds_since(t0);
    }
    std::fwrite(e->text.data(), 1, e->text.size(), stdout);
    std::fflush(stdout);
    if (!e->finish_reason.empty()) {
      if (e->finish_reason == "error") {
        std::printf("\n");
        on_stop_signal({});
        return fail(e->error);
      }
      if (e->finish_reason == "cancelled") {
        std::fprintf(stderr, "\nbaton: stopped by a signal\n");
      }
      break;
    }
  }
  on_stop_signal({});
  std::printf("\n");
  const double t_all = seconds_since(t0);
  if (!o.no_stats) {
    std::fprintf(stderr,
                 "\nprompt: %zu tokens in %.3f s (%.2f tokens/s); generation: %d tokens in %.3f "
                 "s (%.2f tokens/s); %d stages (actors), %d threads, kernels %s\n",
                 prompt.size(), t_first, static_cast<double>(prompt.size()) / t_first, n_gen,
                 t_all - t_first,
                 n_gen > 1 ? static_cast<double>(n_gen - 1) / (t_all - t_first) : 0.0,
                 srv->options().n_stages, l.n_threads,
                 std::string(cpu::isa_name(l.opts.kernels)).c_str());
    if (mpi.size() > 1) {
      const auto ts = (*job)->transfer_stats();
      const auto rs = srv->stats();
      std::fprintf(stderr,
                   "pipeline: %d ranks; rank 0 sent %llu activation bytes in %llu transfers "
                   "(%.1f us each); control plane: %llu CAF bytes over %llu remote steps "
                   "(%.0f bytes per step)\n",
                   mpi.size(), static_cast<unsigned long long>(ts.bytes_sent),
                   static_cast<unsigned long long>(ts.sends),
                   ts.sends ? ts.send_us / static_cast<double>(ts.sends) : 0.0,
                   static_cast<unsigned long long>(rs.control_bytes),
                   static_cast<unsigned long long>(rs.remote_steps),
                   rs.remote_steps ? static_cast<double>(rs.control_bytes) /
                                         static_cast<double>(rs.remote_steps)
                                   : 0.0);
    }
  }
  return exit_ok;
}

int run_run(run_options o) {
  if (o.n_predict < 0) {
    return fail("-n (" + std::to_string(o.n_predict) + ") must be >= 0");
  }
  if (auto v = o.sampling.validate(); !v) {
    return fail(v.err().message);
  }
  auto mpi = mpi_session::init();
  if (!mpi) {
    return fail(mpi.err().message);
  }
  auto topo = read_topology(**mpi, o.engine);
  if (!topo) {
    return (*mpi)->rank() == 0 ? fail(topo.err().message) : exit_bad_input;
  }
  const bool pipeline = o.engine.stages > 1 || (*mpi)->size() > 1 || topo->has_value();
  if ((*mpi)->rank() != 0) {
    o.engine.quiet = true;
  }
  auto l = load(o.engine, 1, !pipeline);
  if (auto ok = (*mpi)->agree(l ? result<void>() : result<void>(l.err())); !ok) {
    return (*mpi)->rank() == 0 ? fail(ok.err().message) : exit_bad_input;
  }
  tokenizer& tok = *l->tok;

  std::string text = o.prompt;
  if (o.chat) {
    std::vector<chat_message> messages;
    if (!o.system.empty()) {
      messages.push_back({"system", o.system});
    }
    messages.push_back({"user", o.prompt});
    auto t = apply_chat_template(tok.chat_template(), messages, true);
    if (!t) {
      return fail(t.err().message);
    }
    text = std::move(*t);
  } else if (!o.system.empty()) {
    return fail("--system needs --chat");
  }
  const auto prompt = tok.encode(text, true, true);
  const int64_t n_ctx = l->opts.n_ctx;
  if (static_cast<int64_t>(prompt.size()) + o.n_predict > n_ctx) {
    return fail("prompt (" + std::to_string(prompt.size()) + " tokens) + -n (" +
                std::to_string(o.n_predict) + ") exceeds the context size (" +
                std::to_string(n_ctx) + " tokens; raise -c up to the model's " +
                std::to_string(l->m->config().n_ctx_train) + ")");
  }
  if (pipeline) {
    const int status = run_pipeline(o, *l, prompt, **mpi, *topo);
    (*mpi)->set_exit_status(status);
    return status;
  }
  engine& eng = *l->eng;

  sequence seq;
  const auto t0 = clock_type::now();
  auto logits = eng.prefill(seq, prompt);
  if (!logits) {
    return fail(logits.err().message);
  }
  const double t_prompt = seconds_since(t0);

  sampler smp(o.sampling);
  stream_decoder dec(tok);
  stop_strings stops(o.stop);
  std::vector<int32_t> generated;
  const auto t1 = clock_type::now();
  std::vector<float> cur = std::move(*logits);
  for (int64_t i = 0; i < o.n_predict; ++i) {
    const int32_t id = smp.sample(cur, seq.tokens);
    generated.push_back(id);
    if (tok.is_eog(id)) {
      break;
    }
    auto piece = dec.push(id);
    if (!piece) {
      return fail(piece.err().message);
    }
    const std::string shown = stops.push(*piece);
    std::fwrite(shown.data(), 1, shown.size(), stdout);
    std::fflush(stdout);
    if (stops.stopped() || i + 1 == o.n_predict) {
      break;
    }
    feed_item item{&seq, std::span<const int32_t>(&generated.back(), 1), true};
    auto next = eng.feed(std::span<const feed_item>(&item, 1));
    if (!next) {
      return fail(next.err().message);
    }
    cur = std::move(next->front());
  }
  if (!stops.stopped()) {
    const std::string rest = stops.push(dec.flush()) + stops.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
  const double t_gen = seconds_since(t1);
  if (!o.no_stats) {
    std::fprintf(stderr,
                 "\nprompt: %zu tokens in %.3f s (%.2f tokens/s); generation: %zu tokens in "
                 "%.3f s (%.2f tokens/s); %d threads, kernels %s, KV %s\n",
                 prompt.size(), t_prompt, static_cast<double>(prompt.size()) / t_prompt,
                 generated.size(), t_gen,
                 generated.size() > 1 ? static_cast<double>(generated.size() - 1) / t_gen : 0.0,
                 eng.options().n_threads, std::string(cpu::isa_name(eng.options().kernels)).c_str(),
                 std::string(traits(eng.options().kv_type).name).c_str());
  }
  return exit_ok;
}

}  // namespace

void add_run_command(CLI::App& app, int& status) {
  auto o = std::make_shared<run_options>();
  auto* cmd = app.add_subcommand("run", "Generate text for one prompt, streamed to stdout");
  o->engine.add_to(*cmd);
  o->engine.add_topology_to(*cmd);
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_flag("--chat", o->chat, "Apply the model's chat template (stops at <|eot_id|>)");
  cmd->add_option("--system", o->system, "System message (with --chat)");
  cmd->add_option("--temp,--temperature", o->sampling.temperature, "Temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sampling.penalty_last_n, "Tokens the penalties see")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "Presence penalty");
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "Frequency penalty");
  cmd->add_option("-s,--seed", o->sampling.seed, "Random seed")->capture_default_str();
  cmd->add_option("--stop", o->stop, "Stop string (repeatable)");
  cmd->add_flag("--no-stats", o->no_stats, "Do not print speed on stderr");
  cmd->callback([o, &status] { status = run_run(*o); });
}

}  // namespace baton::cli
