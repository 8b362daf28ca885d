// Makes Llama-architecture GGUF models with deterministic random weights: the demo
// model, benchmark models of real shapes (Llama 3.2 1B, Llama 3 8B) and test fixtures.
// Weights are N(0, 0.02)-like (Llama's init), norms 1, Llama 3 rope frequency factors
// computed as llama.cpp's converter does; the tokenizer comes from a vocab_spec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kernels/ggml_type.hpp"
#include "runtime/system/error.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/vocab.hpp"

namespace baton {

/// Llama 3 rope scaling (rope_freqs.weight): factor, low/high frequency factors.
struct rope_scaling {
  float factor = 32.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_context = 8192;
};

struct model_shape {
  std::string name = "baton-demo";
  int64_t n_vocab = 128256;  ///< must match the vocabulary when one is given
  int64_t n_ctx_train = 2048;
  int64_t n_embd = 256;
  int64_t n_layer = 4;
  int64_t n_ff = 768;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  float rope_freq_base = 500000.0f;
  float rms_norm_eps = 1e-5f;
  bool tied_output = true;
  std::optional<rope_scaling> scaling = rope_scaling{};
};

/// Presets: "demo" (the shared tiny models' shape), "llama3.2-1b", "llama3-8b",
/// "llama3-70b", "llama3.1-405b".
std::optional<model_shape> preset_shape(const std::string& name);

/// The preset names for messages and help: "demo, llama3.2-1b, ... or llama3.1-405b".
std::string preset_names();

struct build_options {
  model_shape shape;
  ggml_type type = ggml_type::q8_0;  ///< 2-D weights; norms and rope_freqs stay f32
  uint64_t seed = 20250220;
  bool random_weights = true;        ///< false: tensor data left as zeros (sparse holes)
};

/// The rope_freqs values for a head size (n_rot / 2 entries).
std::vector<float> llama3_rope_factors(const rope_scaling& s, float freq_base, int64_t n_rot);

/// A writer holding the full model: metadata, tokenizer and tensors. Without a vocab
/// the tokenizer keys are left out (a weights-only file for tests).
result<gguf_writer> build_model(const build_options& opts, const vocab_spec* vocab);

/// Adds the `tokenizer.*` keys of a vocabulary to a writer.
void write_vocab(gguf_writer& w, const vocab_spec& v);

}  // namespace baton
