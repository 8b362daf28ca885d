// load_vocab of vocab.hpp: the `tokenizer.ggml.*` keys of a GGUF file, with their
// types and lengths checked (tokens and token types must have one entry per token).
#include "runtime/text/vocab.hpp"

#include "runtime/model/gguf.hpp"

namespace baton {

namespace {

result<std::vector<std::string>> string_array(const gguf_file& f, std::string_view key,
                                              bool required) {
  const auto* v = f.find(key);
  if (!v) {
    if (required) {
      return make_error("%s: missing metadata '%.*s'", f.path().c_str(),
                        static_cast<int>(key.size()), key.data());
    }
    return std::vector<std::string>{};
  }
  const auto* a = v->as_array();
  if (!a || a->type != gguf_type::string) {
    return make_error("%s: metadata '%.*s' is %s, expected an array of strings",
                      f.path().c_str(), static_cast<int>(key.size()), key.data(),
                      v->to_display().c_str());
  }
  std::vector<std::string> out;
  out.reserve(a->items.size());
  for (const auto& item : a->items) {
    out.push_back(*item.as_string());
  }
  return out;
}

}  // namespace

result<vocab_spec> load_vocab(const gguf_file& f) {
  vocab_spec spec;
  const std::string& fn = f.path();
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model) {
    return model.err();
  }
  if (!*model) {
    return make_error("%s: missing metadata 'tokenizer.ggml.model' (the file has no tokenizer)",
                      fn.c_str());
  }
  spec.model = **model;
  auto pre = f.get_string("tokenizer.ggml.pre");
  if (!pre) {
    return pre.err();
  }
  spec.pre = pre->value_or("default");

  auto tokens = string_array(f, "tokenizer.ggml.tokens", true);
  if (!tokens) {
    return tokens.err();
  }
  spec.tokens = std::move(*tokens);

  if (const auto* tt = f.find("tokenizer.ggml.token_type")) {
    const auto* a = tt->as_array();
    if (!a || !(a->type == gguf_type::int32 || a->type == gguf_type::uint32)) {
      return make_error("%s: metadata 'tokenizer.ggml.token_type' is %s, expected an array of "
                        "int32",
                        fn.c_str(), tt->to_display().c_str());
    }
    if (a->items.size() != spec.tokens.size()) {
      return make_error("%s: metadata 'tokenizer.ggml.token_type' has %zu entries, expected "
                        "%zu (one per token)",
                        fn.c_str(), a->items.size(), spec.tokens.size());
    }
    spec.token_types.reserve(a->items.size());
    for (const auto& item : a->items) {
      spec.token_types.push_back(static_cast<int32_t>(*item.as_int()));
    }
  } else {
    spec.token_types.assign(spec.tokens.size(), static_cast<int32_t>(token_type::normal));
  }

  auto merges = string_array(f, "tokenizer.ggml.merges", false);
  if (!merges) {
    return merges.err();
  }
  spec.merges = std::move(*merges);

  const auto n_vocab = static_cast<int64_t>(spec.tokens.size());
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    auto id = f.get_int(key);
    if (!id) {
      return id.err();
    }
    if (*id && (**id < 0 || **id >= n_vocab)) {
      return make_error("%s: metadata '%s' is %lld, expected a token id below %lld", fn.c_str(),
                        key, static_cast<long long>(**id), static_cast<long long>(n_vocab));
    }
    int32_t& dst = std::string_view(key).find("bos") != std::string_view::npos ? spec.bos_id
                                                                              : spec.eos_id;
    dst = *id ? static_cast<int32_t>(**id) : -1;
  }
  auto add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  if (!add_bos) {
    return add_bos.err();
  }
  spec.add_bos = *add_bos;
  auto tmpl = f.get_string("tokenizer.chat_template");
  if (!tmpl) {
    return tmpl.err();
  }
  spec.chat_template = *tmpl;
  return spec;
}

}  // namespace baton
