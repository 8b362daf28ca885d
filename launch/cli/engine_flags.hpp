// Flags shared by the commands that compute (run, serve, logits, bench model, bench
// batch): model, threads, KV cache type, kernel variant, context size, memory budget;
// and turning them into a model, a tokenizer, the process's memory plan and (for the
// commands that need one) an engine, with errors that name the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "actors/local_server.hpp"
#include "kernels/cpu/isa.hpp"
#include "runtime/compute/engine.hpp"
#include "runtime/serving/serving_config.hpp"
#include "runtime/text/tokenizer.hpp"

namespace baton::cli {

struct engine_flags {
  std::string model;
  int threads = 0;         ///< 0: all cores (at most 8... see threads_default)
  std::string kv_type = "f16";
  std::string kernels;     ///< empty: best for this CPU
  bool no_repack = false;  ///< keep the weights in the file's layout and pages
  int64_t ctx_size = 0;    ///< 0: min(training context, 4096)
  int64_t batch_size = 512;
  int32_t stages = 1;      ///< pipeline stages in this process
  double memory_utilization = 0.9;  ///< vLLM's meaning, of the memory budget
  std::string kv_cache_memory;      ///< bytes ("2GiB", "512M", "1000000"); overrides
  bool quiet = false;               ///< no budget line on stderr
  std::string topology;             ///< a topology file (commands that run a pipeline)
  std::string device = "cpu";       ///< without --topology: cpu, cuda:N, or cuda (per rank)
  bool nccl = false;                ///< GPU stages of different ranks exchange over NCCL
  std::string stage_timeout = "30s";  ///< a rank answering no heartbeat this long is lost

  void add_to(CLI::App& cmd);
  /// --kv-cache-memory in bytes (nothing when not given); the error names the flag.
  result<std::optional<uint64_t>> kv_cache_bytes() const;
  /// --stage-timeout as a duration; the error names the flag.
  result<std::chrono::milliseconds> stage_timeout_ms() const;
  /// --topology, for the commands that run the actor pipeline.
  void add_topology_to(CLI::App& cmd);
};

/// --kernels as an isa: the best this CPU runs when empty; the error names the flag and
/// the value (not a variant's name, or one this CPU cannot run).
result<cpu::isa> kernels_isa(const std::string& kernels);

/// What a command asks of `load` besides its flags.
struct load_request {
  int32_t n_seq_max = 1;      ///< sequences at once (the KV and logits they need)
  bool with_engine = true;    ///< also a single-process engine (logits, bench model, bench
                              ///< batch's overhead run); the actor pipeline needs none
  int32_t block_size = 0;     ///< tokens per KV block the server will use (0: the engine's 16)
  int64_t batch_tokens = 0;   ///< tokens per step the server will run (0: --batch-size)
};

struct loaded {
  std::shared_ptr<const model> m;
  std::shared_ptr<tokenizer> tok;
  std::unique_ptr<engine> eng;
  engine_options opts;   ///< what the engine was (or would be) built with
  int32_t n_threads = 1;
  int32_t n_blocks = 0;  ///< KV blocks the budget allows (at most what n_seq_max need)
};


/// Opens the model (the demo model when none is given) and its tokenizer, sizes the KV
/// cache from the memory budget (cgroup limit, else RAM; --memory-utilization,
/// --kv-cache-memory) and the threads from the CPU quota, logs both with their sources,
/// and builds an engine (unless `with_engine` is false). Errors name the flag and the
/// numbers: a budget that cannot hold the weights plus one sequence of KV is one.
/// The memory plan is made for `want`'s step size and block size, the ones the server will
/// run with (serve's --max-num-batched-tokens and --block-size), so no number is planned
/// with one value and used with another.
result<loaded> load(const engine_flags& f, const load_request& want = {});

/// The options of a local_server for `n_stages` stages with the settings `s` of the
/// command, and what `load` decided: the context, the KV type and the KV blocks (the
/// memory plan's), the threads and the kernels.
server_options server_options_for(const loaded& l, int32_t n_stages, serving_config s);

}  // namespace baton::cli
