// The shared tiny models made by llama.cpp's tools (../shared/models): baton opens
// them, reads the same hyperparameters llama.cpp reports, and decodes every tensor.
// The three files are quantizations of one set of weights, so the Q4_0, Q4_K and Q6_K
// decoders are checked against the Q8_0 one: the same tensor must agree within the
// coarser format's quantization noise (a wrong nibble order or scale gives ~100%).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/dequantize.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

std::vector<float> decode(const tensor_info& t) {
  std::vector<float> y(static_cast<size_t>(t.n_elements()));
  cpu::dequantize_row(t.type, t.data, y.data(), t.n_elements());
  return y;
}

TEST(shared_models, open_with_llama_cpp_hyperparameters) {
  BATON_REQUIRE_SHARED(shared);
  for (const char* name : {"tiny-q8_0", "tiny-q4_0", "tiny-q4_k_m"}) {
    auto m = model::open((shared / "models" / (std::string(name) + ".gguf")).string());
    ASSERT_TRUE(m) << m.err().message;
    const auto& c = (*m)->config();
    EXPECT_EQ(c.n_vocab, 128256);
    EXPECT_EQ(c.n_embd, 256);
    EXPECT_EQ(c.n_layer, 4);
    EXPECT_EQ(c.n_head, 4);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_EQ(c.n_embd_head_k, 64);
    EXPECT_EQ(c.n_ff, 768);
    EXPECT_EQ(c.n_ctx_train, 2048);
    EXPECT_EQ(c.rope_freq_base, 500000.0f);
    EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
    EXPECT_TRUE(c.tied_output);
    EXPECT_TRUE(c.has_rope_freqs);
    // 2 (K and V) × 4 layers × 2 KV heads × 64 × 2 bytes
    EXPECT_EQ(c.kv_bytes_per_token(ggml_type::f16), 2048u);
    auto v = load_vocab((*m)->file());
    ASSERT_TRUE(v) << v.err().message;
    EXPECT_EQ(v->model, "gpt2");
    EXPECT_EQ(v->pre, "llama-bpe");
    EXPECT_EQ(v->tokens.size(), 128256u);
    EXPECT_EQ(v->merges.size(), 280147u);
    EXPECT_EQ(v->bos_id, 128000);
    EXPECT_EQ(v->eos_id, 128009);
    EXPECT_EQ(v->tokens[128009], "<|eot_id|>");
    EXPECT_TRUE(v->chat_template.has_value());
  }
  auto q4 = model::open((shared / "models/tiny-q4_0.gguf").string());
  ASSERT_TRUE(q4);
  EXPECT_EQ((*q4)->weights().token_embd->type, ggml_type::q6_k);
  EXPECT_EQ((*q4)->weights().layers[0].wq->type, ggml_type::q4_0);
}

TEST(shared_models, quantizations_of_one_model_decode_alike) {
  BATON_REQUIRE_SHARED(shared);
  auto ref = model::open((shared / "models/tiny-q8_0.gguf").string());
  ASSERT_TRUE(ref) << ref.err().message;
  for (const char* name : {"tiny-q4_0", "tiny-q4_k_m"}) {
    auto m = model::open((shared / "models" / (std::string(name) + ".gguf")).string());
    ASSERT_TRUE(m) << m.err().message;
    for (const auto& t : (*m)->file().tensors()) {
      const auto* r = (*ref)->file().find_tensor(t.name);
      ASSERT_TRUE(r) << t.name;
      const auto a = decode(t);
      const auto b = decode(*r);
      double err = 0, norm = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_TRUE(std::isfinite(a[i])) << name << " " << t.name << " [" << i << "]";
        err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        norm += static_cast<double>(b[i]) * b[i];
      }
      const double rel = std::sqrt(err / norm);
      // measured: q4_0 ~8.6%, q4_K ~7.2%, q6_K ~1.9% relative to q8_0; f32 exact
      const double bound = t.type == ggml_type::f32    ? 0.0
                           : t.type == ggml_type::q6_k ? 0.03
                                                       : 0.12;
      EXPECT_LE(rel, bound) << name << " " << t.name << " (" << traits(t.type).name << ")";
    }
  }
}

TEST(shared_models, mkmodel_rope_factors_equal_the_converters) {
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open((shared / "models/tiny-q8_0.gguf").string());
  ASSERT_TRUE(m);
  const auto theirs = decode(*(*m)->weights().rope_freqs);
  const auto ours = llama3_rope_factors(rope_scaling{}, 500000.0f, 64);
  ASSERT_EQ(theirs.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_FLOAT_EQ(ours[i], theirs[i]) << i;
  }
}

}  // namespace
}  // namespace baton
