// `baton bench calibrate`: one stage of the model timed on this machine for steps of
// several shapes (decode batches at two context lengths, prefill chunks) and depths (a
// quarter, half and all of the layers), then the profile's speeds fitted to step seconds =
// fixed + max(weight bytes / bw, flops / rate) + KV bytes / bw (runtime/sim's roofline).
// Why that form: a CPU decode step streams every weight once (memory-bound), a prefill
// chunk is matmul work (compute-bound), attention reads each attended position's K and V,
// and a step has a fixed cost (threads waking, the pipeline's bookkeeping); the depths
// separate the fixed cost from the weights. (layer_s, a per-layer cost, stays 0 here: on a
// CPU it cannot be told from the weights' time, which also grows with the layers.)
#include <algorithm>
#include <atomic>
#include <thread>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "actors/local_server.hpp"
#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"
#include "launch/cli/simulate.hpp"
#include "runtime/compute/batch.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/system/budget.hpp"
#include "topology/memory_plan.hpp"

namespace baton::cli {

namespace {

struct calibrate_options {
  engine_flags engine;
  std::string out;
  int reps = 5;
};

struct timed_step {
  int64_t layers = 0;
  int64_t tokens = 0;
  int64_t positions = 0;
  int64_t rows = 0;
  double seconds = 0;
  sim_stage st;
};

/// Fits `d` to the timed steps: for each weight bandwidth, arithmetic rate (logarithmic
/// grids) and half-rate row count, the fixed cost and the KV bandwidth by least squares
/// (both >= 0), all on relative error (the steps span 10 ms to seconds); the triple that
/// fits best. The roofline's max() is not linear, hence the grid over its speeds.
double fit_profile(const std::vector<timed_step>& runs, device_profile& d) {
  double best = 1e300;
  for (const double h : {0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0}) {
  // the roofline's part of step r: its weights or its math, whichever is slower
  auto roof_of = [h](const timed_step& r, double bw, double rate) {
    return std::max(static_cast<double>(r.st.weight_bytes) / bw,
                    ((static_cast<double>(r.tokens) + h) * r.st.flops_per_token +
                     (static_cast<double>(r.rows) + h) * r.st.head_flops_per_row) /
                        rate);
  };
  for (int i = 0; i <= 80; ++i) {
    const double bw = std::pow(10.0, 8.0 + i * 5.0 / 80);  // 0.1 GB/s .. 10 TB/s
    for (int k = 0; k <= 80; ++k) {
      const double rate = std::pow(10.0, 9.0 + k * 6.0 / 80);  // 1 GFLOP/s .. 1 PFLOP/s
      // y_r / t_r = f / t_r + c * kv_r / t_r + roof_r / t_r: least squares in (f, c)
      double s11 = 0, s12 = 0, s22 = 0, b1 = 0, b2 = 0;
      for (const auto& r : runs) {
        const double roof = roof_of(r, bw, rate);
        const double u = 1.0 / r.seconds;
        const double v = static_cast<double>(r.positions) * r.st.kv_bytes_per_position / r.seconds;
        const double y = 1.0 - roof / r.seconds;
        s11 += u * u;
        s12 += u * v;
        s22 += v * v;
        b1 += u * y;
        b2 += v * y;
      }
      const double det = s11 * s22 - s12 * s12;
      double f = det != 0 ? (b1 * s22 - b2 * s12) / det : 0;
      double c = det != 0 ? (s11 * b2 - s12 * b1) / det : 0;
      if (f < 0 || c < 0) {  // one of them explains nothing: fit the other alone
        f = std::max(0.0, f);
        c = std::max(0.0, c);
        if (f == 0) {
          c = s22 > 0 ? std::max(0.0, b2 / s22) : 0;
        } else if (c == 0) {
          f = s11 > 0 ? std::max(0.0, b1 / s11) : 0;
        }
      }
      double err = 0;
      for (const auto& r : runs) {
        const double roof = roof_of(r, bw, rate);
        const double p = f + roof + c * static_cast<double>(r.positions) * r.st.kv_bytes_per_position;
        err += (p / r.seconds - 1) * (p / r.seconds - 1);
      }
      if (err < best) {
        best = err;
        d.fixed_s = f;
        d.weight_bytes_per_s = bw;
        d.flops_per_s = rate;
        d.kv_bytes_per_s = c > 0 ? 1.0 / c : 1e30;
        d.half_rate_tokens = h;
      }
    }
  }
  }
  return best;
}

/// What the live pipeline adds to the isolated steps: the router's turn and the steps'
/// own time when they share the cores with the router and the clients' threads.
struct live_measure {
  double router_s = 0;
  double router_row_s = 0;
  std::vector<timed_step> steps;  ///< the stage's steps (all layers), as they ran
};

/// A one-stage local_server decodes 1, 4 and 16 greedy streams (a reader thread each, as
/// `baton bench batch` and the HTTP front end have) with one micro-batch in flight. The
/// stage's idle time between consecutive decode steps (the result's way to the router,
/// its bookkeeping and an event per row, the next step's way back) is fitted to router_s +
/// rows x router_row_s by least squares on the medians; every step is kept with its shape.
result<live_measure> measure_live(const calibrate_options& o, ggml_type kv_type) {
  auto l = load(o.engine, load_request{16, false});
  if (!l) {
    return l.err();
  }
  serving_config sv;
  sv.micro_batches = 1;
  sv.max_num_seqs = 16;
  sv.enable_prefix_caching = false;
  server_options so = server_options_for(*l, 1, sv);
  so.serving.n_blocks = kv_blocks_for_requests(16, 64, sv.block_size);
  auto srv = local_server::create(l->m, l->tok, so);
  if (!srv) {
    return srv.err();
  }
  const int64_t n_layer = l->m->config().n_layer;
  const sim_stage whole = sim_stage_of(*l->m, 0, n_layer, kv_type, device_profile{});
  live_measure out;
  std::vector<double> rows;
  std::vector<double> gaps;
  const std::vector<int32_t> counts = {1, 4, 16};
  for (int round = 0; round < 2; ++round) {  // the first round warms up
    for (const int32_t n : counts) {
      const int64_t since_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count();
      std::vector<std::thread> readers;
      std::atomic<bool> failed{false};
      for (int32_t i = 0; i < n; ++i) {
        gen_request r;
        for (int32_t t = 0; t < 32; ++t) {
          r.prompt.push_back(static_cast<int32_t>((1000 + 97 * i + t) % l->m->config().n_vocab));
        }
        r.max_tokens = 24;
        r.ignore_eos = true;
        r.sampling.temperature = 0.0f;
        readers.emplace_back([st = (*srv)->submit(std::move(r)), &failed] {
          for (;;) {
            auto e = st->next(std::chrono::minutes(5));
            if (!e || e->finish == finish_reason::error) {
              failed = true;
              return;
            }
            if (e->finish != finish_reason::none) {
              return;
            }
          }
        });
      }
      for (auto& t : readers) {
        t.join();
      }
      if (failed) {
        return make_error("calibrate: a request of the live measurement failed");
      }
      std::vector<step_timing> steps;
      for (const auto& t : (*srv)->timings(0)) {
        if (t.begin_us >= since_us) {
          steps.push_back(t);
        }
      }
      std::sort(steps.begin(), steps.end(),
                [](const step_timing& a, const step_timing& b) { return a.step_id < b.step_id; });
      // the decode steps with every stream running: after the prefills, before the ends
      std::vector<double> g;
      for (size_t i = 2; i + 2 < steps.size(); ++i) {
        g.push_back(static_cast<double>(steps[i].begin_us - steps[i - 1].end_us) * 1e-6);
      }
      if (g.empty()) {
        return make_error("calibrate: the live measurement saw no decode steps");
      }
      if (round == 0) {
        continue;
      }
      std::sort(g.begin(), g.end());
      rows.push_back(n);
      gaps.push_back(g[g.size() / 2]);
      for (const step_timing& t : steps) {
        timed_step ts;
        ts.layers = n_layer;
        ts.tokens = t.n_tokens;
        ts.positions = t.positions;
        ts.rows = t.rows;
        ts.seconds = static_cast<double>(t.end_us - t.begin_us) * 1e-6;
        ts.st = whole;
        out.steps.push_back(ts);
      }
    }
  }
  const line_fit f = fit_line(rows, gaps);
  out.router_row_s = std::max(0.0, f.slope);
  out.router_s = std::max(0.0, f.intercept);
  return out;
}

int run_calibrate(const calibrate_options& o) {
  // the weights alone: no tokenizer, no KV budget (the steps hold their own small pool)
  auto opened = model::open(o.engine.model.empty() ? demo_model_path() : o.engine.model);
  if (!opened) {
    return fail(opened.err().message);
  }
  const std::shared_ptr<const model> mp = *opened;
  const model& m = *mp;
  const int n_threads = o.engine.threads > 0 ? o.engine.threads : detect_budget().threads;
  const int64_t n_layer = m.config().n_layer;
  const int32_t block = 16;
  // shapes: (sequences, tokens each, context before them)
  struct shape {
    int32_t seqs;
    int32_t tokens;
    int32_t context;
  };
  // decode batches at two context lengths; prefill of one long prompt and of many short
  // ones (a step of 512 tokens, as 16 streams' first step)
  const std::vector<shape> shapes = {{1, 1, 64},  {4, 1, 64},  {16, 1, 64}, {1, 1, 448},
                                     {16, 1, 448}, {1, 64, 0}, {1, 256, 0}, {16, 32, 0}};
  std::vector<timed_step> runs;
  std::vector<int64_t> depths = {std::max<int64_t>(1, n_layer / 4), std::max<int64_t>(1, n_layer / 2),
                                 n_layer};
  depths.erase(std::unique(depths.begin(), depths.end()), depths.end());
  for (const int64_t layers : depths) {
    const int64_t first = n_layer - layers;  // ends at the head: the last stage's work too
    stage_compute_options co;
    co.m = mp;
    co.first_layer = first;
    co.last_layer = n_layer;
    co.n_blocks = 16 * (512 / block + 1);
    co.block_size = block;
    co.n_threads = n_threads;
    co.kernels = cpu::best_isa();
    co.max_context = 512;
    auto compute = make_stage_compute(co);
    if (!compute) {
      return fail(compute.err().message);
    }
    // every shape once per round, rounds interleaved (drift and page faults spread over
    // all shapes alike); the first round only warms the memory
    struct prepared {
      batch b;
      std::vector<std::vector<int32_t>> tables;
      int64_t positions = 0;
      std::vector<double> seconds;
    };
    std::vector<prepared> cases(shapes.size());
    for (size_t c = 0; c < shapes.size(); ++c) {
      const shape& sh = shapes[c];
      prepared& p = cases[c];
      p.tables.resize(static_cast<size_t>(sh.seqs));
      for (int32_t s = 0; s < sh.seqs; ++s) {
        for (int32_t k = 0; k < 512 / block + 1; ++k) {
          p.tables[static_cast<size_t>(s)].push_back(s * (512 / block + 1) + k);
        }
      }
      for (int32_t s = 0; s < sh.seqs; ++s) {
        p.b.block_tables.push_back(&p.tables[static_cast<size_t>(s)]);
        for (int32_t t = 0; t < sh.tokens; ++t) {
          p.b.add(s, static_cast<int32_t>((1000 + t) % m.config().n_vocab), sh.context + t,
                  t + 1 == sh.tokens);
          p.positions += sh.context + t + 1;
        }
      }
    }
    // each shape runs twice in a row and the second is timed: the first after a step of
    // another shape pays for the change (a decode step after a 512-token prefill took 4-6x
    // its steady time), which a run of same-shaped steps, as decode is, does not
    for (int r = 0; r < o.reps + 1; ++r) {
      for (prepared& p : cases) {
        for (int twice = 0; twice < 2; ++twice) {
          std::vector<float> hidden(static_cast<size_t>(p.b.n_tokens() * m.config().n_embd),
                                    0.01f);
          std::vector<float> logits;
          const auto t0 = std::chrono::steady_clock::now();
          if (auto ok = (*compute)->forward(p.b, hidden, logits); !ok) {
            return fail(ok.err().message);
          }
          if (r > 0 && twice == 1) {
            p.seconds.push_back(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          }
        }
      }
    }
    for (prepared& p : cases) {
      std::sort(p.seconds.begin(), p.seconds.end());
      timed_step ts;
      ts.layers = layers;
      ts.tokens = p.b.n_tokens();
      ts.positions = p.positions;
      ts.rows = p.b.n_logits();
      ts.seconds = p.seconds[p.seconds.size() / 2];
      ts.st = sim_stage_of(m, first, n_layer, o.engine.kv_type == "f32" ? ggml_type::f32
                                                                          : ggml_type::f16,
                           device_profile{});
      runs.push_back(ts);
    }
  }
  device_profile d;
  d.name = "cpu";
  fit_profile(runs, d);
  // the isolated fit, before the live factor
  nlohmann::json fit = nlohmann::json::array();
  double worst = 0;
  for (auto& r : runs) {
    r.st.device = d;
    const double predicted = stage_step_seconds(r.st, r.tokens, r.positions, r.rows);
    const double err = (predicted - r.seconds) / r.seconds;
    worst = std::max(worst, std::fabs(err));
    fit.push_back({{"layers", r.layers}, {"tokens", r.tokens}, {"positions", r.positions},
                   {"rows", r.rows}, {"seconds", r.seconds}, {"predicted_s", predicted},
                   {"error", err}});
  }
  const ggml_type kv_type = o.engine.kv_type == "f32" ? ggml_type::f32 : ggml_type::f16;
  // the live pipeline needs the model's tokenizer (a server streams text); a weights-only
  // file is calibrated alone, and the profile says so
  const bool has_tokenizer = m.file().find("tokenizer.ggml.model") != nullptr;
  result<live_measure> live = live_measure{};
  if (has_tokenizer) {
    live = measure_live(o, kv_type);
  } else {
    std::fprintf(stderr, "calibrate: %s has no tokenizer: the live pipeline is not measured "
                         "(router_s 0, live_factor 1)\n",
                 m.file().path().c_str());
  }
  if (!live) {
    return fail(live.err().message);
  }
  // the live steps ran slower than alone (the router and the clients' threads share the
  // cores): every speed scaled by the median ratio, measured over predicted
  std::vector<double> ratios;
  for (timed_step& r : live->steps) {
    r.st.device = d;
    ratios.push_back(r.seconds / stage_step_seconds(r.st, r.tokens, r.positions, r.rows));
  }
  std::sort(ratios.begin(), ratios.end());
  const double live_factor = ratios.empty() ? 1.0 : ratios[ratios.size() / 2];
  d.fixed_s *= live_factor;
  d.weight_bytes_per_s /= live_factor;
  d.flops_per_s /= live_factor;
  d.kv_bytes_per_s /= live_factor;
  nlohmann::json live_fit = nlohmann::json::array();
  for (timed_step& r : live->steps) {
    r.st.device = d;
    const double predicted = stage_step_seconds(r.st, r.tokens, r.positions, r.rows);
    live_fit.push_back({{"tokens", r.tokens}, {"positions", r.positions}, {"rows", r.rows},
                        {"seconds", r.seconds}, {"predicted_s", predicted},
                        {"error", (predicted - r.seconds) / r.seconds}});
  }
  nlohmann::json j = {{"device", d.name},
                      {"model", m.file().path()},
                      {"threads", n_threads},
                      {"fixed_s", d.fixed_s},
                      {"weight_bytes_per_s", d.weight_bytes_per_s},
                      {"flops_per_s", d.flops_per_s},
                      {"half_rate_tokens", d.half_rate_tokens},
                      {"kv_bytes_per_s", d.kv_bytes_per_s},
                      {"router_s", live->router_s},
                      {"router_row_s", live->router_row_s},
                      {"live_factor", live_factor},
                      {"live_measured", has_tokenizer},
                      {"estimate", false},
                      {"max_fit_error", worst},
                      {"runs", fit},
                      {"live_runs", live_fit}};
  const std::string text = j.dump(2);
  if (o.out.empty() || o.out == "-") {
    std::printf("%s\n", text.c_str());
  } else {
    std::ofstream f(o.out, std::ios::trunc);
    f << text << "\n";
    if (!f) {
      return fail(o.out + ": cannot write the profile");
    }
  }
  std::fprintf(stderr,
               "calibrate: %zu steps on %d threads: fixed %.3g ms, weights %.3g GB/s, %.3g "
               "GFLOP/s, KV %.3g GB/s; worst fit error %.1f %%; router %.3g ms a step + "
               "%.3g ms a row; live steps %.2fx the isolated ones\n",
               runs.size(), n_threads, d.fixed_s * 1e3, d.weight_bytes_per_s / 1e9,
               d.flops_per_s / 1e9, d.kv_bytes_per_s / 1e9, worst * 100, live->router_s * 1e3,
               live->router_row_s * 1e3, live_factor);
  return exit_ok;
}

}  // namespace

void add_bench_calibrate_command(CLI::App& bench, int& status) {
  auto o = std::make_shared<calibrate_options>();
  auto* cmd = bench.add_subcommand(
      "calibrate", "Time one stage's steps on this machine and fit the simulator's device "
                   "profile (baton plan --simulate --profile)");
  o->engine.add_to(*cmd);
  cmd->add_option("-o,--output", o->out, "The profile (JSON; default: stdout)");
  cmd->add_option("-r,--repetitions", o->reps, "Timed runs per step shape (median)")
      ->capture_default_str();
  cmd->callback([o, &status] { status = run_calibrate(*o); });
}

}  // namespace baton::cli
