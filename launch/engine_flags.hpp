// Flags shared by the commands that compute (run, logits, bench model): model, threads,
// KV cache type, kernel variant, context size; and turning them into a model, a
// tokenizer and an engine with errors that name the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "runtime/engine.hpp"
#include "runtime/tokenizer.hpp"

namespace baton::cli {

struct engine_flags {
  std::string model;
  int threads = 0;         ///< 0: all cores (at most 8... see threads_default)
  std::string kv_type = "f16";
  std::string kernels;     ///< empty: best for this CPU
  int64_t ctx_size = 0;    ///< 0: min(training context, 4096)
  int64_t batch_size = 512;

  void add_to(CLI::App& cmd);
};

struct loaded {
  std::shared_ptr<const model> m;
  std::unique_ptr<tokenizer> tok;
  std::unique_ptr<engine> eng;
};

/// Opens the model (the demo model when none is given), its tokenizer and an engine.
result<loaded> load(const engine_flags& f, int32_t n_seq_max = 1);

}  // namespace baton::cli
