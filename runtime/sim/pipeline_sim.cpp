// pipeline_sim.hpp. The router's side is an event queue (requests arriving, results coming
// back); a dispatched step's way through the stages is worked out at once, because every
// stage and every hop serves in dispatch order (a FIFO resource each).
#include "runtime/sim/pipeline_sim.hpp"

#include "runtime/serving/step_pump.hpp"

#include <algorithm>
#include <map>
#include <queue>

namespace baton {

double sim_link::one_way(double bytes) const {
  if (points.empty()) {
    return latency_s + bytes / bytes_per_s;
  }
  if (bytes <= points.front().first) {
    return points.front().second;
  }
  for (size_t i = 1; i < points.size(); ++i) {
    const auto& [b0, t0] = points[i - 1];
    const auto& [b1, t1] = points[i];
    if (bytes <= b1) {
      return t0 + (t1 - t0) * (bytes - b0) / std::max(1.0, b1 - b0);
    }
  }
  return points.back().second + (bytes - points.back().first) / bytes_per_s;
}

double stage_step_seconds(const sim_stage& st, int64_t n_tokens, int64_t positions,
                          int64_t rows) {
  const device_profile& d = st.device;
  // the matmuls are bound by the weights they stream or by their arithmetic, whichever
  // takes longer (a roofline); attention reads its positions' K and V on top
  const double weights = static_cast<double>(st.weight_bytes) / d.weight_bytes_per_s;
  // a matmul of n rows runs at n / (n + half_rate_tokens) of its peak rate (few rows do
  // not amortize a weight's unpacking): (n + h) x its flops per row over the peak
  const double h = d.half_rate_tokens;
  const double math = ((static_cast<double>(n_tokens) + h) * st.flops_per_token +
                       (rows > 0 ? static_cast<double>(rows) + h : 0.0) * st.head_flops_per_row) /
                      d.flops_per_s;
  return d.fixed_s + static_cast<double>(st.n_layers) * d.layer_s + std::max(weights, math) +
         static_cast<double>(positions) * st.kv_bytes_per_position / d.kv_bytes_per_s;
}

sim_dist distribution_of(std::vector<double> v) {
  sim_dist d;
  if (v.empty()) {
    return d;
  }
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) {
    sum += x;
  }
  d.mean = sum / static_cast<double>(v.size());
  auto at = [&](double q) {
    const auto i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  d.p50 = at(0.5);
  d.p99 = at(0.99);
  return d;
}

namespace {

struct request_log {
  double arrival = 0;
  double first = -1;
  double last = 0;
  int32_t tokens = 0;
  int32_t stream = 0;
};

/// Something the router hears at `time`: a request (id) or a step's result (step).
struct event {
  double time = 0;
  uint64_t order = 0;  ///< ties: first scheduled, first heard
  bool result = false;
  uint64_t id = 0;
  bool operator>(const event& o) const {
    return time != o.time ? time > o.time : order > o.order;
  }
};

}  // namespace

sim_report simulate(const sim_setup& setup, const std::function<void(const trace_event&)>& trace) {
  const size_t n_stages = setup.stages.size();
  scheduler sched(setup.sched, {});  // no end-of-generation token: every request runs its length
  if (trace) {
    sched.set_trace(trace);
  }
  std::priority_queue<event, std::vector<event>, std::greater<>> events;
  uint64_t order = 0;
  std::vector<double> stage_free(n_stages, 0.0);
  std::vector<double> hop_free(n_stages, 0.0);
  std::vector<double> stage_busy(n_stages, 0.0);
  std::vector<double> hop_busy(n_stages, 0.0);
  std::map<uint64_t, request_log> logs;
  std::map<uint64_t, sched_step> in_flight;
  uint64_t next_id = 1;
  const sim_workload& w = setup.work;
  std::vector<int32_t> submitted(static_cast<size_t>(std::max(0, w.streams)), 0);
  auto submit = [&](int32_t stream, double t) {
    if (submitted[static_cast<size_t>(stream)] >= w.requests_per_stream) {
      return;
    }
    ++submitted[static_cast<size_t>(stream)];
    const uint64_t id = next_id++;
    logs[id] = request_log{t, -1, 0, 0, stream};
    events.push(event{t + w.admit_s, order++, false, id});
  };
  for (int32_t s = 0; s < w.streams; ++s) {
    submit(s, 0.0);
  }
  double now = 0;
  double kv_area = 0;  // integral of the blocks in use over time
  double kv_since = 0;
  auto note_kv = [&](double t) {
    kv_area += static_cast<double>(sched.n_blocks() - sched.n_free_blocks()) * (t - kv_since);
    kv_since = t;
  };
  auto hop = [&](size_t k) { return k < setup.hops.size() ? setup.hops[k] : sim_link{}; };
  auto control = [&](size_t k) {
    return k < setup.control_to.size() ? setup.control_to[k] : setup.control;
  };
  // a step's way through the stages, from its dispatch at `t`; when its result is back
  auto run_step = [&](const sched_step& step, double t) {
    int64_t n_tokens = 0;
    int64_t positions = 0;
    int64_t rows = 0;
    for (const auto& sl : step.slices) {
      const auto n = static_cast<int64_t>(sl.tokens.size());
      n_tokens += n;
      positions += n * sl.first_pos + n * (n + 1) / 2;
      rows += sl.want_token ? 1 : 0;
    }
    double ready = t;
    double end = t;
    for (size_t k = 0; k < n_stages; ++k) {
      const double desc = t + control(k).latency_s;
      const double start = std::max({ready, desc, stage_free[k]});
      const double d = stage_step_seconds(setup.stages[k], n_tokens, positions,
                                          k + 1 == n_stages ? rows : 0);
      end = start + d;
      stage_free[k] = end;
      stage_busy[k] += d;
      if (k + 1 < n_stages) {
        const sim_link l = hop(k);
        const double bytes = static_cast<double>(n_tokens * setup.n_embd) * sizeof(float);
        const double send = std::max(end, hop_free[k]);
        // measured points: the hop is taken for the whole way (the transport's own
        // handshakes included); else for the bytes, the latency on top
        const double carry = l.points.empty() ? bytes / l.bytes_per_s : l.one_way(bytes);
        hop_free[k] = send + carry;
        hop_busy[k] += carry;
        ready = send + l.one_way(bytes);
      }
    }
    return end + control(n_stages - 1).latency_s;
  };
  auto pump = [&](double t) {  // as the live router pumps its scheduler
    pump_steps(sched, [&](sched_step&& step) {
      const double back = run_step(step, t);
      events.push(event{back, order++, true, step.step_id});
      in_flight.emplace(step.step_id, std::move(step));
    });
  };
  double router_free = 0;         // when the router's current turn ends
  double first_decode_ready = 0;  // the last request's first token: decode only after it
  while (!events.empty()) {
    const event e = events.top();
    events.pop();
    now = std::max(now, e.time);
    note_kv(now);
    if (!e.result) {
      const request_log& log = logs.at(e.id);
      sched_request r;
      r.id = e.id;
      // distinct prompts (no prefix shared between requests): token ids from the id
      for (int32_t i = 0; i < w.prompt_tokens; ++i) {
        r.prompt.push_back(static_cast<int32_t>(1000 + (e.id * 7919 + i * 104729) % 100000));
      }
      r.max_tokens = w.gen_tokens;
      r.ignore_eos = true;
      (void)log;
      sched.add(std::move(r));
      now = std::max(now, router_free);  // a busy router admits it after its turn
    } else {
      auto it = in_flight.find(e.id);
      std::vector<uint64_t> ids;
      std::vector<int32_t> toks;
      for (const auto& sl : it->second.slices) {
        if (sl.want_token) {
          ids.push_back(sl.seq_id);
          toks.push_back(1);  // any token but an end of generation
        }
      }
      in_flight.erase(it);
      // the router takes results one at a time: its turn (the result's way in, sampling's
      // bookkeeping, each row's event to its client, the next step's way out) before the
      // tokens reach anyone and the next step leaves
      now = std::max(now, router_free) + setup.router_s +
            static_cast<double>(ids.size()) * setup.router_row_s;
      router_free = now;
      for (const auto& o : sched.on_step_done(e.id, ids, toks)) {
        request_log& log = logs.at(o.id);
        if (o.token >= 0) {
          if (log.first < 0) {
            log.first = now;
            first_decode_ready = std::max(first_decode_ready, now);
          }
          log.last = now;
          ++log.tokens;
        }
        if (o.finish != finish_reason::none) {
          submit(log.stream, now);
        }
      }
    }
    pump(now);
  }
  sim_report rep;
  rep.seconds = now;
  std::vector<double> ttft;
  std::vector<double> tpot;
  for (const auto& [id, log] : logs) {
    ++rep.requests;
    rep.prompt_tokens += static_cast<uint64_t>(w.prompt_tokens);
    rep.output_tokens += static_cast<uint64_t>(log.tokens);
    if (log.first >= 0) {
      ttft.push_back(log.first - log.arrival);
      if (log.tokens > 1) {
        tpot.push_back((log.last - log.first) / (log.tokens - 1));
      }
    }
  }
  rep.ttft_s = distribution_of(ttft);
  rep.tpot_s = distribution_of(tpot);
  if (rep.seconds > 0) {
    rep.output_tokens_per_s = static_cast<double>(rep.output_tokens) / rep.seconds;
    rep.total_tokens_per_s =
        static_cast<double>(rep.output_tokens + rep.prompt_tokens) / rep.seconds;
    if (rep.seconds > first_decode_ready) {
      // bench batch's meaning: the tokens after each first one, once every first is out
      rep.decode_tokens_per_s = static_cast<double>(rep.output_tokens - rep.requests) /
                                (rep.seconds - first_decode_ready);
    }
    for (size_t k = 0; k < n_stages; ++k) {
      rep.stage_busy.push_back(stage_busy[k] / rep.seconds);
      if (k + 1 < n_stages) {
        rep.hop_busy.push_back(hop_busy[k] / rep.seconds);
      }
    }
    rep.kv_usage_mean = kv_area / rep.seconds / std::max(1, sched.n_blocks());
  }
  const auto c = sched.counters();
  rep.preemptions = c.preemptions;
  rep.steps = c.steps;
  return rep;
}

}  // namespace baton
