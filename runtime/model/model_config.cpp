// model_config.hpp: hyperparameters, tensor map and shape checks for `llama` models.
#include "runtime/model/model_config.hpp"

#include <algorithm>

#include <set>

namespace baton {

namespace {

using ll = long long;

result<int64_t> required_int(const gguf_file& f, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) {
    return v.err();
  }
  if (!*v) {
    return make_error("%s: missing metadata '%s'", f.path().c_str(), key.c_str());
  }
  if (**v <= 0) {
    return make_error("%s: metadata '%s' is %lld, expected > 0", f.path().c_str(), key.c_str(),
                      static_cast<ll>(**v));
  }
  return **v;
}

result<int64_t> optional_int(const gguf_file& f, const std::string& key, int64_t fallback) {
  auto v = f.get_int(key);
  if (!v) {
    return v.err();
  }
  if (!*v) {
    return fallback;
  }
  if (**v <= 0) {
    return make_error("%s: metadata '%s' is %lld, expected > 0", f.path().c_str(), key.c_str(),
                      static_cast<ll>(**v));
  }
  return **v;
}

}  // namespace

uint64_t model_config::step_bytes_per_token() const {
  const int64_t n_q = n_head * n_embd_head_k;
  const int64_t floats = 3 * n_embd + 2 * n_q + 2 * n_embd_k_gqa() + 2 * n_ff +
                         std::max(n_embd, n_ff) + n_rot;
  return static_cast<uint64_t>(floats) * sizeof(float);
}

uint64_t model_config::kv_bytes_per_token(ggml_type kv_type) const {
  return kv_bytes_per_token(kv_type, 0, n_layer);
}

uint64_t model_config::kv_bytes_per_token(ggml_type kv_type, int64_t first, int64_t last) const {
  BATON_ASSERT(kv_type == ggml_type::f16 || kv_type == ggml_type::f32);
  BATON_ASSERT(0 <= first && first <= last && last <= n_layer);
  const uint64_t elem = traits(kv_type).type_size;
  return static_cast<uint64_t>(last - first) * static_cast<uint64_t>(n_head_kv) *
         static_cast<uint64_t>(n_embd_head_k + n_embd_head_v) * elem;
}

result<model_config> read_model_config(const gguf_file& f) {
  model_config c;
  const std::string& fn = f.path();
  auto arch = f.get_string("general.architecture");
  if (!arch) {
    return arch.err();
  }
  if (!*arch) {
    return make_error("%s: missing metadata 'general.architecture'", fn.c_str());
  }
  if (**arch != "llama") {
    return make_error("%s: unsupported architecture '%s' (baton runs 'llama': Llama 2/3 family)",
                      fn.c_str(), (**arch).c_str());
  }
  c.architecture = **arch;
  auto name = f.get_string("general.name");
  if (!name) {
    return name.err();
  }
  c.name = name->value_or("");

  const std::string p = "llama.";
  struct {
    const char* key;
    int64_t* dst;
  } required[] = {
      {"block_count", &c.n_layer},
      {"embedding_length", &c.n_embd},
      {"feed_forward_length", &c.n_ff},
      {"attention.head_count", &c.n_head},
      {"context_length", &c.n_ctx_train},
  };
  for (auto& r : required) {
    auto v = required_int(f, p + r.key);
    if (!v) {
      return v.err();
    }
    *r.dst = *v;
  }
  if (c.n_embd % c.n_head != 0) {
    return make_error("%s: 'llama.embedding_length' (%lld) is not a multiple of "
                      "'llama.attention.head_count' (%lld)",
                      fn.c_str(), static_cast<ll>(c.n_embd), static_cast<ll>(c.n_head));
  }
  struct {
    const char* key;
    int64_t* dst;
    int64_t fallback;
  } optional[] = {
      {"attention.head_count_kv", &c.n_head_kv, c.n_head},
      {"attention.key_length", &c.n_embd_head_k, c.n_embd / c.n_head},
      {"attention.value_length", &c.n_embd_head_v, c.n_embd / c.n_head},
  };
  for (auto& o : optional) {
    auto v = optional_int(f, p + o.key, o.fallback);
    if (!v) {
      return v.err();
    }
    *o.dst = *v;
  }
  auto n_rot = optional_int(f, p + "rope.dimension_count", c.n_embd_head_k);
  if (!n_rot) {
    return n_rot.err();
  }
  c.n_rot = *n_rot;
  if (c.n_head % c.n_head_kv != 0) {
    return make_error("%s: 'llama.attention.head_count' (%lld) is not a multiple of "
                      "'llama.attention.head_count_kv' (%lld)",
                      fn.c_str(), static_cast<ll>(c.n_head), static_cast<ll>(c.n_head_kv));
  }
  if (c.n_rot > c.n_embd_head_k || c.n_rot % 2 != 0) {
    return make_error("%s: 'llama.rope.dimension_count' is %lld, expected an even number up to "
                      "the head size %lld",
                      fn.c_str(), static_cast<ll>(c.n_rot), static_cast<ll>(c.n_embd_head_k));
  }
  auto base = f.get_float(p + "rope.freq_base");
  if (!base) {
    return base.err();
  }
  c.rope_freq_base = static_cast<float>(base->value_or(10000.0));
  auto eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  if (!eps) {
    return eps.err();
  }
  c.rms_norm_eps = static_cast<float>(eps->value_or(1e-5));
  if (!(c.rope_freq_base > 0) || !(c.rms_norm_eps > 0)) {
    return make_error("%s: 'llama.rope.freq_base' (%g) and "
                      "'llama.attention.layer_norm_rms_epsilon' (%g) must be > 0",
                      fn.c_str(), static_cast<double>(c.rope_freq_base),
                      static_cast<double>(c.rms_norm_eps));
  }

  // The vocabulary size: llama.vocab_size, else the tokenizer's, else token_embd's.
  auto vocab = f.get_int(p + "vocab_size");
  if (!vocab) {
    return vocab.err();
  }
  int64_t n_tokens = 0;
  if (const auto* t = f.find("tokenizer.ggml.tokens"); t && t->as_array()) {
    n_tokens = static_cast<int64_t>(t->as_array()->items.size());
  }
  if (*vocab) {
    c.n_vocab = **vocab;
  } else if (n_tokens > 0) {
    c.n_vocab = n_tokens;
  } else if (const auto* e = f.find_tensor("token_embd.weight"); e && e->n_dims == 2) {
    c.n_vocab = e->ne[1];
  }
  if (c.n_vocab <= 0) {
    return make_error("%s: cannot tell the vocabulary size (no 'llama.vocab_size', no "
                      "tokenizer, no token_embd.weight)",
                      fn.c_str());
  }
  if (n_tokens > 0 && n_tokens != c.n_vocab) {
    return make_error("%s: 'tokenizer.ggml.tokens' has %lld tokens but 'llama.vocab_size' is "
                      "%lld",
                      fn.c_str(), static_cast<ll>(n_tokens), static_cast<ll>(c.n_vocab));
  }
  return c;
}

result<std::shared_ptr<const model>> model::open(const std::string& path) {
  auto f = gguf_file::open(path);
  if (!f) {
    return f.err();
  }
  return from_file(std::move(*f));
}

result<std::shared_ptr<const model>> model::from_file(gguf_file file) {
  std::shared_ptr<model> m(new model(std::move(file)));
  const gguf_file& f = m->file_;
  const std::string& fn = f.path();
  auto cfg = read_model_config(f);
  if (!cfg) {
    return cfg.err();
  }
  model_config& c = m->config_ = std::move(*cfg);
  std::set<std::string> used;

  // Looks a tensor up and checks its shape; `required` false allows absence.
  auto take = [&](const std::string& name, std::vector<int64_t> shape,
                  bool required) -> result<const tensor_info*> {
    const tensor_info* t = f.find_tensor(name);
    if (!t) {
      if (required) {
        return make_error("%s: missing tensor '%s'", fn.c_str(), name.c_str());
      }
      return static_cast<const tensor_info*>(nullptr);
    }
    bool same = t->n_dims == shape.size();
    for (size_t i = 0; same && i < shape.size(); ++i) {
      same = t->ne[i] == shape[i];
    }
    if (!same) {
      std::string want = "[";
      for (size_t i = 0; i < shape.size(); ++i) {
        want += (i ? ", " : "") + std::to_string(shape[i]);
      }
      want += "]";
      return make_error("%s: tensor '%s' has shape %s, expected %s", fn.c_str(), name.c_str(),
                        t->shape_string().c_str(), want.c_str());
    }
    // a header-only file is sized, never computed with: any type llama.cpp's rules give
    if (!traits(t->type).can_dequantize && !f.header_only()) {
      return make_error("%s: tensor '%s' has type %s, which baton does not compute with "
                        "(supported: f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)",
                        fn.c_str(), name.c_str(), std::string(traits(t->type).name).c_str());
    }
    used.insert(name);
    return t;
  };

  model_weights& w = m->weights_;
  const int64_t n_q = c.n_head * c.n_embd_head_k;
  const int64_t n_out = c.n_head * c.n_embd_head_v;
#define BATON_TAKE(dst, name, shape, required) \
  do {                                          \
    auto r_ = take(name, shape, required);      \
    if (!r_) {                                  \
      return r_.err();                          \
    }                                           \
    dst = *r_;                                  \
  } while (0)
  BATON_TAKE(w.token_embd, "token_embd.weight", (std::vector<int64_t>{c.n_embd, c.n_vocab}), true);
  BATON_TAKE(w.output_norm, "output_norm.weight", (std::vector<int64_t>{c.n_embd}), true);
  BATON_TAKE(w.output, "output.weight", (std::vector<int64_t>{c.n_embd, c.n_vocab}), false);
  BATON_TAKE(w.rope_freqs, "rope_freqs.weight", (std::vector<int64_t>{c.n_rot / 2}), false);
  // 9 tensors a layer plus token_embd and output_norm: a block_count the file cannot
  // hold is an error before anything is sized by it
  const auto n_tensors = static_cast<int64_t>(f.tensors().size());
  if (c.n_layer > (n_tensors - 2) / 9) {
    return make_error("%s: 'llama.block_count' is %lld but the file has only %lld tensors "
                      "(a llama layer has 9)",
                      fn.c_str(), static_cast<ll>(c.n_layer), static_cast<ll>(n_tensors));
  }
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    auto& l = w.layers[static_cast<size_t>(il)];
    const std::string b = "blk." + std::to_string(il) + ".";
    BATON_TAKE(l.attn_norm, b + "attn_norm.weight", (std::vector<int64_t>{c.n_embd}), true);
    BATON_TAKE(l.wq, b + "attn_q.weight", (std::vector<int64_t>{c.n_embd, n_q}), true);
    BATON_TAKE(l.wk, b + "attn_k.weight", (std::vector<int64_t>{c.n_embd, c.n_embd_k_gqa()}),
               true);
    BATON_TAKE(l.wv, b + "attn_v.weight", (std::vector<int64_t>{c.n_embd, c.n_embd_v_gqa()}),
               true);
    BATON_TAKE(l.wo, b + "attn_output.weight", (std::vector<int64_t>{n_out, c.n_embd}), true);
    BATON_TAKE(l.ffn_norm, b + "ffn_norm.weight", (std::vector<int64_t>{c.n_embd}), true);
    BATON_TAKE(l.ffn_gate, b + "ffn_gate.weight", (std::vector<int64_t>{c.n_embd, c.n_ff}), true);
    BATON_TAKE(l.ffn_up, b + "ffn_up.weight", (std::vector<int64_t>{c.n_embd, c.n_ff}), true);
    BATON_TAKE(l.ffn_down, b + "ffn_down.weight", (std::vector<int64_t>{c.n_ff, c.n_embd}), true);
  }
#undef BATON_TAKE
  // both backends read these as floats
  std::vector<const tensor_info*> f32_tensors = {w.output_norm, w.rope_freqs};
  for (const auto& l : w.layers) {
    f32_tensors.push_back(l.attn_norm);
    f32_tensors.push_back(l.ffn_norm);
  }
  for (const auto* norm : f32_tensors) {
    if (norm && norm->type != ggml_type::f32) {
      return make_error("%s: tensor '%s' has type %s, expected f32", fn.c_str(),
                        norm->name.c_str(), std::string(traits(norm->type).name).c_str());
    }
  }
  for (const auto& t : f.tensors()) {
    if (!used.count(t.name)) {
      return make_error("%s: unexpected tensor '%s' for a %lld-layer llama model", fn.c_str(),
                        t.name.c_str(), static_cast<ll>(c.n_layer));
    }
  }
  c.tied_output = w.output == nullptr;
  c.has_rope_freqs = w.rope_freqs != nullptr;
  return std::shared_ptr<const model>(std::move(m));
}

uint64_t model::weight_bytes() const {
  uint64_t n = 0;
  for (const auto& t : file_.tensors()) {
    n += t.n_bytes;
  }
  return n;
}

}  // namespace baton
