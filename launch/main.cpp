// The `baton` executable: parses the command line and runs one subcommand.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "launch/cli/commands.hpp"
#include "launch/job/signals.hpp"

namespace baton::cli {

namespace {
std::atomic<bool> g_quick_exit{false};
}  // namespace

void request_quick_exit() { g_quick_exit = true; }
bool quick_exit_requested() { return g_quick_exit; }

int fail(const std::string& message) {
  std::fprintf(stderr, "baton: %s\n", message.c_str());
  return exit_bad_input;
}

std::string cache_dir() {
  if (const char* c = std::getenv("BATON_CACHE")) {
    return c;
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/baton";
}

std::string demo_model_path() {
  if (const char* p = std::getenv("BATON_DEMO_MODEL")) {
    return p;
  }
  return cache_dir() + "/demo.gguf";
}

}  // namespace baton::cli

int main(int argc, char** argv) {
  namespace cli = baton::cli;
  cli::start_signal_thread();  // before any thread exists, so all inherit the blocked mask
  CLI::App app{"baton: serves Llama-3-family GGUF models from a pipeline of layer shards"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "baton 0.1.0");
  int status = cli::exit_ok;
  cli::add_info_command(app, status);
  cli::add_tokenize_command(app, status);
  cli::add_mkmodel_command(app, status);
  cli::add_quantize_command(app, status);
  cli::add_run_command(app, status);
  cli::add_serve_command(app, status);
  cli::add_logits_command(app, status);
  cli::add_bench_command(app, status);
  cli::add_plan_command(app, status);
  cli::add_client_command(app, status);
  cli::add_reshard_command(app, status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return cli::exit_bad_input;
  }
  if (cli::quick_exit_requested()) {
    std::fflush(nullptr);
    std::_Exit(status);
  }
  return status;
}
