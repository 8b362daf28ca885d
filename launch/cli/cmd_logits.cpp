// `baton logits`: the next-token logits after a prompt, written as float32
// little-endian [n_vocab] (the layout of llama.cpp-made reference files) with the top
// entries printed: how anyone compares baton with another implementation.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "launch/cli/commands.hpp"
#include "launch/cli/engine_flags.hpp"

namespace baton::cli {

namespace {

struct logits_options {
  engine_flags engine;
  std::string prompt;
  std::string prompt_file;
  std::string out;
  int top = 20;
  bool json = false;
};

int run_logits(const logits_options& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) {
    return fail("logits: give the prompt as -p TEXT or --prompt-file FILE (one of them)");
  }
  std::string text = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) {
      return fail(o.prompt_file + ": cannot open");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto l = load(o.engine);
  if (!l) {
    return fail(l.err().message);
  }
  const auto ids = l->tok->encode(text, true, true);
  if (static_cast<int64_t>(ids.size()) > l->eng->options().n_ctx) {
    return fail("prompt (" + std::to_string(ids.size()) + " tokens) exceeds the context size (" +
                std::to_string(l->eng->options().n_ctx) + ")");
  }
  sequence seq;
  auto logits = l->eng->prefill(seq, ids);
  if (!logits) {
    return fail(logits.err().message);
  }
  if (!o.out.empty()) {
    std::ofstream f(o.out, std::ios::binary);
    f.write(reinterpret_cast<const char*>(logits->data()),
            static_cast<std::streamsize>(logits->size() * sizeof(float)));
    if (!f) {
      return fail(o.out + ": cannot write");
    }
  }
  std::vector<int32_t> order(logits->size());
  std::iota(order.begin(), order.end(), 0);
  const auto k = static_cast<size_t>(std::clamp<int>(o.top, 0, static_cast<int>(order.size())));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = (*logits)[static_cast<size_t>(a)];
                      const float lb = (*logits)[static_cast<size_t>(b)];
                      return la > lb || (la == lb && a < b);
                    });
  if (o.json) {
    nlohmann::json j;
    j["n_prompt_tokens"] = ids.size();
    j["prompt_ids"] = ids;
    j["top"] = nlohmann::json::array();
    for (size_t i = 0; i < k; ++i) {
      const int32_t id = order[i];
      auto piece = l->tok->token_piece(id, true);
      j["top"].push_back({{"id", id},
                          {"logit", (*logits)[static_cast<size_t>(id)]},
                          {"piece", piece ? std::string(*piece) : ""}});
    }
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return exit_ok;
  }
  std::printf("%zu prompt tokens; top %zu next tokens:\n", ids.size(), k);
  for (size_t i = 0; i < k; ++i) {
    const int32_t id = order[i];
    auto piece = l->tok->token_piece(id, true);
    std::printf("%8d %12.6f  %s\n", id, static_cast<double>((*logits)[static_cast<size_t>(id)]),
                nlohmann::json(piece ? std::string(*piece) : std::string())
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                    .c_str());
  }
  return exit_ok;
}

}  // namespace

void add_logits_command(CLI::App& app, int& status) {
  auto o = std::make_shared<logits_options>();
  auto* cmd = app.add_subcommand("logits", "Next-token logits after a prompt (float32 file + top-k)");
  o->engine.add_to(*cmd);
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("-f,--prompt-file", o->prompt_file, "Read the prompt's exact bytes from a file");
  cmd->add_option("-o,--out", o->out, "Write the logits here (float32 little-endian [n_vocab])");
  cmd->add_option("--top", o->top, "Entries to print")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o, &status] { status = run_logits(*o); });
}

}  // namespace baton::cli
