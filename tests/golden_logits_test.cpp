// baton against llama.cpp (../shared/golden, made by llama.cpp c392e509 on the shared tiny
// models): next-token logits after each prompt, greedy continuations, and teacher-forced
// top-20 logits at all 32 steps. The exact float path uses tiny-q8_0 converted to F32 and
// F16 by `baton quantize` (weights then identical to llama.cpp's conversion). Every
// measured error is printed; docs/ARCHITECTURE.md and bench/RESULTS.md keep the table.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/compute/engine.hpp"
#include "runtime/model/quantize.hpp"
#include "runtime/serving/sampler.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/golden_util.hpp"

namespace baton {
namespace {

using test::golden_model_path;
using test::read_logits;
using test::rel_l2;
using test::slurp;
using variant = test::golden_variant;

std::unique_ptr<engine> make_engine(const std::string& path, ggml_type kv) {
  auto m = model::open(path);
  EXPECT_TRUE(m) << m.err().message;
  engine_options o;
  o.n_threads = 2;
  o.kv_type = kv;
  o.n_ctx = 1024;
  auto e = engine::create(*m, o);
  EXPECT_TRUE(e);
  return std::move(*e);
}

class golden : public ::testing::TestWithParam<variant> {};

TEST_P(golden, next_token_logits_match_llama_cpp) {
  BATON_REQUIRE_SHARED(shared);
  const variant v = GetParam();
  const auto path = golden_model_path(shared, v.name);
  auto f = gguf_file::open(path);
  ASSERT_TRUE(f);
  auto tok = tokenizer::create(*load_vocab(*f));
  ASSERT_TRUE(tok);
  for (const char* kv_name : {"f32", "f16"}) {
    const auto kv = std::string(kv_name) == "f32" ? ggml_type::f32 : ggml_type::f16;
    auto eng = make_engine(path, kv);
    for (const char* prompt : {"capital", "once", "chat"}) {
      const auto dir = shared / "golden" / (std::string("tiny-") + v.name);
      const auto j = nlohmann::json::parse(slurp(dir / (std::string(prompt) + ".json")));
      const auto ids = tok->encode(slurp(shared / "golden/prompts" / (std::string(prompt) + ".txt")));
      ASSERT_EQ(ids, j["tokenize"]["ids"].get<std::vector<int32_t>>()) << prompt;
      sequence s;
      auto got = eng->prefill(s, ids);
      ASSERT_TRUE(got) << got.err().message;
      const auto want = read_logits(dir / (std::string(prompt) + ".kv_" + kv_name + ".logits.bin"));
      ASSERT_EQ(got->size(), want.size());
      const double err = rel_l2(*got, want);
      const double bound = kv == ggml_type::f32 ? v.bound_kv_f32 : v.bound_kv_f16;
      std::printf("golden %-13s kv %s %-8s logits rel err %.3g (bound %.0e), argmax %d vs %d\n",
                  v.name, kv_name, prompt, err, bound, sampler::greedy(*got),
                  sampler::greedy(want));
      EXPECT_LE(err, bound) << v.name << " kv " << kv_name << " " << prompt;
      // the same argmax where llama.cpp's own top two are at least 1.0 apart
      const auto& steps = j["runs"][std::string("kv_") + kv_name]["greedy"]["steps"];
      if (steps[0]["margin"].get<double>() >= 1.0) {
        EXPECT_EQ(sampler::greedy(*got), sampler::greedy(want)) << v.name << " " << prompt;
      }
    }
  }
}

TEST_P(golden, greedy_and_teacher_forced_steps_match_llama_cpp) {
  BATON_REQUIRE_SHARED(shared);
  const variant v = GetParam();
  const auto path = golden_model_path(shared, v.name);
  for (const char* kv_name : {"f32", "f16"}) {
    const auto kv = std::string(kv_name) == "f32" ? ggml_type::f32 : ggml_type::f16;
    const double bound = kv == ggml_type::f32 ? v.bound_kv_f32 : v.bound_kv_f16;
    auto eng = make_engine(path, kv);
    for (const char* prompt : {"capital", "once", "chat"}) {
      const auto dir = shared / "golden" / (std::string("tiny-") + v.name);
      const auto j = nlohmann::json::parse(slurp(dir / (std::string(prompt) + ".json")));
      const auto ids = j["tokenize"]["ids"].get<std::vector<int32_t>>();
      const auto& g = j["runs"][std::string("kv_") + kv_name]["greedy"];
      const auto ref_tokens = g["tokens"].get<std::vector<int32_t>>();

      // free-running greedy: equal while the reference margin stays >= 1.0
      sequence s;
      auto logits = eng->prefill(s, ids);
      ASSERT_TRUE(logits);
      size_t n_leading = 0;
      while (n_leading < ref_tokens.size() && g["steps"][n_leading]["margin"].get<double>() >= 1.0) {
        ++n_leading;
      }
      std::vector<int32_t> ours;
      for (size_t i = 0; i < n_leading; ++i) {
        ours.push_back(sampler::greedy(*logits));
        feed_item it{&s, std::span<const int32_t>(&ours.back(), 1), true};
        auto next = eng->feed(std::span<const feed_item>(&it, 1));
        ASSERT_TRUE(next);
        logits = std::move(next->front());
      }
      EXPECT_EQ(ours, std::vector<int32_t>(ref_tokens.begin(),
                                           ref_tokens.begin() + static_cast<std::ptrdiff_t>(n_leading)))
          << v.name << " kv " << kv_name << " " << prompt;
      eng->release(s);

      // teacher forcing: feed llama.cpp's tokens; top-20 logits at every step
      sequence t;
      auto cur = eng->prefill(t, ids);
      ASSERT_TRUE(cur);
      double worst = 0;
      int argmax_checked = 0;
      for (size_t i = 0; i < ref_tokens.size(); ++i) {
        const auto& step = g["steps"][i];
        double e = 0, n = 0;
        for (const auto& entry : step["top20"]) {
          const auto id = entry[0].get<int32_t>();
          const double want = entry[1].get<double>();
          const double got = (*cur)[static_cast<size_t>(id)];
          e += (got - want) * (got - want);
          n += want * want;
        }
        const double err = std::sqrt(e / n);
        worst = std::max(worst, err);
        EXPECT_LE(err, bound) << v.name << " kv " << kv_name << " " << prompt << " step " << i;
        if (step["margin"].get<double>() >= 1.0) {
          EXPECT_EQ(sampler::greedy(*cur), step["token"].get<int32_t>())
              << v.name << " kv " << kv_name << " " << prompt << " step " << i;
          ++argmax_checked;
        }
        feed_item it{&t, std::span<const int32_t>(&ref_tokens[i], 1), true};
        auto next = eng->feed(std::span<const feed_item>(&it, 1));
        ASSERT_TRUE(next);
        cur = std::move(next->front());
      }
      size_t n_equal = 0;
      while (n_equal < n_leading && ours[n_equal] == ref_tokens[n_equal]) {
        ++n_equal;
      }
      std::printf("golden %-13s kv %s %-8s greedy %zu/%zu leading tokens equal; teacher-forced "
                  "top-20 worst rel err %.3g over 32 steps, argmax equal at %d steps with "
                  "margin >= 1\n",
                  v.name, kv_name, prompt, n_equal, n_leading, worst, argmax_checked);
      eng->release(t);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(tiny, golden, ::testing::ValuesIn(test::golden_variants), [](const auto& p) {
  std::string n = p.param.name;
  for (auto& c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      c = '_';
    }
  }
  return n;
});

}  // namespace
}  // namespace baton
