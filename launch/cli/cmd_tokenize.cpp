// `baton tokenize`: text on stdin to token ids on stdout (space-separated, or a JSON
// array with --json), or with --decode ids back to the exact text. The two round-trip:
// `baton tokenize -m M < f | baton tokenize -m M --decode` prints f unchanged.
#include <cctype>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "launch/cli/commands.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::cli {

result<tokenizer> load_model_tokenizer(const std::string& model) {
  const std::string path = model.empty() ? demo_model_path() : model;
  auto f = gguf_file::open(path);
  if (!f) {
    return error{f.err().message + (model.empty() ? " (no --model given: the demo model)" : "")};
  }
  auto v = load_vocab(*f);
  if (!v) {
    return v.err();
  }
  return tokenizer::create(std::move(*v));
}

namespace {

struct tokenize_options {
  std::string model;
  bool no_bos = false;
  bool no_parse_special = false;
  bool json = false;
  bool decode = false;
};

/// Reads integers separated by anything that is not a digit or '-' ("[1, 2]" or "1 2").
result<std::vector<int32_t>> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      size_t j = i + 1;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) {
        ++j;
      }
      const std::string num = text.substr(i, j - i);
      try {
        const long long v = std::stoll(num);
        if (v < INT32_MIN || v > INT32_MAX) {
          throw std::out_of_range(num);
        }
        ids.push_back(static_cast<int32_t>(v));
      } catch (const std::exception&) {
        return make_error("tokenize --decode: '%s' at byte %zu is not a token id", num.c_str(), i);
      }
      i = j;
    } else if (std::isspace(static_cast<unsigned char>(c)) || c == ',' || c == '[' || c == ']') {
      ++i;
    } else {
      return make_error("tokenize --decode: unexpected '%c' at byte %zu (expected ids separated "
                        "by spaces or commas)",
                        c, i);
    }
  }
  return ids;
}

int run_tokenize(const tokenize_options& o) {
  auto tok = load_model_tokenizer(o.model);
  if (!tok) {
    return fail(tok.err().message);
  }
  const std::string input(std::istreambuf_iterator<char>(std::cin), {});
  if (o.decode) {
    auto ids = parse_ids(input);
    if (!ids) {
      return fail(ids.err().message);
    }
    decode_options d;
    d.remove_bos = true;
    d.render_special = true;
    auto text = tok->decode(*ids, d);
    if (!text) {
      return fail(text.err().message);
    }
    std::fwrite(text->data(), 1, text->size(), stdout);
    return exit_ok;
  }
  const auto ids = tok->encode(input, !o.no_bos, !o.no_parse_special);
  if (o.json) {
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      line += (i ? " " : "") + std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return exit_ok;
}

}  // namespace

void add_tokenize_command(CLI::App& app, int& status) {
  auto o = std::make_shared<tokenize_options>();
  auto* cmd = app.add_subcommand("tokenize", "Text on stdin to token ids, or --decode ids to text");
  cmd->add_option("-m,--model", o->model, "GGUF model file (default: the demo model)");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend BOS");
  cmd->add_flag("--no-parse-special", o->no_parse_special,
                "Treat special-token text such as <|eot_id|> as plain text");
  cmd->add_flag("--json", o->json, "Print the ids as a JSON array");
  cmd->add_flag("--decode", o->decode, "Read ids on stdin and print their text");
  cmd->callback([o, &status] { status = run_tokenize(*o); });
}

}  // namespace baton::cli
