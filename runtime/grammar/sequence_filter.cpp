// A sequence's logit filter on the last stage (see sequence_filter.hpp).
#include "runtime/grammar/sequence_filter.hpp"

#include <limits>

namespace baton::grammar {

result<std::unique_ptr<sequence_filter>> sequence_filter::create(
    std::shared_ptr<json_grammar> g, std::shared_ptr<const token_trie> trie,
    std::vector<int32_t> bias_ids, std::vector<float> bias_values, int32_t max_tokens) {
  if (bias_ids.size() != bias_values.size()) {
    return error{"logit_bias: " + std::to_string(bias_ids.size()) + " ids but " +
                 std::to_string(bias_values.size()) + " values"};
  }
  std::unique_ptr<sequence_filter> f(new sequence_filter());
  f->grammar_ = std::move(g);
  f->trie_ = std::move(trie);
  f->bias_ids_ = std::move(bias_ids);
  f->bias_values_ = std::move(bias_values);
  f->max_tokens_ = max_tokens;
  if (f->grammar_) {
    f->constraint_ = std::make_unique<json_constraint>(f->grammar_, f->trie_);
    // Keep the last token for the end of generation when the shortest document fits
    // without it (each byte is at most one token): the reply then ends with "stop",
    // not "length", which clients such as the OpenAI SDK's parse() treat as truncated.
    if (max_tokens > 0 && f->constraint_->min_close_bytes() <= int64_t{max_tokens} - 1) {
      f->eog_reserve_ = 1;
    }
  }
  return f;
}

result<void> sequence_filter::replay(std::span<const int32_t> generated) {
  generated_.clear();
  mask_draw_ = -1;
  if (!grammar_) {
    generated_.assign(generated.begin(), generated.end());
    return {};
  }
  constraint_ = std::make_unique<json_constraint>(grammar_, trie_);
  for (size_t i = 0; i < generated.size(); ++i) {
    if (!constraint_->commit(generated[i])) {
      return error{"generated token " + std::to_string(i) + " (id " +
                   std::to_string(generated[i]) + ") is not allowed by the grammar"};
    }
    generated_.push_back(generated[i]);
  }
  return {};
}

bool sequence_filter::seek(int32_t draw) {
  if (draw < 0 || static_cast<size_t>(draw) > generated_.size()) {
    return false;
  }
  if (static_cast<size_t>(draw) < generated_.size()) {
    // a step the router never saw: take back the tokens after `draw`
    std::vector<int32_t> keep(generated_.begin(), generated_.begin() + draw);
    if (!replay(keep)) {
      return false;
    }
  }
  return true;
}

void sequence_filter::prepare(int32_t draw) {
  if (!grammar_ || mask_draw_ == draw || !seek(draw)) {
    return;
  }
  const int64_t remaining =
      max_tokens_ > 0 ? std::max<int64_t>(max_tokens_ - eog_reserve_ - draw, 0) : -1;
  constraint_->fill_mask(remaining, mask_);
  mask_draw_ = draw;
}

bool sequence_filter::apply(std::span<const float> logits, int32_t draw, std::vector<float>& out) {
  out.assign(logits.begin(), logits.end());
  for (size_t i = 0; i < bias_ids_.size(); ++i) {
    const auto id = static_cast<size_t>(bias_ids_[i]);
    if (id < out.size()) {
      out[id] += bias_values_[i];
    }
  }
  if (!grammar_) {
    return true;
  }
  prepare(draw);
  if (mask_draw_ != draw) {
    return false;
  }
  bool any = false;
  constexpr float minus_inf = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < out.size(); ++i) {
    if (mask_[i / 64] >> (i % 64) & 1) {
      any = true;
    } else {
      out[i] = minus_inf;
    }
  }
  return any;
}

void sequence_filter::commit(int32_t draw, int32_t token) {
  if (!grammar_) {
    return;
  }
  if (seek(draw) && constraint_->commit(token)) {
    generated_.push_back(token);
  }
  mask_draw_ = -1;
}

}  // namespace baton::grammar
