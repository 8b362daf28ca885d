// `baton run`: one prompt, generated through the actor pipeline (one stage in this
// process by default, as every other topology: launch/job/start_job) and streamed to
// stdout as it comes (like `ollama run` / llama-cli); --prompt-file submits one request
// per line at once. Prompt and generation speed go to stderr at the end.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "launch/cli/commands.hpp"
#include "actors/local_server.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/job/start_job.hpp"
#include "launch/job/signals.hpp"
#include "runtime/text/chat_prompt.hpp"

namespace baton::cli {

namespace {

struct run_options {
  engine_flags engine;
  std::string prompt;
  std::string system;
  bool chat = false;
  bool special_in_chat = false;  ///< --allow-special-tokens-in-chat: parse them in content
  int64_t n_predict = 128;
  sampling_params sampling;
  std::vector<std::string> stop;
  bool no_stats = false;
  std::string prompt_file;   ///< one prompt per line, all submitted at once
  bool json = false;         ///< per request: tokens, their logits and logprobs (JSON lines)
  bool timings = false;      ///< with --json: every stage's step spans, transfer counters
};

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// The generation through the actor pipeline, as every topology runs it: --stages shards
/// in this process (one by default), or the stages spread over the ranks of an MPI job; a
/// router and an admission actor on rank 0.
int run_many(const run_options& o, local_server& srv, mpi_session& mpi, pipeline_job& job,
             const std::vector<std::vector<int32_t>>& prompts);

int run_pipeline(const run_options& o, opened_job& j,
                 const std::vector<std::vector<int32_t>>& prompts) {
  const loaded& l = j.l;
  mpi_session& mpi = *j.mpi;
  const std::vector<int32_t>& prompt = prompts.front();
  serving_config sv;
  sv.max_num_batched_tokens = static_cast<int32_t>(l.opts.max_batch_tokens);  // -b
  auto job = start_job(j, o.engine, server_options_for(l, o.engine.stages, sv));
  if (!job) {
    return fail_agreed(mpi, job.err().message);
  }
  if (!*job) {
    return exit_ok;  // a rank other than the head: the head has ended the job
  }
  local_server* srv = &(*job)->server();
  if (!o.prompt_file.empty()) {
    return run_many(o, *srv, mpi, **job, prompts);
  }
  if (o.n_predict == 0) {
    std::printf("\n");  // nothing to generate (a request asks for one token at least)
    return exit_ok;
  }
  gen_request r;
  r.prompt = prompt;
  r.max_tokens = static_cast<int32_t>(o.n_predict);
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
    if (e->finish != finish_reason::none) {
      if (e->finish == finish_reason::error) {
        std::printf("\n");
        on_stop_signal({});
        return fail(e->error);
      }
      if (e->finish == finish_reason::cancelled) {
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
                   "(%.1f us each, %llu device to device); control plane: %llu CAF bytes over "
                   "%llu remote steps (%.0f bytes per step)\n",
                   mpi.size(), static_cast<unsigned long long>(ts.bytes_sent),
                   static_cast<unsigned long long>(ts.sends),
                   ts.sends ? ts.send_us / static_cast<double>(ts.sends) : 0.0,
                   static_cast<unsigned long long>(ts.device_sends),
                   static_cast<unsigned long long>(rs.control_bytes),
                   static_cast<unsigned long long>(rs.remote_steps),
                   rs.remote_steps ? static_cast<double>(rs.control_bytes) /
                                         static_cast<double>(rs.remote_steps)
                                   : 0.0);
    }
  }
  return exit_ok;
}

/// --prompt-file: every line a request, all in flight at once (continuous batching);
/// with --json one line per request with its tokens and each token's exact logit and
/// logprob, then a summary (what the mpi tests compare between topologies).
int run_many(const run_options& o, local_server& srv, mpi_session& mpi, pipeline_job& job,
             const std::vector<std::vector<int32_t>>& prompts) {
  struct outcome {
    std::vector<int32_t> tokens;
    std::vector<float> logits, logprobs;
    std::string text, error;
    finish_reason finish = finish_reason::none;
  };
  std::vector<outcome> out(prompts.size());
  std::vector<std::shared_ptr<event_stream>> streams;
  for (size_t i = 0; i < prompts.size(); ++i) {
    gen_request r;
    r.id = i + 1;
    r.prompt = prompts[i];
    r.max_tokens = static_cast<int32_t>(std::max<int64_t>(o.n_predict, 1));
    r.sampling = o.sampling;
    r.sampling.logprobs = true;  // the JSON lines report them
    r.stop = o.stop;
    streams.push_back(srv.submit(std::move(r)));
  }
  on_stop_signal([&srv, n = prompts.size()] {
    for (size_t i = 0; i < n; ++i) {
      srv.cancel(i + 1);
    }
  });
  const auto t0 = clock_type::now();
  int64_t n_tokens = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    for (;;) {
      auto e = streams[i]->next(std::chrono::minutes(30));
      if (!e) {
        out[i].finish = finish_reason::error;
        out[i].error = "no answer from the pipeline within 30 minutes";
        break;
      }
      if (e->token >= 0) {
        out[i].tokens.push_back(e->token);
        out[i].logits.push_back(e->logit);
        out[i].logprobs.push_back(e->logprob);
        ++n_tokens;
      }
      out[i].text += e->text;
      if (e->finish != finish_reason::none) {
        out[i].finish = e->finish;
        out[i].error = e->error;
        break;
      }
    }
  }
  on_stop_signal({});
  const double t_all = seconds_since(t0);
  int status = exit_ok;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].finish == finish_reason::error) {
      std::fprintf(stderr, "baton: request %zu: %s\n", i, out[i].error.c_str());
      status = exit_failure;
    }
    if (o.json) {
      nlohmann::json j = {{"index", i},           {"tokens", out[i].tokens},
                          {"logits", out[i].logits}, {"logprobs", out[i].logprobs},
                          {"text", out[i].text},  {"finish_reason", to_string(out[i].finish)}};
      if (!out[i].error.empty()) {
        j["error"] = out[i].error;
      }
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("[%zu] %s\n", i, out[i].text.c_str());
    }
  }
  if (o.json && o.timings) {
    const auto rs = srv.stats();
    const auto ts = job.transfer_stats();
    nlohmann::json spans = nlohmann::json::array();
    for (int32_t s = 0; s < srv.options().n_stages; ++s) {
      for (const auto& t : srv.timings(s)) {
        spans.push_back({t.stage, t.step_id, t.begin_us, t.end_us});
      }
    }
    nlohmann::json summary = {{"ranks", mpi.size()},
                              {"stages", srv.options().n_stages},
                              {"steps", rs.steps},
                              {"remote_steps", rs.remote_steps},
                              {"control_bytes", rs.control_bytes},
                              {"activation_bytes_sent", ts.bytes_sent},
                              {"transfers", ts.sends},
                              {"transfer_us", ts.send_us},
                              {"seconds", t_all},
                              {"tokens", n_tokens},
                              {"spans", spans}};
    std::printf("%s\n", nlohmann::json{{"summary", summary}}.dump().c_str());
  }
  std::fflush(stdout);
  return status;
}

int run_run(run_options o) {
  if (o.n_predict < 0) {
    return fail("-n (" + std::to_string(o.n_predict) + ") must be >= 0");
  }
  if (auto v = o.sampling.validate(); !v) {
    return fail(v.err().message);
  }
  std::vector<std::string> texts;
  auto j = open_job(o.engine, [&](const mpi_session&,
                                  const std::optional<topology>&) -> result<load_request> {
    if (!o.prompt_file.empty()) {
      std::ifstream in(o.prompt_file);
      if (!in) {
        return make_error("--prompt-file %s: cannot read it", o.prompt_file.c_str());
      }
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) {
          texts.push_back(line);
        }
      }
      if (texts.empty()) {
        return make_error("--prompt-file %s: no prompts (one per line)", o.prompt_file.c_str());
      }
    } else if (o.prompt.empty()) {
      return make_error("give a prompt with -p TEXT or --prompt-file FILE");
    } else {
      texts.push_back(o.prompt);
    }
    if (!o.chat && !o.system.empty()) {
      return make_error("--system needs --chat");
    }
    if (!o.chat && o.special_in_chat) {
      return make_error("--allow-special-tokens-in-chat needs --chat");
    }
    return load_request{static_cast<int32_t>(texts.size()), false};
  });
  if (j.status != exit_ok) {
    return j.status;
  }
  tokenizer& tok = *j.l.tok;

  std::vector<std::vector<int32_t>> prompts;
  for (const std::string& one : texts) {
    if (o.chat) {
      std::vector<chat_message> messages;
      if (!o.system.empty()) {
        messages.push_back({"system", o.system});
      }
      messages.push_back({"user", one});
      auto ids = encode_chat(tok, messages, true, o.special_in_chat);
      if (!ids) {
        return fail(ids.err().message);
      }
      prompts.push_back(std::move(*ids));
    } else {
      prompts.push_back(tok.encode(one, true, true));
    }
    const auto& prompt = prompts.back();
    const int64_t n_ctx = j.l.opts.n_ctx;
    if (static_cast<int64_t>(prompt.size()) + o.n_predict > n_ctx) {
      return fail("prompt (" + std::to_string(prompt.size()) + " tokens) + -n (" +
                  std::to_string(o.n_predict) + ") exceeds the context size (" +
                  std::to_string(n_ctx) + " tokens; raise -c up to the model's " +
                  std::to_string(j.l.m->config().n_ctx_train) + ")");
    }
  }
  const int status = run_pipeline(o, j, prompts);
  j.mpi->set_exit_status(status);
  return status;
}

}  // namespace

void add_run_command(CLI::App& app, int& status) {
  auto o = std::make_shared<run_options>();
  auto* cmd = app.add_subcommand("run", "Generate text for one prompt, streamed to stdout");
  o->engine.add_to(*cmd);
  o->engine.add_topology_to(*cmd);
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("--prompt-file", o->prompt_file,
                  "One prompt per line, all generated at once (continuous batching)");
  cmd->add_flag("--json", o->json, "With --prompt-file: one JSON line per request (tokens, "
                "logits, logprobs)");
  cmd->add_flag("--timings", o->timings, "With --json: a summary line with every stage's "
                "step spans and the transfer counters");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_flag("--chat", o->chat, "Apply the model's chat template (stops at <|eot_id|>)");
  cmd->add_option("--system", o->system, "System message (with --chat)");
  cmd->add_flag("--allow-special-tokens-in-chat", o->special_in_chat,
                "With --chat: read special-token text in the messages (\"<|eot_id|>\") as "
                "control tokens, as llama.cpp does (only for trusted input: otherwise a "
                "message could forge a turn of another role)");
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
