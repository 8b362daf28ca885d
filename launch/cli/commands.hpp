// The `baton` subcommands. Each adds itself to the CLI11 app; its callback stores the
// process exit status in `status`: 0 done, 2 bad input (a bad file, flag or value, with
// a message naming it on stderr), 1 an internal failure.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "runtime/text/tokenizer.hpp"

namespace baton::cli {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_bad_input = 2;

void add_info_command(CLI::App& app, int& status);
void add_tokenize_command(CLI::App& app, int& status);
void add_mkmodel_command(CLI::App& app, int& status);
void add_quantize_command(CLI::App& app, int& status);
void add_run_command(CLI::App& app, int& status);
void add_serve_command(CLI::App& app, int& status);
void add_logits_command(CLI::App& app, int& status);
void add_bench_command(CLI::App& app, int& status);
void add_plan_command(CLI::App& app, int& status);
/// `baton bench calibrate` (launch/cli/cmd_bench_calibrate.cpp).
void add_bench_calibrate_command(CLI::App& bench, int& status);
void add_bench_link_command(CLI::App& bench, int& status);
/// `baton bench grammar` (cmd_bench_grammar.cpp): MaskBench's protocol on JSON Schemas.
void add_bench_grammar_command(CLI::App& bench, int& status);
/// `baton bench batch` (cmd_bench_batch.cpp), under the `bench` subcommand.
void add_bench_batch_command(CLI::App& bench, int& status);
/// `baton bench serve` (cmd_bench_serve.cpp): load against an OpenAI-compatible server.
void add_bench_serve_command(CLI::App& bench, int& status);
/// `baton client` (cmd_client.cpp): one request to an OpenAI-compatible server.
void add_client_command(CLI::App& app, int& status);
void add_reshard_command(CLI::App& app, int& status);

/// After the command, end the process with _Exit (stdio flushed) instead of returning
/// from main: an MPI job leaves threads of its actor systems behind.
void request_quick_exit();
bool quick_exit_requested();

/// Prints "baton: <message>" on stderr and returns exit_bad_input.
int fail(const std::string& message);

/// baton's cache folder: $BATON_CACHE, else ~/.cache/baton (what scripts/setup.sh fills).
std::string cache_dir();

/// The demo model's path: $BATON_DEMO_MODEL, else <cache>/demo.gguf.
std::string demo_model_path();

/// The tokenizer of the GGUF file at `model` (empty: the demo model), for commands that
/// need only the vocabulary; the error says which file (cmd_tokenize.cpp).
result<tokenizer> load_model_tokenizer(const std::string& model);

}  // namespace baton::cli
