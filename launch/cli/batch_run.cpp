// batch_run.hpp.
#include "launch/cli/batch_run.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

namespace baton::cli {

double median(std::vector<double> v) {
  if (v.empty()) {
    return 0.0;
  }
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t to_us(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::vector<int32_t> make_prompt(int32_t n_prompt, uint64_t salt, int64_t n_vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n_prompt));
  uint64_t x = salt * 0x9e3779b97f4a7c15ull + 1;
  for (auto& t : p) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 29;
    t = static_cast<int32_t>(x % static_cast<uint64_t>(n_vocab));
  }
  return p;
}

namespace {

/// What one request's client saw.
struct stream_log {
  clock_type::time_point first;
  clock_type::time_point last;
  int32_t n_tokens = 0;
  std::vector<int32_t> tokens;
  finish_reason finish = finish_reason::none;
  std::string error;
};

/// Samples the router's KV blocks in use every 5 ms while a run lasts: the time-weighted
/// mean share, as the simulator reports it.
class kv_sampler {
 public:
  explicit kv_sampler(local_server& srv) : srv_(srv), thread_([this] { loop(); }) {}
  ~kv_sampler() { stop(); }
  double stop() {
    if (thread_.joinable()) {
      done_ = true;
      thread_.join();
    }
    return seconds_ > 0 ? area_ / seconds_ : 0.0;
  }

 private:
  void loop() {
    auto last = clock_type::now();
    double share = 0;
    while (!done_) {
      const router_stats s = srv_.stats();
      const auto now = clock_type::now();
      const double dt = std::chrono::duration<double>(now - last).count();
      area_ += share * dt;
      seconds_ += dt;
      last = now;
      share = s.total_blocks > 0
                  ? static_cast<double>(s.total_blocks - s.free_blocks) / s.total_blocks
                  : 0.0;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  local_server& srv_;
  std::atomic<bool> done_{false};
  double area_ = 0;
  double seconds_ = 0;
  std::thread thread_;
};

}  // namespace

result<batch_run> run_batch(local_server& srv, int32_t n_streams, int32_t n_prompt,
                            int32_t n_gen, uint64_t round, int64_t n_vocab,
                            const std::string& json_schema) {
  std::vector<gen_request> reqs(static_cast<size_t>(n_streams));
  for (int32_t i = 0; i < n_streams; ++i) {
    gen_request& r = reqs[static_cast<size_t>(i)];
    r.prompt = make_prompt(n_prompt, round * 100003 + static_cast<uint64_t>(i), n_vocab);
    r.max_tokens = n_gen;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;  // greedy, as the llama.cpp side samples
    r.constraint.json_schema = json_schema;
    r.constraint.max_tokens = json_schema.empty() ? 0 : n_gen;
  }
  std::vector<stream_log> logs(static_cast<size_t>(n_streams));
  std::vector<std::thread> readers;
  readers.reserve(reqs.size());
  const uint64_t preempted_before = srv.stats().preemptions;
  kv_sampler kv(srv);
  const auto t0 = clock_type::now();
  // one reader per stream stamps each event as it arrives; submitting takes
  // microseconds per request, the first step tens of milliseconds
  for (int32_t i = 0; i < n_streams; ++i) {
    auto stream = srv.submit(std::move(reqs[static_cast<size_t>(i)]));
    readers.emplace_back([stream, &log = logs[static_cast<size_t>(i)]] {
      for (;;) {
        auto e = stream->next(std::chrono::minutes(30));
        const auto now = clock_type::now();
        if (!e) {
          log.finish = finish_reason::error;
          log.error = "no event within 30 minutes";
          return;
        }
        if (e->token >= 0) {
          if (log.n_tokens++ == 0) {
            log.first = now;
          }
          log.last = now;
          log.tokens.push_back(e->token);
        }
        if (e->finish != finish_reason::none) {
          log.finish = e->finish;
          log.error = e->error;
          log.last = now;
          return;
        }
      }
    });
  }
  for (auto& t : readers) {
    t.join();
  }
  const auto t_done = clock_type::now();
  batch_run out;
  out.t0 = t0;
  out.kv_usage_mean = kv.stop();
  out.preemptions = srv.stats().preemptions - preempted_before;
  // each stage's steps of this run (its own clock: durations only, the begin against t0,
  // which every rank of one host shares through CLOCK_MONOTONIC)
  const double run_s = seconds(t0, t_done);
  for (size_t k = 0; k < srv.n_stages(); ++k) {
    double busy_us = 0;
    for (const step_timing& t : srv.timings(static_cast<int32_t>(k))) {
      if (t.begin_us >= to_us(t0) && t.end_us <= to_us(t_done)) {
        busy_us += static_cast<double>(t.end_us - t.begin_us);
      }
    }
    out.stage_busy.push_back(run_s > 0 ? busy_us / 1e6 / run_s : 0.0);
  }
  std::vector<double> ttfts;
  std::vector<double> tpots;
  for (const auto& log : logs) {
    ttfts.push_back(seconds(t0, log.first));
    if (log.n_tokens > 1) {
      tpots.push_back(seconds(log.first, log.last) / (log.n_tokens - 1));
    }
  }
  out.ttft_s = distribution_of(ttfts);
  out.tpot_s = distribution_of(tpots);
  double ttft_sum = 0;
  for (const auto& log : logs) {
    if (log.finish != finish_reason::length || log.n_tokens != n_gen) {
      return make_error("a request ended with '%s' after %d of %d tokens%s%s",
                        to_string(log.finish).c_str(), log.n_tokens, n_gen,
                        log.error.empty() ? "" : ": ", log.error.c_str());
    }
    const double ttft = seconds(t0, log.first);
    ttft_sum += ttft;
    out.t_first_s = std::max(out.t_first_s, ttft);
    out.t_end_s = std::max(out.t_end_s, seconds(t0, log.last));
  }
  out.ttft_mean_s = ttft_sum / n_streams;
  uint64_t digest = 14695981039346656037ull;  // FNV-1a offset basis
  for (const auto& log : logs) {
    for (const int32_t t : log.tokens) {
      for (int b = 0; b < 4; ++b) {
        digest = (digest ^ ((static_cast<uint32_t>(t) >> (8 * b)) & 0xffu)) * 1099511628211ull;
      }
    }
  }
  out.token_digest = digest;
  const double n_decode = static_cast<double>(n_streams) * (n_gen - 1);
  out.decode_tokens_per_s = n_decode / (out.t_end_s - out.t_first_s);
  out.output_tokens_per_s = static_cast<double>(n_streams) * n_gen / out.t_end_s;
  return out;
}

}  // namespace baton::cli
