// `baton bench serve`: a load generator for an OpenAI-compatible server, measured as
// vLLM's benchmarks/benchmark_serving.py measures one. N requests (synthetic prompts of
// about --input-len tokens, or the lines of --prompt-file), each asking for exactly
// --output-len tokens (max_tokens with ignore_eos), are released at --request-rate
// (Poisson arrivals; all at once by default) into at most -c in flight. Every request
// streams, so the client stamps each event as it arrives:
//   ttft   send → the first chunk carrying text
//   itl    the gaps between successive text chunks (all requests pooled)
//   tpot   (t_last − t_first) / (n − 1) per request, n its usage.completion_tokens
//          (or its text chunks when the server sends no usage)
//   e2el   send → the end of the stream
// Throughputs divide by the wall time from the first release to the last reply. A
// request fails on a non-2xx status (429 counts), a connection error, an error event
// or a stream without [DONE]; failures are reported by status, not fatal.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "launch/cli/commands.hpp"
#include "launch/http/http_client.hpp"
#include "launch/http/openai_reply.hpp"

namespace baton::cli {

namespace {

using clock_type = std::chrono::steady_clock;

struct bench_serve_options {
  std::string url = "http://127.0.0.1:8000";
  std::string api_key;
  std::string model;
  int32_t num_prompts = 64;
  int32_t concurrency = 16;  ///< 0: unlimited
  double request_rate = std::numeric_limits<double>::infinity();
  int32_t input_len = 128;
  int32_t output_len = 64;
  std::string prompt_file;
  bool chat = false;
  uint64_t seed = 0;
  bool json = false;
  double timeout_s = 600;
};

/// What the client saw of one request.
struct request_log {
  bool ok = false;
  int status = 0;              ///< HTTP status; 0 when no reply came
  std::string error;
  double ttft_s = 0;
  double e2el_s = 0;
  double tpot_s = -1;          ///< < 0: fewer than two tokens
  std::vector<double> itl_s;   ///< gaps between text chunks
  int64_t prompt_tokens = -1;  ///< usage.prompt_tokens; -1 when not sent
  int64_t output_tokens = 0;
};

double seconds(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// Common English words, each one token after a space in Llama-3's vocabulary, so a
/// prompt of I words is about I tokens.
constexpr const char* k_words[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "you",   "that",  "it",    "he",
    "was",   "for",   "on",    "are",   "as",    "with",  "his",   "they",  "at",    "be",
    "this",  "have",  "from",  "or",    "one",   "had",   "by",    "word",  "but",   "not",
    "what",  "all",   "were",  "we",    "when",  "your",  "can",   "said",  "there", "use",
    "an",    "each",  "which", "she",   "do",    "how",   "their", "if",    "will",  "up",
    "other", "about", "out",   "many",  "then",  "them",  "these", "so",    "some",  "her",
    "would", "make",  "like",  "him",   "into",  "time",  "has",   "look",  "two",   "more",
    "write", "go",    "see",   "number", "no",   "way",   "could", "people", "my",   "than",
    "first", "water", "been",  "call",  "who",   "oil",   "its",   "now",   "find",  "long",
    "down",  "day",   "did",   "get",   "come",  "made",  "may",   "part",  "over",  "new",
    "sound", "take",  "only",  "little", "work", "know",  "place", "year",  "live",  "me",
    "back",  "give",  "most",  "very",  "after", "thing", "our",   "just",  "name",  "good",
    "man",   "think", "say",   "great", "where", "help",  "through", "much", "before", "line",
    "right", "too",   "mean",  "old",   "any",   "same",  "tell",  "boy",   "follow", "came",
    "want",  "show",  "also",  "around", "form", "three", "small", "set",   "put",   "end",
    "does",  "another", "well", "large", "must", "big",   "even",  "such",  "because", "turn",
    "here",  "why",   "ask",   "went",  "men",   "read",  "need",  "land",  "different", "home",
    "us",    "move",  "try",   "kind",  "hand",  "picture", "again", "change", "off", "play",
    "spell", "air",   "away",  "animal", "house", "point", "page", "letter", "mother", "answer",
    "found", "study", "still", "learn", "should", "world", "high", "every", "near",  "add",
};

std::vector<std::string> synthetic_prompts(int32_t n, int32_t n_words, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, std::size(k_words) - 1);
  std::vector<std::string> out(static_cast<size_t>(n));
  for (auto& p : out) {
    for (int32_t w = 0; w < n_words; ++w) {
      if (w > 0) {
        p += ' ';
      }
      p += k_words[pick(rng)];
    }
  }
  return out;
}

/// Percentile with linear interpolation between closest ranks (numpy's default, which
/// benchmark_serving.py uses). `v` sorted; 0 when empty.
double percentile(const std::vector<double>& v, double q) {
  if (v.empty()) {
    return 0.0;
  }
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

struct summary {
  double mean = 0, p50 = 0, p99 = 0;
};

/// Mean, median and p99 of `v` (seconds), in milliseconds.
summary summarize_ms(std::vector<double> v) {
  summary s;
  if (v.empty()) {
    return s;
  }
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) {
    sum += x;
  }
  s.mean = 1e3 * sum / static_cast<double>(v.size());
  s.p50 = 1e3 * percentile(v, 50);
  s.p99 = 1e3 * percentile(v, 99);
  return s;
}

nlohmann::json to_json(const summary& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}};
}

/// Sends one streamed request and times its events.
request_log send_one(http_client& http, const std::string& path, const nlohmann::json& req,
                     bool chat) {
  request_log log;
  const auto t0 = clock_type::now();
  clock_type::time_point t_first, t_last;
  int64_t n_chunks = 0;
  int64_t usage_tokens = -1;
  auto reply = http.post_stream(path, req, [&](std::string_view data) {
    const auto now = clock_type::now();
    auto chunk = parse_openai_chunk(data, chat ? openai_route::chat : openai_route::completions);
    if (!chunk) {
      log.error = chunk.err().message;
      return false;
    }
    if (chunk->usage.is_object()) {
      usage_tokens = chunk->completion_tokens;
      log.prompt_tokens = chunk->prompt_tokens;
    }
    if (chunk->text.empty()) {
      return true;  // the role chunk, the finish_reason chunk
    }
    if (n_chunks++ == 0) {
      t_first = now;
      log.ttft_s = seconds(t0, now);
    } else {
      log.itl_s.push_back(seconds(t_last, now));
    }
    t_last = now;
    return true;
  });
  log.e2el_s = seconds(t0, clock_type::now());
  if (!reply) {
    log.error = reply.err().message;
    return log;
  }
  log.status = reply->status;
  if (!reply->ok()) {
    log.error = describe_http_error(*reply);
    return log;
  }
  if (!log.error.empty()) {
    return log;
  }
  if (!reply->saw_done) {
    log.error = "the event stream ended without 'data: [DONE]'";
    return log;
  }
  if (n_chunks == 0) {
    log.error = "the stream carried no text";
    return log;
  }
  log.ok = true;
  log.output_tokens = usage_tokens >= 0 ? usage_tokens : n_chunks;
  if (log.output_tokens > 1) {
    log.tpot_s = seconds(t_first, t_last) / static_cast<double>(log.output_tokens - 1);
  }
  return log;
}

result<std::vector<std::string>> read_prompt_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return make_error("--prompt-file '%s': cannot open it", path.c_str());
  }
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (!line.empty()) {
      out.push_back(line);
    }
  }
  if (out.empty()) {
    return make_error("--prompt-file '%s': no prompts (one per line expected)", path.c_str());
  }
  return out;
}

int run_bench_serve(const bench_serve_options& o) {
  if (o.num_prompts < 1 || o.concurrency < 0 || o.output_len < 1 || o.input_len < 1) {
    return fail("bench serve: -n must be >= 1, -c >= 0, --input-len and --output-len >= 1");
  }
  if (!(o.request_rate > 0)) {
    return fail("--request-rate must be > 0 requests/s (inf: all at once), got " +
                std::to_string(o.request_rate));
  }
  if (o.timeout_s <= 0) {
    return fail("--timeout must be > 0 seconds");
  }
  auto url = parse_http_url(o.url);
  if (!url) {
    return fail(url.err().message);
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  std::vector<std::string> prompts;
  if (!o.prompt_file.empty()) {
    auto p = read_prompt_file(o.prompt_file);
    if (!p) {
      return fail(p.err().message);
    }
    for (int32_t i = 0; i < o.num_prompts; ++i) {  // cycled when the file is shorter
      prompts.push_back((*p)[static_cast<size_t>(i) % p->size()]);
    }
  } else {
    prompts = synthetic_prompts(o.num_prompts, o.input_len, o.seed);
  }

  std::string model = o.model;
  if (model.empty()) {
    http_client http(*url, o.api_key, timeout);
    auto models = http.get_json("/v1/models");
    if (!models) {
      fail(models.err().message);
      return exit_failure;
    }
    auto id = first_model_id(*models);
    if (!id) {
      fail(id.err().message);
      return exit_failure;
    }
    model = *id;
  }
  const std::string path = o.chat ? "/v1/chat/completions" : "/v1/completions";
  auto make_request = [&](const std::string& prompt) {
    nlohmann::json r = {{"model", model},
                        {"max_tokens", o.output_len},
                        {"ignore_eos", true},
                        {"temperature", 0.0},
                        {"stream", true},
                        {"stream_options", {{"include_usage", true}}}};
    if (o.chat) {
      r["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", prompt}}});
    } else {
      r["prompt"] = prompt;
    }
    return r;
  };

  // release times: Poisson arrivals (exponential gaps) at --request-rate, from t = 0
  const size_t n = prompts.size();
  std::vector<double> release_s(n, 0.0);
  if (std::isfinite(o.request_rate)) {
    std::mt19937_64 rng(o.seed ^ 0x5eedull);
    std::exponential_distribution<double> gap(o.request_rate);
    for (size_t i = 1; i < n; ++i) {
      release_s[i] = release_s[i - 1] + gap(rng);
    }
  }
  const size_t n_slots = o.concurrency == 0 ? n : std::min(n, static_cast<size_t>(o.concurrency));
  std::vector<request_log> logs(n);
  std::atomic<size_t> next{0};
  const auto t0 = clock_type::now();
  std::vector<std::thread> slots;
  slots.reserve(n_slots);
  for (size_t s = 0; s < n_slots; ++s) {
    slots.emplace_back([&] {
      http_client http(*url, o.api_key, timeout);
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        std::this_thread::sleep_until(
            t0 + std::chrono::duration_cast<clock_type::duration>(
                     std::chrono::duration<double>(release_s[i])));
        logs[i] = send_one(http, path, make_request(prompts[i]), o.chat);
      }
    });
  }
  for (auto& t : slots) {
    t.join();
  }
  const double duration = seconds(t0, clock_type::now());

  int64_t completed = 0, input_tokens = 0, output_tokens = 0;
  bool prompt_tokens_known = true;
  std::map<int, int64_t> failed_by_status;
  std::vector<std::string> errors;
  std::vector<double> ttft, tpot, itl, e2el;
  for (size_t i = 0; i < n; ++i) {
    const request_log& l = logs[i];
    if (!l.ok) {
      ++failed_by_status[l.status];
      if (std::find(errors.begin(), errors.end(), l.error) == errors.end() && errors.size() < 5) {
        errors.push_back(l.error);
      }
      continue;
    }
    ++completed;
    output_tokens += l.output_tokens;
    if (l.prompt_tokens >= 0) {
      input_tokens += l.prompt_tokens;
    } else {
      prompt_tokens_known = false;
    }
    ttft.push_back(l.ttft_s);
    e2el.push_back(l.e2el_s);
    if (l.tpot_s >= 0) {
      tpot.push_back(l.tpot_s);
    }
    itl.insert(itl.end(), l.itl_s.begin(), l.itl_s.end());
  }
  const int64_t failed = static_cast<int64_t>(n) - completed;
  const double req_per_s = static_cast<double>(completed) / duration;
  const double out_per_s = static_cast<double>(output_tokens) / duration;
  const double total_per_s = static_cast<double>(input_tokens + output_tokens) / duration;
  const summary s_ttft = summarize_ms(ttft), s_tpot = summarize_ms(tpot),
                s_itl = summarize_ms(itl), s_e2el = summarize_ms(e2el);

  if (o.json) {
    nlohmann::json by_status = nlohmann::json::object();
    for (const auto& [status, count] : failed_by_status) {
      by_status[std::to_string(status)] = count;
    }
    nlohmann::json j = {
        {"url", url->to_string()},
        {"endpoint", path},
        {"model", model},
        {"num_prompts", n},
        {"concurrency", o.concurrency},
        {"request_rate", std::isfinite(o.request_rate) ? nlohmann::json(o.request_rate)
                                                       : nlohmann::json("inf")},
        {"input_len", o.prompt_file.empty() ? nlohmann::json(o.input_len) : nlohmann::json()},
        {"output_len", o.output_len},
        {"completed", completed},
        {"failed", failed},
        {"failed_by_status", by_status},
        {"errors", errors},
        {"duration_s", duration},
        {"total_input_tokens", prompt_tokens_known ? nlohmann::json(input_tokens) : nlohmann::json()},
        {"total_output_tokens", output_tokens},
        {"request_throughput", req_per_s},
        {"output_throughput", out_per_s},
        {"total_token_throughput", total_per_s},
        {"ttft_ms", to_json(s_ttft)},
        {"tpot_ms", to_json(s_tpot)},
        {"itl_ms", to_json(s_itl)},
        {"e2el_ms", to_json(s_e2el)},
    };
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    auto row = [](const char* name, double v, int digits) {
      std::printf("%-40s %.*f\n", name, digits, v);
    };
    auto block = [&](const char* title, const std::string& name, const summary& sm) {
      std::printf("%s\n", title);
      row(("Mean " + name + " (ms):").c_str(), sm.mean, 2);
      row(("Median " + name + " (ms):").c_str(), sm.p50, 2);
      row(("P99 " + name + " (ms):").c_str(), sm.p99, 2);
    };
    std::printf("============ Serving Benchmark Result ============\n");
    std::printf("%-40s %s%s\n", "Endpoint:", url->to_string().c_str(), path.c_str());
    std::printf("%-40s %s\n", "Model:", model.c_str());
    std::printf("%-40s %lld\n", "Successful requests:", static_cast<long long>(completed));
    std::printf("%-40s %lld", "Failed requests:", static_cast<long long>(failed));
    for (const auto& [status, count] : failed_by_status) {
      if (status == 0) {
        std::printf("  (no reply: %lld)", static_cast<long long>(count));
      } else {
        std::printf("  (HTTP %d: %lld)", status, static_cast<long long>(count));
      }
    }
    std::printf("\n");
    row("Benchmark duration (s):", duration, 2);
    if (prompt_tokens_known) {
      std::printf("%-40s %lld\n", "Total input tokens:", static_cast<long long>(input_tokens));
    }
    std::printf("%-40s %lld\n", "Total generated tokens:", static_cast<long long>(output_tokens));
    row("Request throughput (req/s):", req_per_s, 2);
    row("Output token throughput (tok/s):", out_per_s, 2);
    if (prompt_tokens_known) {
      row("Total token throughput (tok/s):", total_per_s, 2);
    }
    block("---------------Time to First Token----------------", "TTFT", s_ttft);
    block("-----Time per Output Token (excl. 1st token)------", "TPOT", s_tpot);
    block("---------------Inter-token Latency----------------", "ITL", s_itl);
    block("----------------End-to-end Latency----------------", "E2EL", s_e2el);
    std::printf("==================================================\n");
    for (const auto& e : completed > 0 ? errors : std::vector<std::string>{}) {
      std::fprintf(stderr, "baton: a request failed: %s\n", e.c_str());
    }
  }
  if (completed == 0) {
    fail("all " + std::to_string(n) + " requests failed; the first: " + errors.front());
    return exit_failure;
  }
  return exit_ok;
}

}  // namespace

void add_bench_serve_command(CLI::App& bench, int& status) {
  auto o = std::make_shared<bench_serve_options>();
  auto* cmd = bench.add_subcommand(
      "serve", "Load-test an OpenAI-compatible server (TTFT, TPOT, ITL, throughput)");
  cmd->add_option("--url", o->url, "Server base URL (a trailing /v1 is optional)")
      ->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "Sent as 'Authorization: Bearer KEY'")
      ->envname("BATON_API_KEY");
  cmd->add_option("--model", o->model, "Model name (default: the first of GET /v1/models)");
  cmd->add_option("-n,--num-prompts", o->num_prompts, "Requests to send")->capture_default_str();
  cmd->add_option("-c,--concurrency", o->concurrency, "Most requests in flight (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--request-rate", o->request_rate,
                  "Requests/s released, Poisson arrivals (inf: all at once)")
      ->capture_default_str();
  auto* input_len =
      cmd->add_option("--input-len", o->input_len, "Synthetic prompt length, ~tokens (random words)")
          ->capture_default_str();
  cmd->add_option("--output-len", o->output_len, "Tokens each request generates (ignore_eos)")
      ->capture_default_str();
  cmd->add_option("--prompt-file", o->prompt_file, "Prompts, one per line (cycled), instead of synthetic ones")
      ->excludes(input_len);
  cmd->add_flag("--chat", o->chat, "POST /v1/chat/completions (default /v1/completions)");
  cmd->add_option("--seed", o->seed, "Seed of the synthetic prompts and the arrivals")
      ->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s, "Seconds to wait for any reply bytes before failing a request")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->callback([o, &status] { status = run_bench_serve(*o); });
}

}  // namespace baton::cli
