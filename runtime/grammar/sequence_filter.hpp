// What the last stage does to one sequence's logits before it samples: adds the logit
// biases and masks every token the sequence's JSON grammar refuses (-inf), so greedy
// and sampled choice alike, and the reported logprobs, see the distribution the token
// is drawn from. The grammar's state is a function of the tokens generated so far: a
// new last stage (a reshard, a recovery) rebuilds it by replaying them, and a draw
// behind the filter (a step that never reached the router) rewinds it the same way.
// Under a budget (max_tokens) the document closes within it, one token early when the
// shortest document allows, so that the end-of-generation token fits too.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/grammar/token_mask.hpp"

namespace baton::grammar {

class sequence_filter {
 public:
  /// `json_schema` empty: biases only. The error names the keyword and where.
  static result<std::unique_ptr<sequence_filter>> create(
      std::shared_ptr<json_grammar> g, std::shared_ptr<const token_trie> trie,
      std::vector<int32_t> bias_ids, std::vector<float> bias_values, int32_t max_tokens);

  /// Replays `generated` (every token generated so far) from the start.
  result<void> replay(std::span<const int32_t> generated);

  /// Computes the mask for draw `draw` (the tokens generated before it) ahead of the
  /// logits; `apply` then reuses it.
  void prepare(int32_t draw);

  /// `out` = `logits` biased and masked for draw `draw`; false when the grammar allows
  /// no token at all (or `draw` is ahead of the tokens the filter has seen).
  bool apply(std::span<const float> logits, int32_t draw, std::vector<float>& out);

  /// The token sampled for draw `draw`.
  void commit(int32_t draw, int32_t token);

  bool constrained() const { return grammar_ != nullptr; }

 private:
  sequence_filter() = default;
  /// Brings the grammar to `draw` tokens; false when it cannot (draw ahead of them).
  bool seek(int32_t draw);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<json_grammar> grammar_;
  std::shared_ptr<const token_trie> trie_;
  std::unique_ptr<json_constraint> constraint_;
  std::vector<int32_t> generated_;  ///< the tokens the grammar has taken, in order
  std::vector<int32_t> bias_ids_;
  std::vector<float> bias_values_;
  int32_t max_tokens_ = 0;
  int32_t eog_reserve_ = 0;         ///< 1: the document closes a token early, for the end
  int32_t mask_draw_ = -1;          ///< the draw `mask_` is for
  std::vector<uint64_t> mask_;
};

}  // namespace baton::grammar
