// `baton bench batch`: what concurrent requests get out of the actor pipeline, measured
// as llama-batched-bench measures llama.cpp (bench/llama_cpp_batched.mjs is the peer and
// uses the same definitions), and what the actors themselves cost per decode step.
//
// For each stream count C of --streams, C requests (distinct synthetic prompts of -p
// tokens, -n generated tokens each with ignore_eos and greedy sampling) are submitted
// at once to a local_server sized for all of them (max_num_seqs >= C, KV blocks for
// every token, prefix caching off so no run reuses another's prompt). Per run:
//   ttft_i    submit → request i's first token;
//   t_first   max ttft_i: from here on every request is decoding;
//   t_end     submit → the last request's final event;
//   decode    C × (n − 1) tokens / (t_end − t_first)   (llama-batched-bench's S_TG)
//   output    C × n tokens / t_end                     (end to end, prefill included)
// and medians over -r runs are reported, after one unmeasured warm-up round.
//
// Actor overhead: one stream through the local_server against the same model fed one
// token at a time through `baton::engine` (the kernels alone, greedy argmax on the
// logits as the shard samples), interleaved run by run; the difference of the per-token
// latencies is the actors' share of a batch-1 step. With one stage the shard's own step
// timings split it in two: the idle time between one step's end and the next step's
// begin is the router round trip (result → scheduler → next step); the rest is time lost
// inside the step, to whatever else the actor system runs on the same cores while the
// kernels compute.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <atomic>
#include <optional>
#include <thread>

#include "actors/local_server.hpp"
#include "launch/cli/batch_run.hpp"
#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/job/start_job.hpp"
#include "runtime/grammar/json_schema.hpp"
#include "runtime/sim/pipeline_sim.hpp"
#include "runtime/system/files.hpp"
#include "topology/memory_plan.hpp"

namespace baton::cli {

namespace {

struct bench_batch_options {
  bench_batch_options() { engine.batch_size = 2048; }  // a whole C × p prefill in one step

  engine_flags engine;
  std::vector<int32_t> streams{1, 4, 16, 64};
  int32_t n_prompt = 32;
  int32_t n_gen = 32;
  int reps = 3;
  int32_t micro_batches = 0;
  bool no_batch = false;
  bool no_overhead = false;
  bool json = false;
  int32_t n_blocks = 0;  ///< KV blocks of the pool (0: every stream's whole context)
  std::string json_schema_file;  ///< every request's output constrained by this schema
  std::string json_schema;       ///< its text
};

server_options make_server_options(const bench_batch_options& o, const loaded& l,
                                   int32_t n_streams) {
  serving_config sv;
  sv.micro_batches = o.micro_batches;
  sv.max_num_seqs = std::max(n_streams, 1);
  sv.max_num_batched_tokens =
      static_cast<int32_t>(std::max<int64_t>(l.opts.max_batch_tokens, n_streams));
  sv.enable_prefix_caching = false;
  server_options so = server_options_for(l, o.engine.stages, sv);
  so.serving.n_blocks = o.n_blocks > 0 ? o.n_blocks
                                       : kv_blocks_for_requests(n_streams, o.n_prompt + o.n_gen,
                                                                sv.block_size);
  return so;
}

struct batch_result {
  int32_t n_streams = 0;
  std::vector<double> decode, output, ttft_mean, t_first, t_end;
  double transfer_us = 0;     ///< mean time of one activation transfer (MPI jobs)
  uint64_t transfers = 0;
  std::vector<std::string> token_digests;  ///< one per repetition (hex)
  int32_t kv_blocks = 0;                   ///< the KV pool
  // the simulator's fields, one per repetition (stage_busy: [repetition][stage])
  std::vector<double> ttft_p50, ttft_p99, tpot_mean, tpot_p50, tpot_p99, kv_usage;
  std::vector<double> preemptions;
  std::vector<std::vector<double>> stage_busy;
};

/// Each stage's median busy share over the repetitions.
std::vector<double> median_per_stage(const std::vector<std::vector<double>>& reps) {
  std::vector<double> out;
  for (size_t k = 0; !reps.empty() && k < reps.front().size(); ++k) {
    std::vector<double> v;
    for (const auto& r : reps) {
      v.push_back(k < r.size() ? r[k] : 0.0);
    }
    out.push_back(median(v));
  }
  return out;
}

result<batch_result> bench_streams(const bench_batch_options& o, opened_job& j,
                                   int32_t n_streams, uint64_t& round) {
  const loaded& l = j.l;
  const server_options so = make_server_options(o, l, n_streams);
  auto job = start_job(j, o.engine, so);
  if (!job) {
    return job.err();
  }
  batch_result br;
  br.n_streams = n_streams;
  br.kv_blocks = so.serving.n_blocks;
  if (!*job) {
    return br;  // a rank other than the head: the head has ended this round's job
  }
  local_server* srv = &(*job)->server();
  const int64_t n_vocab = l.m->config().n_vocab;
  // warm-up: weights paged in, scratch grown to the C × p prefill, C-wide decode
  if (auto w = run_batch(*srv, n_streams, o.n_prompt, 2, round++, n_vocab, o.json_schema); !w) {
    return w.err();
  }
  const transport_stats before = (*job)->transfer_stats();
  for (int r = 0; r < o.reps; ++r) {
    auto b = run_batch(*srv, n_streams, o.n_prompt, o.n_gen, round++, n_vocab, o.json_schema);
    if (!b) {
      return b.err();
    }
    br.decode.push_back(b->decode_tokens_per_s);
    br.output.push_back(b->output_tokens_per_s);
    br.ttft_mean.push_back(b->ttft_mean_s);
    br.t_first.push_back(b->t_first_s);
    br.t_end.push_back(b->t_end_s);
    br.ttft_p50.push_back(b->ttft_s.p50);
    br.ttft_p99.push_back(b->ttft_s.p99);
    br.tpot_mean.push_back(b->tpot_s.mean);
    br.tpot_p50.push_back(b->tpot_s.p50);
    br.tpot_p99.push_back(b->tpot_s.p99);
    br.kv_usage.push_back(b->kv_usage_mean);
    br.preemptions.push_back(static_cast<double>(b->preemptions));
    br.stage_busy.push_back(b->stage_busy);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(b->token_digest));
    br.token_digests.emplace_back(hex);
    if (!o.json) {
      std::fprintf(stderr, "  streams %3d run %d: decode %8.2f t/s, output %8.2f t/s, "
                           "TTFT mean %7.1f ms, all first %7.1f ms, end %7.1f ms\n",
                   n_streams, r + 1, b->decode_tokens_per_s, b->output_tokens_per_s,
                   b->ttft_mean_s * 1e3, b->t_first_s * 1e3, b->t_end_s * 1e3);
    }
  }
  const transport_stats after = (*job)->transfer_stats();
  br.transfers = after.sends - before.sends;
  br.transfer_us = br.transfers ? (after.send_us - before.send_us) /
                                      static_cast<double>(br.transfers)
                                : 0.0;
  return br;
}

struct overhead_result {
  std::vector<double> engine_ms, server_ms;  ///< per decode token, batch 1
  std::vector<double> gap_ms, step_ms;       ///< one stage: shard idle between steps, busy
};

/// Per-token decode latency of the engine alone: greedy, one token per feed().
result<double> engine_ms_per_token(engine& eng, int32_t n_prompt, int32_t n_gen,
                                   uint64_t round) {
  sequence seq;
  const auto prompt = make_prompt(n_prompt, round * 100003, eng.config().n_vocab);
  auto lg = eng.prefill(seq, prompt);
  if (!lg) {
    return lg.err();
  }
  int32_t next = sampler::greedy(*lg);
  const auto t0 = clock_type::now();
  for (int32_t i = 1; i < n_gen; ++i) {  // n − 1 steps, as the server's decode phase
    feed_item item{&seq, std::span<const int32_t>(&next, 1), true};
    auto out = eng.feed(std::span<const feed_item>(&item, 1));
    if (!out) {
      return out.err();
    }
    next = sampler::greedy(out->front());
  }
  const double s = seconds(t0, clock_type::now());
  eng.release(seq);
  return s * 1e3 / (n_gen - 1);
}

result<overhead_result> bench_overhead(const bench_batch_options& o, loaded& l,
                                       uint64_t& round) {
  auto srv = local_server::create(l.m, l.tok, make_server_options(o, l, 1));
  if (!srv) {
    return srv.err();
  }
  const int64_t n_vocab = l.m->config().n_vocab;
  const int32_t last_stage = o.engine.stages - 1;
  overhead_result res;
  for (int r = 0; r < o.reps + 1; ++r) {  // the first round warms both up
    auto e = engine_ms_per_token(*l.eng, o.n_prompt, o.n_gen, round++);
    if (!e) {
      return e.err();
    }
    auto b = run_batch(**srv, 1, o.n_prompt, o.n_gen, round++, n_vocab, o.json_schema);
    if (!b) {
      return b.err();
    }
    const double server_ms = (b->t_end_s - b->t_first_s) * 1e3 / (o.n_gen - 1);
    // the shard's steps of this run, the prefill step first
    std::vector<step_timing> steps;
    for (const auto& t : (*srv)->timings(last_stage)) {
      if (t.begin_us >= to_us(b->t0)) {
        steps.push_back(t);
      }
    }
    std::sort(steps.begin(), steps.end(),
              [](const step_timing& x, const step_timing& y) { return x.step_id < y.step_id; });
    double gap_us = 0;
    double busy_us = 0;
    for (size_t i = 1; i < steps.size(); ++i) {  // decode steps: the router's turn before each
      gap_us += static_cast<double>(steps[i].begin_us - steps[i - 1].end_us);
      busy_us += static_cast<double>(steps[i].end_us - steps[i].begin_us);
    }
    const double n_steps = static_cast<double>(std::max<size_t>(steps.size(), 2) - 1);
    if (r > 0) {
      res.engine_ms.push_back(*e);
      res.server_ms.push_back(server_ms);
      res.gap_ms.push_back(gap_us / n_steps / 1e3);
      res.step_ms.push_back(busy_us / n_steps / 1e3);
      if (!o.json) {
        std::fprintf(stderr, "  overhead run %d: engine %.3f ms/token, server %.3f ms/token "
                             "(shard busy %.3f ms, idle between steps %.3f ms)\n",
                     r, *e, server_ms, busy_us / n_steps / 1e3, gap_us / n_steps / 1e3);
      }
    }
  }
  return res;
}

int run_bench_batch(bench_batch_options o) {
  if (o.n_prompt < 1 || o.n_gen < 2 || o.reps < 1) {
    return fail("bench batch: -p must be >= 1, -n >= 2 (a decode phase), -r >= 1");
  }
  for (int32_t c : o.streams) {
    if (c < 1) {
      return fail("bench batch: --streams " + std::to_string(c) + ": each count must be >= 1");
    }
  }
  if (o.n_blocks < 0) {
    return fail("bench batch: --num-gpu-blocks-override must be >= 0 (0: enough for every stream)");
  }
  if (!o.json_schema_file.empty()) {
    auto text = read_regular_file(o.json_schema_file, uint64_t{16} << 20, "JSON Schema");
    if (!text) {
      return fail("bench batch: --json-schema: " + text.err().message);
    }
    grammar::schema_error why;
    if (!grammar::compile_json_schema(*text, {}, &why)) {
      return fail("bench batch: --json-schema " + o.json_schema_file + ": " + why.message);
    }
    o.json_schema = std::move(*text);
  }
  if (o.micro_batches < 0) {
    return fail("bench batch: --micro-batches must be >= 0 (0: two per stage)");
  }
  if (o.engine.ctx_size == 0) {
    o.engine.ctx_size = o.n_prompt + o.n_gen;
  }
  if (o.engine.ctx_size < o.n_prompt + o.n_gen) {
    return fail("bench batch: --ctx-size (" + std::to_string(o.engine.ctx_size) +
                ") must hold -p + -n (" + std::to_string(o.n_prompt + o.n_gen) + ")");
  }
  o.engine.quiet = o.engine.quiet || o.json;
  auto opened = open_job(o.engine, [&](const mpi_session& mpi,
                                  const std::optional<topology>& topo) -> result<load_request> {
    if (mpi.size() > 1 || topo.has_value() || o.engine.device != "cpu") {
      o.no_overhead = true;  // the overhead run compares with the CPU engine in one process
    }
    return load_request{1, !o.no_overhead};
  });
  if (opened.status != exit_ok) {
    return opened.status;
  }
  const bool head = opened.mpi->rank() == 0;
  loaded* l = &opened.l;
  uint64_t round = 1;
  std::vector<batch_result> batches;
  if (!o.no_batch) {
    for (int32_t c : o.streams) {
      auto b = bench_streams(o, opened, c, round);
      if (!b) {
        return fail_agreed(*opened.mpi, b.err().message);
      }
      batches.push_back(std::move(*b));
    }
  }
  std::optional<overhead_result> ovh;
  if (!o.no_overhead) {
    auto r = bench_overhead(o, *l, round);
    if (!r) {
      return fail(r.err().message);
    }
    ovh = std::move(*r);
  }

  if (!head) {
    return exit_ok;
  }
  const std::string kernels(cpu::isa_name(l->opts.kernels));
  if (o.json) {
    nlohmann::json j = {{"model", l->m->file().path()},
                        {"threads", l->n_threads},
                        {"stages", o.engine.stages},
                        {"ranks", opened.mpi->size()},
                        {"topology", o.engine.topology},
                        {"device", o.engine.device},
                        // peak memory bytes/s of the device (GPUs: clock x bus width; 0:
                        // unknown), to read the decode figures as a share of it
                        {"device_bandwidth", cuda_device_index(o.engine.device)
                                                 ? query_local_device(o.engine.device).bandwidth
                                                 : 0.0},
                        {"model_bytes", l->m->weight_bytes()},
                        {"micro_batches", o.micro_batches},
                        {"kernels", kernels},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"reps", o.reps},
                        {"batch", nlohmann::json::array()}};
    for (const auto& b : batches) {
      // the simulator's names (baton plan --simulate --json), as medians over the runs
      const std::vector<double> busy = median_per_stage(b.stage_busy);
      std::vector<double> idle;
      for (double x : busy) {
        idle.push_back(1.0 - x);
      }
      nlohmann::json sim_fields = {{"ttft_p50_s", median(b.ttft_p50)},
                                   {"ttft_p99_s", median(b.ttft_p99)},
                                   {"tpot_mean_s", median(b.tpot_mean)},
                                   {"tpot_p50_s", median(b.tpot_p50)},
                                   {"tpot_p99_s", median(b.tpot_p99)},
                                   {"stage_busy", busy},
                                   {"stage_idle", idle},
                                   {"kv_usage_mean", median(b.kv_usage)},
                                   {"kv_blocks", b.kv_blocks},
                                   {"preemptions", median(b.preemptions)}};
      j["batch"].push_back({{"streams", b.n_streams},
                            {"decode_tokens_per_s", b.decode},
                            {"output_tokens_per_s", b.output},
                            {"ttft_mean_s", b.ttft_mean},
                            {"all_first_token_s", b.t_first},
                            {"end_s", b.t_end},
                            {"decode_tokens_per_s_median", median(b.decode)},
                            {"output_tokens_per_s_median", median(b.output)},
                            {"ttft_mean_s_median", median(b.ttft_mean)},
                            {"transfers", b.transfers},
                            {"token_digests", b.token_digests},
                            {"transfer_us_mean", b.transfer_us}});
      j["batch"].back().update(sim_fields);
    }
    if (ovh) {
      const double e = median(ovh->engine_ms);
      const double s = median(ovh->server_ms);
      j["overhead"] = {{"engine_ms_per_token", ovh->engine_ms},
                       {"server_ms_per_token", ovh->server_ms},
                       {"shard_step_ms", ovh->step_ms},
                       {"shard_idle_ms", ovh->gap_ms},
                       {"engine_ms_per_token_median", e},
                       {"server_ms_per_token_median", s},
                       {"share_vs_engine", (s - e) / s},
                       {"shard_idle_share", o.engine.stages == 1
                                                ? nlohmann::json(median(ovh->gap_ms) / s)
                                                : nlohmann::json()}};
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_ok;
  }
  std::printf("model %s, %d threads, %d stage(s), %d rank(s)%s%s, kernels %s, -p %d -n %d, "
              "%d runs (medians)\n",
              l->m->file().path().c_str(), l->n_threads, o.engine.stages, opened.mpi->size(),
              o.engine.topology.empty() ? "" : ", topology ", o.engine.topology.c_str(),
              kernels.c_str(), o.n_prompt, o.n_gen, o.reps);
  if (!batches.empty()) {
    std::printf("decode: C*(n-1) tokens from the moment every request has its first token to "
                "the last one's end;\noutput: C*n tokens from submit to the end\n");
    std::printf("%8s %12s %12s %12s %12s %10s %8s %8s %11s  %s\n", "streams", "decode t/s",
                "output t/s", "TTFT mean ms", "all first ms", "TPOT ms", "KV use", "preempt",
                "transfer us", "stage busy");
    for (const auto& b : batches) {
      std::string busy;
      for (double x : median_per_stage(b.stage_busy)) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%s%.0f%%", busy.empty() ? "" : " ", x * 100);
        busy += buf;
      }
      std::printf("%8d %12.2f %12.2f %12.1f %12.1f %10.2f %7.0f%% %8.0f %11.1f  %s\n",
                  b.n_streams, median(b.decode), median(b.output), median(b.ttft_mean) * 1e3,
                  median(b.t_first) * 1e3, median(b.tpot_mean) * 1e3, median(b.kv_usage) * 100,
                  median(b.preemptions), b.transfer_us, busy.c_str());
    }
  }
  if (ovh) {
    const double e = median(ovh->engine_ms);
    const double s = median(ovh->server_ms);
    std::printf("batch-1 decode step: engine %.3f ms, local_server %.3f ms: actors %.3f ms "
                "(%.1f%% of the step)\n",
                e, s, s - e, 100.0 * (s - e) / s);
    if (o.engine.stages > 1) {
      std::printf("  (with %d stages each stage runs on %d of the %d threads: the difference "
                  "includes that split, not only the actors)\n",
                  o.engine.stages, std::max(1, l->n_threads / o.engine.stages), l->n_threads);
    } else {
      const double g = median(ovh->gap_ms);
      std::printf("  shard idle between steps (router round trip) %.3f ms (%.1f%% of the step), "
                  "shard busy %.3f ms\n",
                  g, 100.0 * g / s, median(ovh->step_ms));
    }
  }
  return exit_ok;
}

}  // namespace

void add_bench_batch_command(CLI::App& bench, int& status) {
  auto o = std::make_shared<bench_batch_options>();
  auto* cmd = bench.add_subcommand(
      "batch", "Aggregate tokens/s of concurrent requests through the actors, and their overhead");
  o->engine.add_to(*cmd);
  o->engine.add_topology_to(*cmd);
  cmd->add_option("--streams", o->streams, "Concurrent requests, one run per count")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens of each request")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", o->n_gen, "Tokens each request generates (EOS ignored)")
      ->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Runs (medians reported)")->capture_default_str();
  cmd->add_option("--micro-batches", o->micro_batches, "Steps in flight (0: two per stage)")
      ->capture_default_str();
  cmd->add_option("--num-gpu-blocks-override", o->n_blocks,
                  "KV blocks of 16 tokens in the pool (vLLM's flag; on any device); fewer than "
                  "the streams' contexts preempt (default: enough for all)");
  cmd->add_flag("--no-overhead", o->no_overhead, "Skip the actor-overhead measurement");
  cmd->add_flag("--no-batch", o->no_batch, "Only measure the actor overhead");
  cmd->add_option("--json-schema", o->json_schema_file,
                  "Constrain every request's output to this JSON Schema file (the masks timed too)");
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o, &status] { status = run_bench_batch(*o); });
}

}  // namespace baton::cli
