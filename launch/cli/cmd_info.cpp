// `baton info [--model] M [--json]`: what a GGUF model is, at a glance: architecture,
// hyperparameters, tensor types, weight bytes, KV cache bytes per token, vocabulary.
// The file's own strings are shown with invalid UTF-8 replaced, never thrown on.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "launch/cli/commands.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::cli {

namespace {

struct info_options {
  std::string model;
  std::string model_flag;
  bool json = false;
};

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

nlohmann::json describe(const model& m, const vocab_spec& v) {
  const auto& c = m.config();
  const auto& f = m.file();
  nlohmann::json j;
  j["file"] = f.path();
  j["gguf_version"] = f.version();
  j["file_bytes"] = f.file_size();
  j["alignment"] = f.alignment();
  j["architecture"] = c.architecture;
  j["name"] = c.name;
  j["hparams"] = {
      {"n_vocab", c.n_vocab},       {"n_ctx_train", c.n_ctx_train},
      {"n_embd", c.n_embd},         {"n_layer", c.n_layer},
      {"n_ff", c.n_ff},             {"n_head", c.n_head},
      {"n_head_kv", c.n_head_kv},   {"n_embd_head_k", c.n_embd_head_k},
      {"n_embd_head_v", c.n_embd_head_v}, {"n_rot", c.n_rot},
      {"rope_freq_base", c.rope_freq_base}, {"rms_norm_eps", c.rms_norm_eps},
      {"tied_output", c.tied_output}, {"rope_freqs", c.has_rope_freqs},
  };
  std::map<std::string, std::pair<uint64_t, uint64_t>> hist;  // type -> (count, bytes)
  uint64_t n_params = 0;
  for (const auto& t : f.tensors()) {
    auto& h = hist[std::string(traits(t.type).name)];
    ++h.first;
    h.second += t.n_bytes;
    n_params += static_cast<uint64_t>(t.n_elements());
  }
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, h] : hist) {
    types[name] = {{"tensors", h.first}, {"bytes", h.second}};
  }
  j["tensor_types"] = types;
  j["n_tensors"] = f.tensors().size();
  j["n_params"] = n_params;
  j["weight_bytes"] = m.weight_bytes();
  j["kv_bytes_per_token"] = {{"f16", c.kv_bytes_per_token(ggml_type::f16)},
                             {"f32", c.kv_bytes_per_token(ggml_type::f32)}};
  size_t n_control = 0;
  for (auto t : v.token_types) {
    n_control += t == static_cast<int32_t>(token_type::control) ? 1 : 0;
  }
  auto token_text = [&](int32_t id) -> nlohmann::json {
    if (id < 0 || static_cast<size_t>(id) >= v.tokens.size()) {
      return nullptr;
    }
    return v.tokens[static_cast<size_t>(id)];
  };
  j["vocab"] = {
      {"model", v.model},          {"pre", v.pre},
      {"n_tokens", v.tokens.size()}, {"n_merges", v.merges.size()},
      {"n_control", n_control},    {"bos_id", v.bos_id},
      {"bos", token_text(v.bos_id)}, {"eos_id", v.eos_id},
      {"eos", token_text(v.eos_id)},
  };
  j["chat_template"] = v.chat_template.has_value();
  return j;
}

void print_human(const nlohmann::json& j) {
  const auto& h = j["hparams"];
  auto i64 = [](const nlohmann::json& x) { return x.get<long long>(); };
  std::printf("file            %s (GGUF v%u, %s)\n", j["file"].get<std::string>().c_str(),
              j["gguf_version"].get<unsigned>(), human_bytes(j["file_bytes"]).c_str());
  std::printf("architecture    %s%s%s\n", j["architecture"].get<std::string>().c_str(),
              j["name"].get<std::string>().empty() ? "" : ", name ",
              j["name"].get<std::string>().c_str());
  std::printf("parameters      %.3g M in %zu tensors\n",
              static_cast<double>(j["n_params"].get<uint64_t>()) / 1e6,
              j["n_tensors"].get<size_t>());
  std::printf("layers          %lld\n", i64(h["n_layer"]));
  std::printf("embedding       %lld\n", i64(h["n_embd"]));
  std::printf("feed-forward    %lld\n", i64(h["n_ff"]));
  std::printf("heads           %lld query, %lld KV (grouped-query %lld:1), head size %lld\n",
              i64(h["n_head"]), i64(h["n_head_kv"]), i64(h["n_head"]) / i64(h["n_head_kv"]),
              i64(h["n_embd_head_k"]));
  std::printf("context         %lld tokens (trained)\n", i64(h["n_ctx_train"]));
  std::printf("rope            theta %g over %lld dims, frequency factors %s\n",
              h["rope_freq_base"].get<double>(), i64(h["n_rot"]),
              h["rope_freqs"].get<bool>() ? "yes (rope_freqs)" : "no");
  std::printf("rms norm eps    %g\n", h["rms_norm_eps"].get<double>());
  std::printf("output head     %s\n",
              h["tied_output"].get<bool>() ? "tied to token_embd" : "output.weight");
  std::printf("tensor types   ");
  for (const auto& [name, t] : j["tensor_types"].items()) {
    std::printf(" %s x%llu (%s)", name.c_str(), t["tensors"].get<unsigned long long>(),
                human_bytes(t["bytes"]).c_str());
  }
  std::printf("\n");
  std::printf("weights         %s (%llu bytes)\n", human_bytes(j["weight_bytes"]).c_str(),
              j["weight_bytes"].get<unsigned long long>());
  const auto& kv = j["kv_bytes_per_token"];
  std::printf("KV cache        %llu bytes/token with f16 K/V (%s per 4096 tokens), %llu with f32\n",
              kv["f16"].get<unsigned long long>(),
              human_bytes(kv["f16"].get<uint64_t>() * 4096).c_str(),
              kv["f32"].get<unsigned long long>());
  const auto& v = j["vocab"];
  auto tok = [](const nlohmann::json& x) { return x.is_null() ? std::string("-") : x.get<std::string>(); };
  std::printf("vocabulary      %zu tokens (%s, pre %s), %zu merges, %zu control; bos %d %s, "
              "eos %d %s\n",
              v["n_tokens"].get<size_t>(), v["model"].get<std::string>().c_str(),
              v["pre"].get<std::string>().c_str(), v["n_merges"].get<size_t>(),
              v["n_control"].get<size_t>(), v["bos_id"].get<int>(), tok(v["bos"]).c_str(),
              v["eos_id"].get<int>(), tok(v["eos"]).c_str());
  std::printf("chat template   %s\n", j["chat_template"].get<bool>() ? "present" : "absent");
}

int run_info(const info_options& o) {
  if (!o.model.empty() && !o.model_flag.empty() && o.model != o.model_flag) {
    return fail("info: give the model once, as --model or as the argument, not both");
  }
  std::string path = !o.model_flag.empty() ? o.model_flag : o.model;
  if (path.empty()) {
    path = demo_model_path();
  }
  auto m = model::open(path);
  if (!m) {
    return fail(m.err().message);
  }
  auto v = load_vocab((*m)->file());
  if (!v) {
    return fail(v.err().message);
  }
  // The file's strings (general.name, tokens, the path itself) may be any bytes: invalid
  // UTF-8 becomes U+FFFD in both forms, since a strict dump throws on it.
  const std::string text =
      describe(**m, *v).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  if (o.json) {
    std::printf("%s\n", text.c_str());
  } else {
    print_human(nlohmann::json::parse(text));
  }
  return exit_ok;
}

}  // namespace

void add_info_command(CLI::App& app, int& status) {
  auto opts = std::make_shared<info_options>();
  auto* cmd = app.add_subcommand("info", "Describe a GGUF model: shape, tensor types, KV bytes");
  cmd->add_option("file", opts->model, "GGUF model file (default: the demo model)");
  cmd->add_option("-m,--model", opts->model_flag, "GGUF model file");
  cmd->add_flag("--json", opts->json, "Print JSON");
  cmd->callback([opts, &status] { status = run_info(*opts); });
}

}  // namespace baton::cli
