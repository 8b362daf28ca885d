// model_builder.hpp: deterministic random Llama models. Every tensor draws from its own
// stream, seeded by (seed, tensor name), so a tensor's values do not depend on which
// other tensors a shape has or on the order they are written.
#include "runtime/model/model_builder.hpp"

#include <cmath>
#include <cstring>
#include <numbers>

#include "kernels/cpu/dequantize.hpp"
#include "runtime/model/ftype.hpp"

namespace baton {

namespace {

/// splitmix64: small, fast and the same on every platform.
struct splitmix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  float uniform() { return static_cast<float>(static_cast<double>(next() >> 11) * 0x1p-52 - 1.0); }
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) {
    h = (h ^ ch) * 0x100000001b3ull;
  }
  return h;
}

/// Fills `out` with `n` random values of `type`: uniform with standard deviation 0.02.
gguf_writer::fill_fn random_fill(uint64_t seed, const std::string& name, ggml_type type,
                                 int64_t row_len) {
  return [seed, name, type, row_len](std::span<std::byte> out) {
    splitmix64 rng{seed ^ fnv1a(name)};
    const float scale = 0.02f * std::sqrt(3.0f);  // uniform on [-a, a] has sd a/sqrt(3)
    const uint64_t row_size = row_bytes(type, static_cast<uint64_t>(row_len));
    const uint64_t n_rows = out.size() / row_size;
    std::vector<float> row(static_cast<size_t>(row_len));
    for (uint64_t r = 0; r < n_rows; ++r) {
      for (auto& x : row) {
        x = rng.uniform() * scale;
      }
      std::byte* dst = out.data() + r * row_size;
      switch (type) {
        case ggml_type::f32:
          std::memcpy(dst, row.data(), row_size);
          break;
        case ggml_type::f16:
          cpu::convert_row_f16(row.data(), reinterpret_cast<uint16_t*>(dst), row_len);
          break;
        case ggml_type::bf16:
          cpu::convert_row_bf16(row.data(), reinterpret_cast<uint16_t*>(dst), row_len);
          break;
        case ggml_type::q8_0:
          cpu::quantize_row_q8_0(row.data(), dst, row_len);
          break;
        default:
          BATON_ASSERT(false && "build_model checks the type");
      }
    }
  };
}

gguf_writer::fill_fn constant_fill(std::vector<float> values) {
  return [values = std::move(values)](std::span<std::byte> out) {
    BATON_ASSERT(out.size() == values.size() * sizeof(float));
    std::memcpy(out.data(), values.data(), out.size());
  };
}

}  // namespace

std::optional<model_shape> preset_shape(const std::string& name) {
  model_shape s;
  if (name == "demo") {
    return s;
  }
  if (name == "llama3.2-1b") {
    s.name = "baton-llama3.2-1b-shape";
    s.n_ctx_train = 131072;
    s.n_embd = 2048;
    s.n_layer = 16;
    s.n_ff = 8192;
    s.n_head = 32;
    s.n_head_kv = 8;
    return s;
  }
  if (name == "llama3-8b") {
    s.name = "baton-llama3-8b-shape";
    s.n_ctx_train = 8192;
    s.n_embd = 4096;
    s.n_layer = 32;
    s.n_ff = 14336;
    s.n_head = 32;
    s.n_head_kv = 8;
    s.tied_output = false;
    s.scaling.reset();  // Llama 3 8B has no rope frequency factors (3.1 has)
    return s;
  }
  if (name == "llama3-70b") {
    s.name = "baton-llama3-70b-shape";
    s.n_ctx_train = 8192;
    s.n_embd = 8192;
    s.n_layer = 80;
    s.n_ff = 28672;
    s.n_head = 64;
    s.n_head_kv = 8;
    s.tied_output = false;
    s.scaling.reset();
    return s;
  }
  if (name == "llama3.1-405b") {
    s.name = "baton-llama3.1-405b-shape";
    s.n_ctx_train = 131072;
    s.n_embd = 16384;
    s.n_layer = 126;
    s.n_ff = 53248;
    s.n_head = 128;
    s.n_head_kv = 8;
    s.tied_output = false;
    s.scaling = rope_scaling{8.0f, 1.0f, 4.0f, 8192};
    return s;
  }
  return std::nullopt;
}

std::string preset_names() {
  return "demo, llama3.2-1b, llama3-8b, llama3-70b or llama3.1-405b";
}

std::vector<float> llama3_rope_factors(const rope_scaling& s, float freq_base, int64_t n_rot) {
  const double low_wavelen = static_cast<double>(s.original_context) / s.low_freq_factor;
  const double high_wavelen = static_cast<double>(s.original_context) / s.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < n_rot; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(freq_base),
                                       static_cast<double>(i) / static_cast<double>(n_rot));
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = s.factor;
    } else {
      const double smooth = (static_cast<double>(s.original_context) / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

void write_vocab(gguf_writer& w, const vocab_spec& v) {
  auto strings = [](const std::vector<std::string>& xs) {
    gguf_array a;
    a.type = gguf_type::string;
    a.items.reserve(xs.size());
    for (const auto& x : xs) {
      a.items.emplace_back(x);
    }
    return a;
  };
  w.set("tokenizer.ggml.model", v.model);
  w.set("tokenizer.ggml.pre", v.pre);
  w.set("tokenizer.ggml.tokens", strings(v.tokens));
  gguf_array types;
  types.type = gguf_type::int32;
  types.items.reserve(v.token_types.size());
  for (auto t : v.token_types) {
    types.items.emplace_back(t);
  }
  w.set("tokenizer.ggml.token_type", std::move(types));
  if (!v.merges.empty()) {
    w.set("tokenizer.ggml.merges", strings(v.merges));
  }
  if (v.bos_id >= 0) {
    w.set("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id));
  }
  if (v.eos_id >= 0) {
    w.set("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id));
  }
  if (v.add_bos) {
    w.set("tokenizer.ggml.add_bos_token", *v.add_bos);
  }
  if (v.chat_template) {
    w.set("tokenizer.chat_template", *v.chat_template);
  }
}

result<gguf_writer> build_model(const build_options& o, const vocab_spec* vocab) {
  const model_shape& s = o.shape;
  switch (o.type) {
    case ggml_type::f32:
    case ggml_type::f16:
    case ggml_type::bf16:
    case ggml_type::q8_0:
      break;
    default:
      return make_error("mkmodel: weight type %s is not made directly (use f32, f16, bf16 or "
                        "q8_0, then `baton quantize`)",
                        std::string(traits(o.type).name).c_str());
  }
  if (s.n_embd <= 0 || s.n_layer <= 0 || s.n_ff <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 ||
      s.n_vocab <= 0 || s.n_ctx_train <= 0) {
    return make_error("mkmodel: every dimension must be > 0");
  }
  if (s.n_embd % s.n_head != 0 || s.n_head % s.n_head_kv != 0) {
    return make_error("mkmodel: n_embd (%lld) must be a multiple of n_head (%lld), and n_head "
                      "a multiple of n_head_kv (%lld)",
                      static_cast<long long>(s.n_embd), static_cast<long long>(s.n_head),
                      static_cast<long long>(s.n_head_kv));
  }
  const int64_t block = traits(o.type).block_size;
  const int64_t head_dim = s.n_embd / s.n_head;
  for (int64_t n_in : {s.n_embd, s.n_ff, s.n_head * head_dim}) {
    if (n_in % block != 0) {
      return make_error("mkmodel: row length %lld is not a multiple of the %s block size %lld",
                        static_cast<long long>(n_in), std::string(traits(o.type).name).c_str(),
                        static_cast<long long>(block));
    }
  }
  if (vocab && static_cast<int64_t>(vocab->tokens.size()) != s.n_vocab) {
    return make_error("mkmodel: the tokenizer has %zu tokens but the shape says n_vocab %lld",
                      vocab->tokens.size(), static_cast<long long>(s.n_vocab));
  }

  gguf_writer w;
  w.set("general.architecture", "llama");
  w.set("general.type", "model");
  w.set("general.name", s.name);
  w.set("llama.block_count", static_cast<uint32_t>(s.n_layer));
  w.set("llama.context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.set("llama.embedding_length", static_cast<uint32_t>(s.n_embd));
  w.set("llama.feed_forward_length", static_cast<uint32_t>(s.n_ff));
  w.set("llama.attention.head_count", static_cast<uint32_t>(s.n_head));
  w.set("llama.attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  w.set("llama.rope.freq_base", s.rope_freq_base);
  w.set("llama.attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  w.set("llama.attention.key_length", static_cast<uint32_t>(head_dim));
  w.set("llama.attention.value_length", static_cast<uint32_t>(head_dim));
  w.set("llama.vocab_size", static_cast<uint32_t>(s.n_vocab));
  w.set("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  const auto file_type = ftype_of_weights(o.type);
  BATON_ASSERT(file_type.has_value());  // every type made directly is a file type's
  w.set("general.file_type", info(*file_type).id);
  if (traits(o.type).quantized) {
    w.set("general.quantization_version", uint32_t{2});
  }
  if (vocab) {
    write_vocab(w, *vocab);
  }

  auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
    const int64_t row_len = shape[0];
    w.add_tensor(name, o.type, std::move(shape),
                 o.random_weights ? random_fill(o.seed, name, o.type, row_len) : nullptr);
  };
  auto ones = [&](const std::string& name, int64_t n) {
    w.add_tensor(name, ggml_type::f32, {n},
                 o.random_weights ? constant_fill(std::vector<float>(static_cast<size_t>(n), 1.0f))
                                  : nullptr);
  };
  const int64_t n_kv = s.n_head_kv * head_dim;
  ones("output_norm.weight", s.n_embd);
  if (s.scaling) {
    w.add_tensor("rope_freqs.weight", ggml_type::f32, {head_dim / 2},
                 constant_fill(llama3_rope_factors(*s.scaling, s.rope_freq_base, head_dim)));
  }
  weight("token_embd.weight", {s.n_embd, s.n_vocab});
  if (!s.tied_output) {
    weight("output.weight", {s.n_embd, s.n_vocab});
  }
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    weight(b + "attn_k.weight", {s.n_embd, n_kv});
    ones(b + "attn_norm.weight", s.n_embd);
    weight(b + "attn_output.weight", {s.n_embd, s.n_embd});
    weight(b + "attn_q.weight", {s.n_embd, s.n_embd});
    weight(b + "attn_v.weight", {s.n_embd, n_kv});
    weight(b + "ffn_down.weight", {s.n_ff, s.n_embd});
    weight(b + "ffn_gate.weight", {s.n_embd, s.n_ff});
    ones(b + "ffn_norm.weight", s.n_embd);
    weight(b + "ffn_up.weight", {s.n_embd, s.n_ff});
  }
  return w;
}

}  // namespace baton
