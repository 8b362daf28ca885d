// The CPU forward pass on the project's own fixture models: against the double-precision
// oracle (F32, F16, BF16, untied head), and the invariances researchers rely on —
// bit-identical logits for 1 vs 2 threads, a sequence alone vs inside a batch of 8
// others, and one-batch prefill vs chunked prefill vs token-by-token decode.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>

#include "runtime/compute/cpu_stage.hpp"
#include "runtime/compute/engine.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/quantize.hpp"
#include "tests/fixture_model.hpp"
#include "tests/kv_move_util.hpp"
#include "tests/reference_forward.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

std::shared_ptr<const model> fixture(ggml_type type, bool untied = false) {
  build_options o = test::fixture_options(type);
  // two layers carry the hidden state across a layer boundary; the double-precision
  // oracle runs once per weight type, and four layers would double its time for nothing
  o.shape.n_layer = 2;
  o.shape.tied_output = !untied;
  return test::open_model(o);
}

std::unique_ptr<engine> make_engine(std::shared_ptr<const model> m, int threads,
                                    ggml_type kv, cpu::isa isa, int32_t n_seq = 1) {
  engine_options o;
  o.n_threads = threads;
  o.kv_type = kv;
  o.kernels = isa;
  o.n_ctx = 256;
  o.n_seq_max = n_seq;
  o.max_batch_tokens = 512;
  auto e = engine::create(std::move(m), o);
  BATON_ASSERT(e.ok());
  return std::move(*e);
}

std::vector<int32_t> prompt_tokens(size_t n, int32_t salt = 0) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) {
    t[i] = static_cast<int32_t>((i * 37 + 11 + static_cast<size_t>(salt) * 101) % 320);
  }
  return t;
}

std::vector<cpu::isa> isas() {
  std::vector<cpu::isa> out;
  for (auto v : {cpu::isa::scalar, cpu::isa::avx2, cpu::isa::avx512}) {
    if (cpu::isa_supported(v)) {
      out.push_back(v);
    }
  }
  return out;
}

double rel_error(const std::vector<float>& a, const std::vector<double>& ref) {
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (a[i] - ref[i]) * (a[i] - ref[i]);
    n += ref[i] * ref[i];
  }
  return std::sqrt(e / n);
}

TEST(forward, matches_the_double_precision_oracle) {
  struct c {
    ggml_type type;
    bool untied;
    double bound;
  };
  for (auto k : {c{ggml_type::f32, false, 1e-5}, c{ggml_type::f32, true, 1e-5},
                 c{ggml_type::f16, false, 1e-3}, c{ggml_type::bf16, true, 1e-3}}) {
    auto m = fixture(k.type, k.untied);
    test::reference_forward ref(*m);
    const auto tokens = prompt_tokens(23);
    const auto want = ref.logits(tokens);
    for (auto isa : isas()) {
      auto e = make_engine(m, 2, ggml_type::f32, isa);
      sequence s;
      auto got = e->prefill(s, tokens, 7);
      ASSERT_TRUE(got) << got.err().message;
      const double err = rel_error(*got, want);
      EXPECT_LE(err, k.bound) << traits(k.type).name << (k.untied ? " untied" : " tied")
                              << " kernels " << cpu::isa_name(isa);
      std::printf("oracle %s%s %s: relative error %.3g\n",
                  std::string(traits(k.type).name).c_str(), k.untied ? " untied" : "",
                  std::string(cpu::isa_name(isa)).c_str(), err);
    }
  }
}

TEST(forward, repacked_weights_give_the_same_logits) {
  // rows long enough for whole groups of packed blocks (16 Q4_0, 32 Q8_0) and a partial one:
  // n_embd 544 = 17 blocks, n_ff 1056 = 33; both heads, tied and not
  // (llama-quantize --pure: the head in the same type); read from a file mapping, whose
  // pages of the packed tensors the stage lets go of
  const auto dir = test::temp_dir("repack");
  // (F16: copied as it is, 2 MiB pages instead of the file's)
  for (auto [type, target] : {std::pair{ggml_type::q4_0, ftype::q4_0},
                              {ggml_type::q8_0, ftype::q8_0}, {ggml_type::f16, ftype::f16}}) {
    for (bool untied : {false, true}) {
      build_options o = test::fixture_options(ggml_type::f32);
      o.shape.n_layer = 1;
      o.shape.n_embd = 544;
      o.shape.n_head = 17;
      o.shape.n_head_kv = 1;
      o.shape.n_ff = 1056;
      o.shape.tied_output = !untied;
      auto built = build_model(o, nullptr);
      ASSERT_TRUE(built) << built.err().message;
      const auto f32 = (dir / "f32.gguf").string();
      const auto quantized = (dir / "q.gguf").string();
      {
        const auto bytes = built->to_bytes();
        std::ofstream(f32, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      }
      quantize_options qo;
      qo.target = target;
      qo.pure = true;
      ASSERT_TRUE(quantize_model(f32, quantized, qo));
      auto opened = model::open(quantized);
      ASSERT_TRUE(opened) << opened.err().message;
      std::shared_ptr<const model> m = *opened;
      ASSERT_EQ(m->weights().head()->type, type);
      // what a stage copies (a reshard counts its bytes): the 7 matrices, and the head on
      // the last stage
      EXPECT_EQ(cpu_stage::owned_tensors(*m, 0, 1).size(), 8u);
      EXPECT_EQ(cpu_stage::owned_tensors(*m, 0, 0).size(), 0u);
      for (auto isa : isas()) {
        std::vector<float> logits[2];
        for (bool repack : {false, true}) {
          stage_compute_options so;
          so.m = m;
          so.last_layer = 1;
          so.n_blocks = 16;
          so.block_size = 16;
          so.n_threads = 2;
          so.kernels = isa;
          so.repack = repack;
          auto s = make_stage_compute(so);
          ASSERT_TRUE(s) << s.err().message;
          const std::vector<int32_t> table{0, 1, 2, 3};
          batch b;
          b.block_tables.push_back(&table);
          const auto tokens = prompt_tokens(37);
          for (size_t i = 0; i < tokens.size(); ++i) {
            b.add(0, tokens[i], static_cast<int32_t>(i), true);
          }
          stage_activations io;
          ASSERT_TRUE((*s)->forward(b, io, logits[repack]));
        }
        ASSERT_EQ(logits[0].size(), 37u * 320u);
        EXPECT_EQ(logits[0], logits[1]) << traits(type).name << (untied ? " untied " : " tied ")
                                        << cpu::isa_name(isa);
      }
    }
  }
}

TEST(forward, thread_count_does_not_change_logits) {
  for (auto type : {ggml_type::q8_0, ggml_type::f16}) {
    auto m = fixture(type);
    for (auto isa : isas()) {
      for (auto kv : {ggml_type::f16, ggml_type::f32}) {
        const auto tokens = prompt_tokens(41);
        sequence a, b;
        auto one = make_engine(m, 1, kv, isa)->prefill(a, tokens, 16);
        auto two = make_engine(m, 2, kv, isa)->prefill(b, tokens, 16);
        ASSERT_TRUE(one && two);
        EXPECT_EQ(*one, *two) << cpu::isa_name(isa);
      }
    }
  }
}

TEST(forward, chunking_and_decode_give_identical_logits) {
  auto m = fixture(ggml_type::q8_0);
  for (auto isa : isas()) {
    for (auto kv : {ggml_type::f16, ggml_type::f32}) {
      auto e = make_engine(m, 2, kv, isa, 3);
      const auto tokens = prompt_tokens(45);
      sequence whole, chunked, stepwise;
      auto a = e->prefill(whole, tokens, 512);
      auto b = e->prefill(chunked, tokens, 7);
      auto c = e->prefill(stepwise, tokens, 1);
      ASSERT_TRUE(a && b && c);
      EXPECT_EQ(*a, *b) << "chunk 7, kernels " << cpu::isa_name(isa);
      EXPECT_EQ(*a, *c) << "token by token, kernels " << cpu::isa_name(isa);
    }
  }
}

TEST(forward, a_sequence_alone_equals_it_inside_a_batch_of_8_others) {
  auto m = fixture(ggml_type::q8_0);
  for (auto isa : isas()) {
    auto e = make_engine(m, 2, ggml_type::f16, isa, 10);
    const auto mine = prompt_tokens(30);
    sequence alone;
    auto want = e->prefill(alone, mine, 10);
    ASSERT_TRUE(want);
    e->release(alone);

    // the same sequence, fed in the same chunks, while 8 others share every batch
    sequence target;
    std::vector<sequence> others(8);
    std::vector<std::vector<int32_t>> other_tokens;
    for (int i = 0; i < 8; ++i) {
      other_tokens.push_back(prompt_tokens(static_cast<size_t>(5 + 3 * i), i + 1));
    }
    std::vector<float> got;
    for (size_t off = 0; off < mine.size(); off += 10) {
      std::vector<feed_item> items;
      for (int i = 0; i < 4; ++i) {  // others before
        items.push_back({&others[static_cast<size_t>(i)],
                         std::span<const int32_t>(other_tokens[static_cast<size_t>(i)]).first(
                             std::min<size_t>(other_tokens[static_cast<size_t>(i)].size(), 4)),
                         true});
      }
      items.push_back({&target, std::span<const int32_t>(mine).subspan(off, 10), true});
      for (int i = 4; i < 8; ++i) {  // and after
        items.push_back({&others[static_cast<size_t>(i)],
                         std::span<const int32_t>(other_tokens[static_cast<size_t>(i)]).first(3),
                         i % 2 == 0});
      }
      auto out = e->feed(items);
      ASSERT_TRUE(out) << out.err().message;
      got = (*out)[4];
    }
    EXPECT_EQ(got, *want) << cpu::isa_name(isa);
  }
}

TEST(forward, kv_rows_moved_to_a_new_owner_give_the_same_next_logits) {
  test::expect_kv_rows_move_between_stages(fixture(ggml_type::q8_0), "cpu");
}

TEST(forward, context_and_cache_limits_are_errors) {
  auto m = fixture(ggml_type::q8_0);
  auto e = make_engine(m, 1, ggml_type::f16, cpu::isa::scalar, 1);
  sequence s;
  auto r = e->prefill(s, prompt_tokens(257), 64);
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("longer than the context (256)"), std::string::npos)
      << r.err().message;
  sequence bad;
  std::vector<int32_t> oov = {1, 2, 999};
  auto o = e->prefill(bad, oov);
  ASSERT_FALSE(o);
  EXPECT_NE(o.err().message.find("token id 999 is outside the vocabulary (320)"),
            std::string::npos);
}

}  // namespace
}  // namespace baton
