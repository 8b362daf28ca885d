// sampler.hpp. Candidates are kept sorted by logit (descending, ties by id) once top-k
// has cut them, so top-p and min-p walk a prefix.
#include "runtime/serving/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

namespace baton {

result<void> sampling_params::validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return make_error("temperature (%g) must be >= 0", static_cast<double>(temperature));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return make_error("top_p (%g) must be in (0, 1]", static_cast<double>(top_p));
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return make_error("min_p (%g) must be in [0, 1]", static_cast<double>(min_p));
  }
  if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
    return make_error("repeat_penalty (%g) must be > 0", static_cast<double>(repeat_penalty));
  }
  if (!(std::fabs(presence_penalty) <= 2.0f)) {
    return make_error("presence_penalty (%g) must be in [-2, 2]",
                      static_cast<double>(presence_penalty));
  }
  if (!(std::fabs(frequency_penalty) <= 2.0f)) {
    return make_error("frequency_penalty (%g) must be in [-2, 2]",
                      static_cast<double>(frequency_penalty));
  }
  if (penalty_last_n < 0) {
    return make_error("penalty_last_n (%d) must be >= 0", penalty_last_n);
  }
  return {};
}

sampler::sampler(const sampling_params& p) : p_(p) {}

namespace {

/// SplitMix64's finaliser: a bijection of 64-bit words whose outputs for consecutive
/// inputs look independent.
uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

double sampler::uniform(uint64_t seed, uint64_t draw) {
  return static_cast<double>(mix64(mix64(seed) ^ draw) >> 11) * 0x1p-53;
}

int32_t sampler::greedy(std::span<const float> logits) {
  // the chunk of 256 logits whose largest is the largest (the first such chunk), each
  // chunk's in eight lanes at once, then the first id with that value in it: one chain of
  // compares over 128k logits took 112 us with the copy sample() made, this 7. NaNs are
  // never the largest.
  using lanes4 = float __attribute__((vector_size(16)));
  constexpr size_t chunk = 256;
  constexpr float lowest = -std::numeric_limits<float>::infinity();
  const size_t n = logits.size();
  float best = lowest;
  size_t best_at = 0;
  for (size_t c = 0; c < n; c += chunk) {
    const size_t end = std::min(n, c + chunk);
    lanes4 m0 = {lowest, lowest, lowest, lowest}, m1 = m0;
    size_t i = c;
    for (; i + 8 <= end; i += 8) {
      lanes4 v0, v1;
      std::memcpy(&v0, logits.data() + i, sizeof v0);
      std::memcpy(&v1, logits.data() + i + 4, sizeof v1);
      m0 = v0 > m0 ? v0 : m0;
      m1 = v1 > m1 ? v1 : m1;
    }
    float cm = lowest;
    for (int j = 0; j < 4; ++j) {
      cm = m0[j] > cm ? m0[j] : cm;
      cm = m1[j] > cm ? m1[j] : cm;
    }
    for (; i < end; ++i) {
      cm = logits[i] > cm ? logits[i] : cm;
    }
    if (cm > best) {
      best = cm;
      best_at = c;
    }
  }
  const auto from = logits.begin() + static_cast<std::ptrdiff_t>(best_at);
  const auto to = from + static_cast<std::ptrdiff_t>(std::min(chunk, n - best_at));
  const auto at = std::find(from, to, best);
  return at == to ? 0 : static_cast<int32_t>(at - logits.begin());
}

namespace {

/// log sum exp(l), in double: log softmax(l)[i] = l[i] - this.
double log_sum_exp(std::span<const float> l) {
  float mx = l[0];
  for (float v : l) {
    mx = std::max(mx, v);
  }
  double sum = 0;
  for (float v : l) {
    sum += std::exp(static_cast<double>(v - mx));
  }
  return static_cast<double>(mx) + std::log(sum);
}

/// The `n` most likely ids, highest logit first (ties: the lower id).
std::vector<int32_t> top_ids(std::span<const float> l, int32_t n) {
  std::vector<int32_t> ids(l.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(i);
  }
  const auto k = std::min<size_t>(static_cast<size_t>(n), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                    [&](int32_t a, int32_t b) {
                      return l[static_cast<size_t>(a)] > l[static_cast<size_t>(b)] ||
                             (l[static_cast<size_t>(a)] == l[static_cast<size_t>(b)] && a < b);
                    });
  ids.resize(k);
  return ids;
}

}  // namespace

token_logprobs sampler::logprobs(std::span<const float> logits, int32_t token, int32_t n_top) {
  token_logprobs r;
  const double lse = log_sum_exp(logits);
  r.logprob = static_cast<float>(logits[static_cast<size_t>(token)] - lse);
  if (n_top > 0) {
    r.top_ids = top_ids(logits, n_top);
    r.top_logprobs.reserve(r.top_ids.size());
    for (int32_t id : r.top_ids) {
      r.top_logprobs.push_back(static_cast<float>(logits[static_cast<size_t>(id)] - lse));
    }
  }
  return r;
}

int32_t sampler::sample(std::span<const float> logits, std::span<const int32_t> history,
                        uint64_t draw) {
  const bool penalize = p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f ||
                        p_.frequency_penalty != 0.0f;
  const bool penalized = penalize && p_.penalty_last_n > 0 && !history.empty();
  if (p_.temperature <= 0.0f && !penalized) {
    // the argmax of the logits as they are, without a copy of 128k candidates (112 us a
    // token, which 16 sequences of a step waited for one after another)
    return greedy(logits);
  }
  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    cand_[i] = {static_cast<int32_t>(i), logits[i]};
  }
  // penalties over the recent history
  if (penalized) {
    std::unordered_map<int32_t, int32_t> counts;
    const size_t n = std::min(history.size(), static_cast<size_t>(p_.penalty_last_n));
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      ++counts[history[i]];
    }
    for (const auto& [id, count] : counts) {
      if (id < 0 || static_cast<size_t>(id) >= cand_.size()) {
        continue;
      }
      float& l = cand_[static_cast<size_t>(id)].logit;
      l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
      l -= static_cast<float>(count) * p_.frequency_penalty +
           (count > 0 ? 1.0f : 0.0f) * p_.presence_penalty;
    }
  }
  auto by_logit = [](const candidate& a, const candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (p_.temperature <= 0.0f) {
    return std::min_element(cand_.begin(), cand_.end(), by_logit)->id;
  }
  // top-k
  size_t k = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < k) {
    k = static_cast<size_t>(p_.top_k);
  }
  if (k == cand_.size() && p_.top_p >= 1.0f && p_.min_p <= 0.0f) {
    // nothing truncates (OpenAI's defaults): draw over the whole vocabulary in id order,
    // O(n) instead of sorting 128k candidates (15 ms a token)
    float mx = cand_[0].logit;
    for (const auto& c : cand_) {
      mx = std::max(mx, c.logit);
    }
    std::vector<double>& w = weights_;
    w.resize(cand_.size());
    double total = 0.0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      w[i] = std::exp((static_cast<double>(cand_[i].logit) - mx) / p_.temperature);
      total += w[i];
    }
    const double u = uniform(p_.seed, draw) * total;
    double acc = 0.0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      acc += w[i];
      if (u < acc) {
        return cand_[i].id;
      }
    }
    return cand_.back().id;
  }
  if (k == cand_.size() && p_.min_p > 0.0f) {
    // min-p keeps exactly the tokens with p >= min_p x p_max: drop the others before
    // sorting (the sorted survivors are the same)
    float mx = cand_[0].logit;
    for (const auto& c : cand_) {
      mx = std::max(mx, c.logit);
    }
    const double floor = std::log(static_cast<double>(p_.min_p)) - 1e-6;  // lenient: the loop below decides
    std::erase_if(cand_, [&](const candidate& c) {
      return static_cast<double>(c.logit) - mx < floor;
    });
    k = cand_.size();
  }
  if (k == cand_.size()) {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  } else {
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(),
                      by_logit);
  }
  cand_.resize(k);
  // probabilities of the survivors at temperature 1 (top-p and min-p look at these)
  std::vector<double> prob(k);
  const double max = cand_[0].logit;
  double sum = 0.0;
  for (size_t i = 0; i < k; ++i) {
    prob[i] = std::exp(static_cast<double>(cand_[i].logit) - max);
    sum += prob[i];
  }
  // top-p: the smallest prefix whose mass reaches p
  if (p_.top_p < 1.0f) {
    double acc = 0.0;
    size_t keep = k;
    for (size_t i = 0; i < k; ++i) {
      acc += prob[i] / sum;
      if (acc >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    k = keep;
  }
  // min-p: drop tokens below min_p × the top probability
  if (p_.min_p > 0.0f) {
    size_t keep = 1;
    while (keep < k && prob[keep] >= p_.min_p * prob[0]) {
      ++keep;
    }
    k = keep;
  }
  // temperature, then draw
  std::vector<double> w(k);
  double total = 0.0;
  for (size_t i = 0; i < k; ++i) {
    w[i] = std::exp((static_cast<double>(cand_[i].logit) - max) / p_.temperature);
    total += w[i];
  }
  const double u = uniform(p_.seed, draw) * total;
  double acc = 0.0;
  for (size_t i = 0; i < k; ++i) {
    acc += w[i];
    if (u < acc) {
      return cand_[i].id;
    }
  }
  return cand_[k - 1].id;
}

}  // namespace baton
