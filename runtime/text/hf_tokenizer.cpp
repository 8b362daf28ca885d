// load_hf_tokenizer of vocab.hpp: a Hugging Face tokenizer.json (byte-level BPE with
// Llama 3's pre-tokenizer) and the tokenizer_config.json beside it, read into the
// vocab_spec that llama.cpp's convert_hf_to_gguf.py writes into GGUF files: tokens by
// id (model.vocab, then added_tokens), added tokens typed control when special and
// user-defined otherwise, merges as "left right" strings, Llama 3's ids for bos and eos.
#include <climits>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "runtime/system/files.hpp"
#include "runtime/text/vocab.hpp"

namespace baton {

namespace {

using json = nlohmann::json;

// Llama 3's pre-tokenizer regex as tokenizer.json spells it.
constexpr const char* k_llama3_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

result<json> read_json_file(const std::string& path) {
  // only a regular file (a FIFO would block), and not more than a tokenizer needs
  auto text = read_regular_file(path, uint64_t{256} << 20, "tokenizer file");
  if (!text) {
    return text.err();
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return make_error("%s: not valid JSON", path.c_str());
  }
  if (!j.is_object()) {
    return make_error("%s: expected a JSON object at the top level", path.c_str());
  }
  return j;
}

std::string type_name(const json& j) { return j.type_name(); }

/// Whether `pre` is Llama 3's: a Split on its regex followed by ByteLevel without regex.
bool is_llama3_pre_tokenizer(const json& pre) {
  if (!pre.is_object()) {
    return false;
  }
  std::vector<const json*> steps;
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].is_array()) {
    for (const auto& s : pre["pretokenizers"]) {
      steps.push_back(&s);
    }
  } else {
    steps.push_back(&pre);
  }
  bool split = false;
  bool byte_level = false;
  for (const json* s : steps) {
    if (!s->is_object()) {
      return false;
    }
    const std::string type = s->value("type", "");
    if (type == "Split") {
      const auto pattern = s->find("pattern");
      if (pattern == s->end() || !pattern->is_object() || !pattern->contains("Regex") ||
          !(*pattern)["Regex"].is_string() || (*pattern)["Regex"] != k_llama3_regex) {
        return false;
      }
      split = true;
    } else if (type == "ByteLevel") {
      // With use_regex the GPT-2 regex would split a second time.
      if (!split || s->value("use_regex", true)) {
        return false;
      }
      byte_level = true;
    } else {
      return false;
    }
  }
  return split && byte_level;
}

/// A special-token field of tokenizer_config.json: a string or {"content": ...}.
result<std::optional<std::string>> token_field(const json& cfg, const char* key,
                                               const std::string& path) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    return std::optional<std::string>();
  }
  if (it->is_string()) {
    return std::optional<std::string>(it->get<std::string>());
  }
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return std::optional<std::string>((*it)["content"].get<std::string>());
  }
  return make_error("%s: '%s' is %s, expected a string or an object with 'content'",
                    path.c_str(), key, type_name(*it).c_str());
}

}  // namespace

result<vocab_spec> load_hf_tokenizer(const std::string& tokenizer_json_path) {
  const std::string& path = tokenizer_json_path;
  auto doc = read_json_file(path);
  if (!doc) {
    return doc.err();
  }
  const json& j = *doc;

  // -- model ------------------------------------------------------------------------
  const auto model_it = j.find("model");
  if (model_it == j.end() || !model_it->is_object()) {
    return make_error("%s: 'model' is missing or not an object", path.c_str());
  }
  const json& model = *model_it;
  if (model.contains("type")) {
    if (!model["type"].is_string() || model["type"] != "BPE") {
      return make_error("%s: model.type is %s, expected \"BPE\"", path.c_str(),
                        model["type"].dump().c_str());
    }
  }
  if (model.value("byte_fallback", false)) {
    return make_error("%s: model.byte_fallback is true (SentencePiece-style BPE), expected "
                      "byte-level BPE",
                      path.c_str());
  }
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    return make_error("%s: normalizer is %s, expected null (Llama 3 has none)", path.c_str(),
                      j["normalizer"].value("type", type_name(j["normalizer"])).c_str());
  }
  if (!is_llama3_pre_tokenizer(j.value("pre_tokenizer", json()))) {
    return make_error("%s: pre_tokenizer is not Llama 3's (a Split on Llama 3's regex, then "
                      "ByteLevel without regex); only 'llama-bpe' is supported",
                      path.c_str());
  }

  // -- tokens -----------------------------------------------------------------------
  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return make_error("%s: model.vocab is missing or not an object of token -> id",
                      path.c_str());
  }
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;  // id -> (text, type)
  for (const auto& [text, id] : vocab_it->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
      return make_error("%s: model.vocab[\"%s\"] is %s, expected a token id", path.c_str(),
                        text.c_str(), id.dump().c_str());
    }
    const auto [it, inserted] =
        by_id.emplace(id.get<int64_t>(), std::make_pair(text, int32_t{1}));
    if (!inserted) {
      return make_error("%s: model.vocab has id %lld twice (\"%s\" and \"%s\")", path.c_str(),
                        static_cast<long long>(id.get<int64_t>()), it->second.first.c_str(),
                        text.c_str());
    }
  }
  const auto added_it = j.find("added_tokens");
  if (added_it != j.end() && !added_it->is_null()) {
    if (!added_it->is_array()) {
      return make_error("%s: added_tokens is %s, expected an array", path.c_str(),
                        type_name(*added_it).c_str());
    }
    for (size_t i = 0; i < added_it->size(); ++i) {
      const json& a = (*added_it)[i];
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
          a["id"].get<int64_t>() >= INT32_MAX) {
        return make_error("%s: added_tokens[%zu] needs an integer 'id' and a string 'content'",
                          path.c_str(), i);
      }
      // convert_hf_to_gguf.py: special added tokens are control, the others user-defined.
      const int32_t type = a.value("special", false) ? 3 : 4;
      by_id[a["id"].get<int64_t>()] = {a["content"].get<std::string>(), type};
    }
  }
  if (by_id.empty()) {
    return make_error("%s: model.vocab has no tokens", path.c_str());
  }
  vocab_spec spec;
  spec.model = "gpt2";
  spec.pre = "llama-bpe";
  int64_t expected = 0;
  for (auto& [id, entry] : by_id) {
    if (id != expected) {
      return make_error("%s: no token has id %lld (ids must run from 0 to %lld without gaps)",
                        path.c_str(), static_cast<long long>(expected),
                        static_cast<long long>(by_id.rbegin()->first));
    }
    spec.tokens.push_back(std::move(entry.first));
    spec.token_types.push_back(entry.second);
    ++expected;
  }

  // -- merges -----------------------------------------------------------------------
  const auto merges_it = model.find("merges");
  if (merges_it != model.end() && !merges_it->is_null()) {
    if (!merges_it->is_array()) {
      return make_error("%s: model.merges is %s, expected an array", path.c_str(),
                        type_name(*merges_it).c_str());
    }
    spec.merges.reserve(merges_it->size());
    for (size_t i = 0; i < merges_it->size(); ++i) {
      const json& m = (*merges_it)[i];
      if (m.is_string()) {
        spec.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        return make_error("%s: model.merges[%zu] is %s, expected \"left right\" or "
                          "[\"left\", \"right\"]",
                          path.c_str(), i, m.dump().c_str());
      }
    }
  }

  const auto find_id = [&](const std::string& text) -> int32_t {
    for (size_t i = spec.tokens.size(); i-- > 0;) {  // the last one, as llama.cpp's map
      if (spec.tokens[i] == text) {
        return static_cast<int32_t>(i);
      }
    }
    return -1;
  };

  // -- tokenizer_config.json ----------------------------------------------------------
  std::optional<std::string> bos_text;
  std::optional<std::string> eos_text;
  const std::string dir = [&] {
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
  }();
  const std::string config_path = dir + "/tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    auto cfg_doc = read_json_file(config_path);
    if (!cfg_doc) {
      return cfg_doc.err();
    }
    const json& cfg = *cfg_doc;
    auto bos = token_field(cfg, "bos_token", config_path);
    if (!bos) {
      return bos.err();
    }
    bos_text = *bos;
    auto eos = token_field(cfg, "eos_token", config_path);
    if (!eos) {
      return eos.err();
    }
    eos_text = *eos;
    if (const auto it = cfg.find("add_bos_token"); it != cfg.end() && !it->is_null()) {
      if (!it->is_boolean()) {
        return make_error("%s: add_bos_token is %s, expected true or false",
                          config_path.c_str(), it->dump().c_str());
      }
      spec.add_bos = it->get<bool>();
    }
    if (const auto it = cfg.find("chat_template"); it != cfg.end() && !it->is_null()) {
      if (it->is_string()) {
        spec.chat_template = it->get<std::string>();
      } else if (it->is_array()) {
        // Newer configs: [{"name": "default", "template": ...}, {"name": "tool_use", ...}].
        for (const auto& t : *it) {
          if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
              t["template"].is_string()) {
            spec.chat_template = t["template"].get<std::string>();
          }
        }
        if (!spec.chat_template) {
          return make_error("%s: chat_template is a list without a \"default\" template",
                            config_path.c_str());
        }
      } else {
        return make_error("%s: chat_template is %s, expected a string", config_path.c_str(),
                          type_name(*it).c_str());
      }
    }
  }

  if (bos_text) {
    spec.bos_id = find_id(*bos_text);
    if (spec.bos_id < 0) {
      return make_error("%s: bos_token \"%s\" is not in the vocabulary of %s",
                        config_path.c_str(), bos_text->c_str(), path.c_str());
    }
  } else {
    spec.bos_id = find_id("<|begin_of_text|>");
  }
  // Llama 3 Instruct ends a turn with <|eot_id|>; the shared GGUF models carry it as eos.
  spec.eos_id = find_id("<|eot_id|>");
  if (spec.eos_id < 0 && eos_text) {
    spec.eos_id = find_id(*eos_text);
    if (spec.eos_id < 0) {
      return make_error("%s: eos_token \"%s\" is not in the vocabulary of %s",
                        config_path.c_str(), eos_text->c_str(), path.c_str());
    }
  }
  return spec;
}

}  // namespace baton
