// From the byte-level matcher to the vocabulary: which tokens keep the output a prefix
// of some valid document. `token_trie` holds every token's bytes as a trie laid out in
// depth-first order (built once per tokenizer); the mask walks it, stepping the matcher
// one byte per trie edge and skipping a whole subtree where a byte is refused, so a
// token that closes a string and opens the next key is judged like any other.
//
// Inside a string with no pattern the walk would visit most of the vocabulary, so the
// trie also keeps a bitmask of "plain" tokens (no quote, backslash or control byte;
// whole UTF-8 characters), allowed there wholesale by their code-point count, and a
// second trie of the other tokens, which alone are walked.
//
// With a token budget, a token is allowed only when the document can still be closed
// in the tokens left after it (one byte a token at worst), so a constrained reply cut
// by max_tokens still parses.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/grammar/json_matcher.hpp"

namespace baton {
class tokenizer;
}

namespace baton::grammar {

class token_trie {
 public:
  struct node {
    uint8_t byte;
    bool more;       ///< other tokens have the same bytes (see `same_bytes`)
    uint16_t depth;  ///< 1 for a token's first byte
    int32_t token;   ///< the token these bytes spell, or -1
    uint32_t skip;   ///< index of the first node after this one's subtree
  };

  /// Every normal and user-defined token's piece; control and unused tokens are left out
  /// (end-of-generation ids are allowed apart, where the document is whole).
  static std::shared_ptr<const token_trie> build(const tokenizer& tok);

  int32_t n_vocab = 0;
  std::vector<node> all;       ///< every token
  std::vector<node> special;   ///< tokens that are not plain
  std::unordered_map<uint32_t, std::vector<int32_t>> same_bytes_all, same_bytes_special;
  /// [k_char_buckets][words]: plain tokens of at most k code points (k < 16); the last
  /// bucket holds every plain token
  std::vector<std::vector<uint64_t>> plain_upto;
  static constexpr int32_t k_char_buckets = 17;
  std::vector<int32_t> plain_long;  ///< plain tokens of 16 code points or more
  std::vector<int32_t> plain_long_chars;
  int32_t max_plain_chars = 0;
  std::vector<int32_t> eog;
  std::vector<std::string> pieces;  ///< [n_vocab]: each token's bytes (empty: left out)
  size_t max_depth = 0;
};

/// The masks of one sequence's constrained output: a grammar, the matcher state after
/// the tokens so far, and scratch space for the walk. Not thread-safe.
class json_constraint {
 public:
  json_constraint(std::shared_ptr<json_grammar> g, std::shared_ptr<const token_trie> trie);

  /// Sets bit t of `mask` (n_vocab bits, words of 64) for each allowed token;
  /// `remaining`: tokens left including this one (-1: no limit).
  void fill_mask(int64_t remaining, std::vector<uint64_t>& mask);

  /// Takes token `id`; false (state unchanged) when the grammar refuses it. An
  /// end-of-generation id is taken only where the document is whole.
  bool commit(int32_t id);

  /// Whether the output so far is a whole document.
  bool complete() const { return matcher_.accepting(state_); }
  /// Whether an end-of-generation token was committed.
  bool finished() const { return finished_; }
  /// Fewest bytes still needed to close the document.
  int64_t min_close_bytes() const { return matcher_.min_close_bytes(state_); }

 private:
  void walk(const std::vector<token_trie::node>& nodes,
            const std::unordered_map<uint32_t, std::vector<int32_t>>& same,
            int64_t remaining, std::vector<uint64_t>& mask);

  // -- member variables -------------------------------------------------------
  json_matcher matcher_;
  std::shared_ptr<const token_trie> trie_;
  match_state state_;
  bool finished_ = false;
  std::vector<match_state> depth_states_;  // [max_depth + 1]: the walk's path
  match_state next_;
};

}  // namespace baton::grammar
