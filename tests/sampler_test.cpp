// runtime/serving/sampler and stop strings.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "runtime/serving/sampler.hpp"
#include "runtime/text/stop_strings.hpp"

namespace baton {
namespace {

std::vector<float> some_logits(size_t n, uint32_t seed) {
  std::vector<float> l(n);
  uint32_t s = seed;
  for (auto& v : l) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(s >> 8) / static_cast<float>(1u << 24) * 8.0f - 4.0f;
  }
  return l;
}

TEST(sampler, greedy_takes_the_lowest_id_on_ties) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f};
  EXPECT_EQ(sampler::greedy(l), 1);
  sampling_params p;
  p.temperature = 0.0f;
  sampler s(p);
  EXPECT_EQ(s.sample(l, {}, 0), 1);
}

TEST(sampler, greedy_is_the_first_largest_for_any_length_and_place) {
  // the chunked argmax against one chain of compares: lengths around its chunks (256)
  // and lanes (8), the largest anywhere, ties in and across chunks, NaNs and infinities
  const auto reference = [](const std::vector<float>& l) {
    int32_t best = -1;
    for (size_t i = 0; i < l.size(); ++i) {
      if (!std::isnan(l[i]) && (best < 0 || l[i] > l[static_cast<size_t>(best)])) {
        best = static_cast<int32_t>(i);
      }
    }
    return std::max(best, 0);
  };
  for (size_t n : {1u, 7u, 8u, 9u, 255u, 256u, 257u, 1000u, 128256u}) {
    for (uint32_t seed = 0; seed < 4; ++seed) {
      auto l = some_logits(n, seed + static_cast<uint32_t>(n));
      ASSERT_EQ(sampler::greedy(l), reference(l)) << n;
      const size_t at = (n * (seed + 1)) / 5;
      l[at] = 100.0f;
      ASSERT_EQ(sampler::greedy(l), static_cast<int32_t>(at)) << n;
      l[n - 1] = 100.0f;  // a tie later (maybe in another chunk): the first wins
      ASSERT_EQ(sampler::greedy(l), static_cast<int32_t>(at)) << n;
      l[0] = std::nanf("");  // a NaN is never the largest
      l[n / 2] = std::numeric_limits<float>::quiet_NaN();
      ASSERT_EQ(sampler::greedy(l), reference(l)) << n;
      l[n - 1] = std::numeric_limits<float>::infinity();
      ASSERT_EQ(sampler::greedy(l), reference(l)) << n;
    }
  }
  EXPECT_EQ(sampler::greedy(std::vector<float>(300, -std::numeric_limits<float>::infinity())), 0);
  EXPECT_EQ(sampler::greedy(std::vector<float>(300, std::nanf(""))), 0);
  // greedy sampling takes the same token, and with penalties the penalized logits' argmax
  sampling_params p;
  p.temperature = 0.0f;
  const auto l = some_logits(1000, 3);
  EXPECT_EQ(sampler(p).sample(l, {}, 0), sampler::greedy(l));
  const int32_t best = sampler::greedy(l);
  p.presence_penalty = 2.0f;
  const std::vector<int32_t> history = {best};
  auto penalized = l;
  penalized[static_cast<size_t>(best)] -= 2.0f;
  EXPECT_EQ(sampler(p).sample(l, history, 0), sampler::greedy(penalized));
}

TEST(sampler, same_seed_same_tokens_other_seed_other_tokens) {
  sampling_params p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  std::vector<int32_t> a, b, c;
  sampler s1(p), s2(p);
  p.seed += 1;
  sampler s3(p);
  for (uint32_t i = 0; i < 64; ++i) {
    const auto l = some_logits(1000, i);
    a.push_back(s1.sample(l, {}, i));
    b.push_back(s2.sample(l, {}, i));
    c.push_back(s3.sample(l, {}, i));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(sampler, a_draw_depends_on_the_seed_and_the_token_index_alone) {
  sampling_params p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  // one sampler through 64 tokens, against a fresh sampler for each token (what a new
  // owner of the last stage after a reshard is): the same tokens
  sampler through(p);
  std::vector<int32_t> a, b, shifted;
  for (uint32_t i = 0; i < 64; ++i) {
    const auto l = some_logits(1000, i);
    a.push_back(through.sample(l, {}, i));
    b.push_back(sampler(p).sample(l, {}, i));
    shifted.push_back(sampler(p).sample(l, {}, i + 1));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, shifted);  // the index matters
  // the uniform numbers look uniform: mean 1/2, variance 1/12, all in [0, 1)
  double sum = 0.0, sq = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = sampler::uniform(0xbaf0, static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sq += u * u;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.5, 0.005);
  EXPECT_NEAR(sq / n - mean * mean, 1.0 / 12.0, 0.002);
  EXPECT_NE(sampler::uniform(1, 0), sampler::uniform(2, 0));
}

TEST(sampler, filters_keep_what_they_should) {
  const auto l = some_logits(500, 7);
  const int32_t best = sampler::greedy(l);
  sampling_params p;
  p.top_k = 1;
  sampler k1(p);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(k1.sample(l, {}, static_cast<uint64_t>(i)), best);
  }
  p.top_k = 0;
  p.min_p = 1.0f;  // only tokens as likely as the best
  sampler mp(p);
  EXPECT_EQ(mp.sample(l, {}, 0), best);
  p.min_p = 0.0f;
  p.top_p = 1e-6f;  // the smallest prefix: the best token
  sampler tp(p);
  EXPECT_EQ(tp.sample(l, {}, 0), best);
}

TEST(sampler, penalties_push_repeated_tokens_down) {
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  sampling_params p;
  p.temperature = 0.0f;
  p.repeat_penalty = 1.2f;  // 2.0 / 1.2 < 1.9
  sampler s(p);
  std::vector<int32_t> hist = {0};
  EXPECT_EQ(s.sample(l, hist, 0), 1);
  sampling_params q;
  q.temperature = 0.0f;
  q.frequency_penalty = 0.06f;
  sampler f(q);
  std::vector<int32_t> once = {0};
  std::vector<int32_t> twice = {0, 0};
  EXPECT_EQ(f.sample(l, once, 0), 0);   // 2.0 - 0.06 > 1.9
  EXPECT_EQ(f.sample(l, twice, 0), 1);  // 2.0 - 0.12 < 1.9
  sampling_params r;
  r.temperature = 0.0f;
  r.presence_penalty = 0.2f;
  sampler pr(r);
  EXPECT_EQ(pr.sample(l, once, 0), 1);
}

TEST(sampler, invalid_parameters_are_named) {
  sampling_params p;
  p.top_p = 0.0f;
  EXPECT_NE(p.validate().err().message.find("top_p (0) must be in (0, 1]"), std::string::npos);
  p = {};
  p.temperature = -1.0f;
  EXPECT_NE(p.validate().err().message.find("temperature (-1)"), std::string::npos);
  p = {};
  EXPECT_TRUE(p.validate());
}

TEST(sampler, logprobs_are_log_softmax_with_the_top_ids_most_likely_first) {
  const std::vector<float> l = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  double sum = 0;
  for (float v : l) {
    sum += std::exp(static_cast<double>(v - 3.0f));
  }
  const double lse = 3.0 + std::log(sum);
  const token_logprobs lp = sampler::logprobs(l, 4, 3);
  EXPECT_EQ(lp.logprob, static_cast<float>(0.5f - lse));
  EXPECT_EQ(lp.top_ids, (std::vector<int32_t>{1, 3, 0}));  // a tie goes to the lower id
  ASSERT_EQ(lp.top_logprobs.size(), 3u);
  EXPECT_EQ(lp.top_logprobs[0], static_cast<float>(3.0f - lse));
  EXPECT_EQ(lp.top_logprobs[1], lp.top_logprobs[0]);
  EXPECT_EQ(lp.top_logprobs[2], static_cast<float>(1.0f - lse));
  // probabilities sum to one
  double p = 0;
  for (float v : l) {
    p += std::exp(static_cast<double>(v) - lse);
  }
  EXPECT_NEAR(p, 1.0, 1e-12);
  EXPECT_TRUE(sampler::logprobs(l, 0, 0).top_ids.empty());
  EXPECT_EQ(sampler::logprobs(l, 0, 9).top_ids.size(), l.size());  // at most n_vocab
}

TEST(stop_strings, holds_back_prefixes_and_cuts_at_the_match) {
  stop_strings s({"STOP", "\n\n"});
  std::string shown;
  for (const char* piece : {"hello S", "T", "ill going", " ST", "OP and more"}) {
    shown += s.push(piece);
  }
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(shown, "hello STill going ");
  stop_strings none({"xyz"});
  std::string out = none.push("abcx");
  EXPECT_EQ(out, "abc");
  out += none.push("y");
  out += none.flush();
  EXPECT_EQ(out, "abcxy");
  EXPECT_FALSE(none.stopped());
}

}  // namespace
}  // namespace baton
