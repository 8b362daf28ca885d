// `baton quantize IN OUT TYPE`: converts a Llama GGUF model to another weight type by
// llama-quantize's rules (runtime/model/quantize.hpp), writing OUT.partial and renaming it
// when complete, then prints what it did on stderr.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "launch/cli/commands.hpp"
#include "runtime/model/ftype.hpp"
#include "runtime/model/quantize.hpp"

namespace baton::cli {

namespace {

struct quantize_cli_options {
  std::string input;
  std::string output;
  std::string type;
  bool pure = false;
  int threads = 2;
};

double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

int run_quantize(const quantize_cli_options& o) {
  auto target = parse_ftype(o.type);
  if (!target) {
    return fail("quantize: unknown type '" + o.type + "' (expected " +
                ftype_names(" or ", /*aliases=*/true) + ")");
  }
  if (o.threads < 1) {
    return fail("quantize: --threads is " + std::to_string(o.threads) + ", expected >= 1");
  }
  if (!std::filesystem::exists(o.input)) {
    return fail("quantize: " + o.input + ": no such file");
  }
  const auto parent = std::filesystem::path(o.output).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent)) {
    return fail("quantize: the output folder " + parent.string() + " does not exist");
  }

  quantize_options q;
  q.target = *target;
  q.pure = o.pure;
  q.n_threads = o.threads;
  const auto t0 = std::chrono::steady_clock::now();
  // Write beside the target and rename, so a reader never sees half a file.
  const std::string tmp = o.output + ".partial";
  auto s = quantize_model(o.input, tmp, q);
  if (!s) {
    return fail(s.err().message);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, o.output, ec);
  if (ec) {
    return fail("quantize: cannot rename " + tmp + " to " + o.output + ": " + ec.message());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::map<std::string, int> counts;
  for (const auto& t : s->tensors) {
    ++counts[std::string(traits(t.to).name)];
  }
  std::string types;
  for (const auto& [name, n] : counts) {
    types += (types.empty() ? "" : ", ") + name + " x" + std::to_string(n);
  }
  const std::string fallback =
      s->n_fallback > 0 ? ", " + std::to_string(s->n_fallback) + " by block-size fallback" : "";
  std::fprintf(stderr,
               "quantize: wrote %s as %s%s (file type %u): %lld of %lld tensors converted "
               "(%s)%s, %.2f MiB -> %.2f MiB of weights, in %.2f s\n",
               o.output.c_str(), std::string(info(*target).name).c_str(),
               o.pure ? " --pure" : "", s->file_type, static_cast<long long>(s->n_converted),
               static_cast<long long>(s->n_tensors), types.c_str(), fallback.c_str(),
               mib(s->bytes_in), mib(s->bytes_out), secs);
  return exit_ok;
}

}  // namespace

void add_quantize_command(CLI::App& app, int& status) {
  auto o = std::make_shared<quantize_cli_options>();
  auto* cmd = app.add_subcommand(
      "quantize",
      "Convert a GGUF model's weights (" + ftype_names(", ") + ") as llama-quantize does");
  cmd->add_option("input", o->input, "Input GGUF model")->required();
  cmd->add_option("output", o->output, "Output GGUF file")->required();
  cmd->add_option("type", o->type, ftype_names(", ", /*aliases=*/true, /*note_aliases=*/true))
      ->required();
  cmd->add_flag("--pure", o->pure,
                "Every 2-D weight gets TYPE: no Q6_K head, no Q4_K_M mixture "
                "(llama-quantize --pure)");
  cmd->add_option("-t,--threads", o->threads, "Threads per tensor")->capture_default_str();
  cmd->callback([o, &status] { status = run_quantize(*o); });
}

}  // namespace baton::cli
