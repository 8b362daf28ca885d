// runtime/model/model_config and model_builder: hyperparameters, the KV arithmetic with
// grouped-query attention, the presets' shapes, determinism of the random weights.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"

namespace baton {
namespace {

std::shared_ptr<const model> build_and_open(const build_options& o,
                                            std::vector<std::byte>& storage) {
  auto w = build_model(o, nullptr);
  EXPECT_TRUE(w) << (w ? "" : w.err().message);
  storage = w->to_bytes();
  auto f = gguf_file::parse(storage.data(), storage.size(), "mem.gguf");
  EXPECT_TRUE(f) << (f ? "" : f.err().message);
  auto m = model::from_file(std::move(*f));
  EXPECT_TRUE(m) << (m ? "" : m.err().message);
  return *m;
}

TEST(model_config, kv_bytes_per_token_counts_only_kv_heads) {
  // Llama 3 8B: 32 layers, 8 KV heads of 128 → 2 × 32 × 8 × 128 × 2 bytes.
  model_config c;
  c.n_layer = 32;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.n_embd_head_k = 128;
  c.n_embd_head_v = 128;
  EXPECT_EQ(c.kv_bytes_per_token(ggml_type::f16), 131072u);
  EXPECT_EQ(c.kv_bytes_per_token(ggml_type::f32), 262144u);
  // batch 4 × 4096 tokens = 2 GiB, not the 8 GiB that full multi-head attention costs
  EXPECT_EQ(c.kv_bytes_per_token(ggml_type::f16) * 4 * 4096, 2ull << 30);
  // a stage of layers [16, 32) holds half
  EXPECT_EQ(c.kv_bytes_per_token(ggml_type::f16, 16, 32), 65536u);
}

TEST(model_config, presets_have_the_real_shapes) {
  auto b1 = preset_shape("llama3.2-1b");
  ASSERT_TRUE(b1);
  EXPECT_EQ(b1->n_embd, 2048);
  EXPECT_EQ(b1->n_layer, 16);
  EXPECT_EQ(b1->n_head, 32);
  EXPECT_EQ(b1->n_head_kv, 8);
  EXPECT_EQ(b1->n_ff, 8192);
  EXPECT_TRUE(b1->tied_output);
  auto b8 = preset_shape("llama3-8b");
  ASSERT_TRUE(b8);
  EXPECT_EQ(b8->n_embd, 4096);
  EXPECT_EQ(b8->n_ff, 14336);
  EXPECT_FALSE(b8->tied_output);
  EXPECT_FALSE(preset_shape("gpt-5").has_value());
}

TEST(model_config, small_model_round_trips_with_every_weight_type) {
  for (auto type : {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q8_0}) {
    build_options o;  // not the fixture shape: head size 16 and 3 layers, checked below
    o.shape.n_vocab = 100;
    o.shape.n_embd = 64;
    o.shape.n_ff = 128;
    o.shape.n_layer = 3;
    o.shape.tied_output = false;
    o.type = type;
    std::vector<std::byte> storage;
    auto m = build_and_open(o, storage);
    ASSERT_TRUE(m);
    const auto& c = m->config();
    EXPECT_EQ(c.n_layer, 3);
    EXPECT_EQ(c.n_embd_head_k, 16);
    EXPECT_EQ(c.n_head_kv, 2);
    EXPECT_FALSE(c.tied_output);
    EXPECT_TRUE(c.has_rope_freqs);
    EXPECT_EQ(m->weights().layers.size(), 3u);
    EXPECT_EQ(m->weights().layers[2].wk->ne[1], 32);
    EXPECT_EQ(m->weights().layers[0].wq->type, type);
    EXPECT_EQ(m->weights().output_norm->type, ggml_type::f32);
  }
}

TEST(model_builder, weights_are_deterministic_per_seed_and_tensor) {
  build_options o;
  o.shape.n_vocab = 100;
  o.shape.n_embd = 64;
  o.shape.n_ff = 128;
  o.shape.n_layer = 2;
  std::vector<std::byte> s1, s2, s3;
  auto a = build_and_open(o, s1);
  auto b = build_and_open(o, s2);
  o.seed += 1;
  auto c = build_and_open(o, s3);
  const auto* ta = a->weights().layers[1].ffn_up;
  const auto* tb = b->weights().layers[1].ffn_up;
  const auto* tc = c->weights().layers[1].ffn_up;
  EXPECT_EQ(std::memcmp(ta->data, tb->data, ta->n_bytes), 0);
  EXPECT_NE(std::memcmp(ta->data, tc->data, ta->n_bytes), 0);
  // two tensors of one model differ
  EXPECT_NE(std::memcmp(a->weights().layers[0].ffn_up->data, ta->data, ta->n_bytes), 0);
}

TEST(model_builder, llama3_rope_factors) {
  rope_scaling s;  // Llama 3.2: factor 32, low 1, high 4, original context 8192
  auto f = llama3_rope_factors(s, 500000.0f, 64);
  ASSERT_EQ(f.size(), 32u);
  EXPECT_EQ(f[0], 1.0f);   // high frequencies are kept
  EXPECT_EQ(f[31], 32.0f); // low frequencies scaled by the factor
  for (size_t i = 1; i < f.size(); ++i) {
    EXPECT_GE(f[i], f[i - 1]);  // smooth in between, monotone
  }
}

TEST(model_builder, rejects_bad_shapes) {
  build_options o;
  o.shape.n_head = 5;  // 256 % 5 != 0
  auto w = build_model(o, nullptr);
  ASSERT_FALSE(w);
  EXPECT_NE(w.err().message.find("n_embd (256) must be a multiple of n_head (5)"),
            std::string::npos);
  o = build_options{};
  o.type = ggml_type::q4_k;
  auto q = build_model(o, nullptr);
  ASSERT_FALSE(q);
  EXPECT_NE(q.err().message.find("q4_K is not made directly"), std::string::npos);
}

}  // namespace
}  // namespace baton
