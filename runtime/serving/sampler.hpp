// Picks the next token from logits: greedy, or llama.cpp's default chain — repetition /
// presence / frequency penalties over the last `penalty_last_n` tokens, top-k, top-p,
// min-p, temperature, then a draw from the distribution. A draw's random bits are a
// function of the sequence's seed and the index of the token being sampled alone
// (counter-based, no generator state), so the same seed gives the same tokens on every
// machine and whichever stage, on whichever rank, samples a sequence's k-th token: a
// reshard or a replayed stage starts no sequence's randomness over. It also reports what a reply's
// logprobs show: the sampled token's log-probability and the most likely alternatives,
// under the raw logits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

struct sampling_params {
  float temperature = 0.8f;  ///< <= 0: greedy (argmax, ties to the lowest id)
  int32_t top_k = 40;        ///< <= 0: off
  float top_p = 0.95f;       ///< >= 1: off
  float min_p = 0.05f;       ///< <= 0: off
  float repeat_penalty = 1.0f;    ///< 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;    ///< tokens the penalties look back over
  uint64_t seed = 0xbaf0;
  int32_t top_logprobs = 0;       ///< alternatives to report per token (not used to sample)
  /// Report the sampled token's log-probability (OpenAI `logprobs`, `baton run --json`);
  /// off, the shard skips the log-sum-exp over the vocabulary (~0.5 ms a token at 128k).
  bool logprobs = false;

  /// The first invalid parameter, named as the CLI/API spells it.
  result<void> validate() const;
};

/// What a reply reports for one sampled token, under the raw logits (before penalties
/// and temperature, as OpenAI's logprobs are).
struct token_logprobs {
  float logprob = 0;                ///< log softmax(logits)[token]
  std::vector<int32_t> top_ids;     ///< the most likely ids, highest logit first (ties: lower id)
  std::vector<float> top_logprobs;  ///< [top_ids.size()] their log-probabilities
};

class sampler {
 public:
  explicit sampler(const sampling_params& p);

  /// The next token for `logits` [n_vocab], given the tokens so far (for penalties);
  /// `draw` is its index among the sequence's sampled tokens (the tokens generated
  /// before it), which with the seed alone decides the random draw.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history,
                 uint64_t draw);

  /// The uniform number in [0, 1) that draw `draw` of seed `seed` uses: 53 bits of a
  /// counter-based hash, the same on every platform.
  static double uniform(uint64_t seed, uint64_t draw);

  /// Argmax, ties to the lowest id.
  static int32_t greedy(std::span<const float> logits);

  /// The log-probability of `token` under `logits` [n_vocab] and the min(n_top, n_vocab)
  /// most likely tokens with theirs (none for n_top <= 0); the softmax is summed in double.
  static token_logprobs logprobs(std::span<const float> logits, int32_t token, int32_t n_top);

 private:
  struct candidate {
    int32_t id;
    float logit;
  };

  // -- member variables -------------------------------------------------------
  sampling_params p_;
  std::vector<candidate> cand_;
  std::vector<double> weights_;  // scratch of the untruncated draw
};

}  // namespace baton
