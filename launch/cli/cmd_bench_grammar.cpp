// `baton bench grammar [-m M] PATH... [--json]`: MaskBench's protocol
// (runtime/grammar/maskbench.hpp) over test files or folders of them, with the model's
// tokenizer (the demo model's by default). Prints passing / compile error / validation
// error / invalidation error counts and the time to first mask (TTFM) and between masks
// (TBM): mean, p50, p99, p99.9, max.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "launch/cli/commands.hpp"
#include "runtime/grammar/maskbench.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::cli {

namespace {

struct bench_grammar_options {
  std::string model;
  std::vector<std::string> paths;
  bool json = false;
  bool lenient = false;
  bool verbose = false;
};

struct percentiles {
  double mean = 0, p50 = 0, p99 = 0, p999 = 0, max = 0;
  size_t n = 0;
};

percentiles summarize(std::vector<double> v) {
  percentiles p;
  p.n = v.size();
  if (v.empty()) {
    return p;
  }
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) {
    sum += x;
  }
  auto at = [&](double q) {
    const auto i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  p.mean = sum / static_cast<double>(v.size());
  p.p50 = at(0.5);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = v.back();
  return p;
}

nlohmann::json to_json(const percentiles& p) {
  return {{"mean", p.mean}, {"p50", p.p50}, {"p99", p.p99}, {"p99_9", p.p999}, {"max", p.max},
          {"n", p.n}};
}

int run_bench_grammar(const bench_grammar_options& o) {
  std::vector<std::string> files;
  for (const auto& p : o.paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec)) {
        if (e.is_regular_file() && e.path().extension() == ".json") {
          files.push_back(e.path().string());
        }
      }
    } else if (std::filesystem::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      return fail(p + ": no such file or folder");
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return fail("no .json test files under the paths given");
  }
  const std::string path = o.model.empty() ? demo_model_path() : o.model;
  auto tok = load_model_tokenizer(o.model);
  if (!tok) {
    return fail(tok.err().message);
  }
  const auto trie = grammar::token_trie::build(*tok);
  grammar::schema_options opts;
  opts.strict = !o.lenient;

  int64_t passing = 0, compile_error = 0, validation_error = 0, invalidation_error = 0;
  int64_t with_tests = 0, n_tests = 0, tests_validation = 0, tests_invalidation = 0;
  std::vector<double> tbm, ttfm;
  std::map<std::string, int64_t> refused_by;
  for (const auto& file : files) {
    auto r = grammar::run_maskbench(file, *tok, trie, opts);
    if (!r) {
      return fail(r.err().message);
    }
    ttfm.push_back(r->ttfm_us);
    tbm.insert(tbm.end(), r->tbm_us.begin(), r->tbm_us.end());
    with_tests += r->n_tests > 0 ? 1 : 0;
    n_tests += r->n_tests;
    tests_validation += r->validation_errors;
    tests_invalidation += r->invalidation_errors;
    if (!r->compiled) {
      ++compile_error;
      ++refused_by[r->why.keyword.empty() ? "(schema)" : r->why.keyword];
      if (o.verbose) {
        std::fprintf(stderr, "%s: compile error: %s\n", file.c_str(), r->why.message.c_str());
      }
    } else if (r->validation_errors > 0) {
      ++validation_error;
    } else if (r->invalidation_errors > 0) {
      ++invalidation_error;
    } else {
      ++passing;
    }
    if (o.verbose) {
      for (const auto& n : r->notes) {
        std::fprintf(stderr, "%s: %s\n", file.c_str(), n.c_str());
      }
    }
  }
  const auto tb = summarize(tbm);
  const auto tf = summarize(ttfm);
  const auto n_files = static_cast<double>(files.size());
  if (o.json) {
    nlohmann::json j = {{"files", files.size()},
                        {"files_with_tests", with_tests},
                        {"tests", n_tests},
                        {"passing", passing},
                        {"compile_error", compile_error},
                        {"validation_error", validation_error},
                        {"invalidation_error", invalidation_error},
                        {"tests_validation_error", tests_validation},
                        {"tests_invalidation_error", tests_invalidation},
                        {"strict", opts.strict},
                        {"tbm_us", to_json(tb)},
                        {"ttfm_us", to_json(tf)},
                        {"compile_error_by_keyword", refused_by}};
    std::printf("%s\n", j.dump(2).c_str());
    return exit_ok;
  }
  std::printf("files %zu (%lld with tests, %lld tests), tokenizer of %s, %s schemas\n", files.size(),
              static_cast<long long>(with_tests), static_cast<long long>(n_tests), path.c_str(),
              opts.strict ? "strict" : "lenient");
  std::printf("passing             %6lld  (%.1f %%)\n", static_cast<long long>(passing),
              100.0 * static_cast<double>(passing) / n_files);
  std::printf("compile error       %6lld  (%.1f %%)\n", static_cast<long long>(compile_error),
              100.0 * static_cast<double>(compile_error) / n_files);
  std::printf("validation error    %6lld  (%.1f %%; %lld valid instances rejected)\n",
              static_cast<long long>(validation_error), 100.0 * static_cast<double>(validation_error) / n_files,
              static_cast<long long>(tests_validation));
  std::printf("invalidation error  %6lld  (%.1f %%; %lld invalid instances accepted)\n",
              static_cast<long long>(invalidation_error),
              100.0 * static_cast<double>(invalidation_error) / n_files,
              static_cast<long long>(tests_invalidation));
  std::printf("TBM  us: mean %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (%zu masks)\n", tb.mean,
              tb.p50, tb.p99, tb.p999, tb.max, tb.n);
  std::printf("TTFM us: mean %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", tf.mean, tf.p50,
              tf.p99, tf.p999, tf.max);
  if (!refused_by.empty()) {
    std::string line;
    for (const auto& [k, n] : refused_by) {
      line += (line.empty() ? "" : ", ") + k + " " + std::to_string(n);
    }
    std::printf("compile errors by keyword: %s\n", line.c_str());
  }
  return exit_ok;
}

}  // namespace

void add_bench_grammar_command(CLI::App& bench, int& status) {
  auto o = std::make_shared<bench_grammar_options>();
  auto* cmd = bench.add_subcommand(
      "grammar", "MaskBench's protocol: JSON Schema test files through the token masks");
  cmd->add_option("-m,--model", o->model, "GGUF model whose tokenizer to use (default: the demo model)");
  cmd->add_option("paths", o->paths, "Test files or folders of them ({\"schema\", \"tests\"})")
      ->required();
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->add_flag("--lenient", o->lenient,
                "Leave out keywords the grammar cannot enforce instead of refusing the schema");
  cmd->add_flag("-v,--verbose", o->verbose, "Name each refused schema and failed instance on stderr");
  cmd->callback([o, &status] { status = run_bench_grammar(*o); });
}

}  // namespace baton::cli
