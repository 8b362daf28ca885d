// From the byte-level matcher to the vocabulary: which tokens keep the output a prefix
// of some valid document. `token_trie` holds every token's bytes as a trie laid out in
// depth-first order (built once per tokenizer); the mask walks it, stepping the matcher
// one byte per trie edge and skipping a whole subtree where a byte is refused, so a
// token that closes a string and opens the next key is judged like any other.
//
// Inside strings and keys the walk would visit most of the vocabulary, so the tokens are
// split in two. "Plain" tokens (no quote, backslash or control byte; whole UTF-8
// characters) change nothing there but the string or key itself (json_matcher.hpp,
// "plain content"): a string with no pattern allows them wholesale by their code-point
// count (bitmasks by count), any other string or key walks a trie of them stepping its
// top frame alone. The other tokens have a trie of their own, walked with the matcher.
//
// With a token budget, a token is allowed only when the document can still be closed
// in the tokens left after it (one byte a token at worst), so a constrained reply cut
// by max_tokens still parses.
//
// Masks are cached per grammar (mask_cache) by what decides them: the matcher state
// with what cannot matter left out (json_matcher::state_key), or for plain tokens the
// top frame alone (plain_key). A cached mask is what the grammar allows with no budget;
// with one it is used as is only when it also knows the dearest closing cost after any
// of its tokens and that fits, and otherwise the walk runs again and measures it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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
  using same_map = std::unordered_map<uint32_t, std::vector<int32_t>>;

  /// Every normal and user-defined token's piece; control and unused tokens are left out
  /// (end-of-generation ids are allowed apart, where the document is whole).
  static std::shared_ptr<const token_trie> build(const tokenizer& tok);

  int32_t n_vocab = 0;
  std::vector<node> all;       ///< every token
  std::vector<node> special;   ///< tokens that are not plain
  std::vector<node> plain;     ///< plain tokens
  same_map same_bytes_all, same_bytes_special, same_bytes_plain;
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

/// Masks computed for one grammar over one vocabulary, by key (see above). Entries are
/// kept until they pass k_max_bytes, when all are dropped. Not thread-safe.
class mask_cache {
 public:
  struct entry {
    std::vector<int32_t> ids;    ///< the tokens allowed, when few
    std::vector<uint64_t> bits;  ///< [words]: the tokens allowed, when many
    /// The dearest closing cost after one of them (for plain tokens, of the top frame
    /// alone); -1 until a walk with a budget has measured it.
    int64_t max_close = -1;
  };
  static constexpr size_t k_max_bytes = size_t{8} << 20;

  explicit mask_cache(const std::shared_ptr<const token_trie>& trie) : trie_(trie) {}
  /// Whether the masks are over `trie`'s vocabulary.
  bool over(const std::shared_ptr<const token_trie>& trie) const {
    return !trie_.owner_before(trie) && !trie.owner_before(trie_);
  }

  /// The entry for `key`, or null.
  entry* find(std::string_view key);
  /// Stores `allowed` under `key` (replacing what was there).
  void put(const std::string& key, const std::vector<int32_t>& allowed, int64_t max_close,
           size_t words);

 private:
  struct hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // -- member variables -------------------------------------------------------
  std::weak_ptr<const token_trie> trie_;
  std::unordered_map<std::string, entry, hash, std::equal_to<>> entries_;
  size_t bytes_ = 0;
};

/// The masks of one sequence's constrained output: a grammar, the matcher state after
/// the tokens so far, and scratch space for the walk. Not thread-safe, and neither are
/// other constraints on the same grammar at the same time (they share its mask_cache).
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
  /// Tokens the state allows whose first bytes the matcher must judge: those of
  /// `nodes`, walked from the state (or taken from the cache).
  void walk_state(const std::vector<token_trie::node>& nodes, const token_trie::same_map& same,
                  int64_t remaining, std::vector<uint64_t>& mask);
  /// Plain tokens the state's thread of `n` frames from `st` allows.
  void plain_tokens(const frame* st, size_t n, int64_t remaining, std::vector<uint64_t>& mask);
  /// Walks `nodes` from the state, into found_ and (with a budget) found_close_.
  void walk(const std::vector<token_trie::node>& nodes, const token_trie::same_map& same,
            bool budget);
  /// Walks the plain trie stepping top frame `top` alone, into found_ and found_close_
  /// (the top frame's closing cost after each, with a budget).
  void walk_plain(const frame* parent, const frame& top, bool budget);
  /// Stores found_ under key_ and adds to `mask` those that fit in `remaining` tokens
  /// when each closing cost is raised by `below`.
  void keep_found(int64_t remaining, int64_t below, bool budget, std::vector<uint64_t>& mask);

  // -- member variables -------------------------------------------------------
  json_matcher matcher_;
  std::shared_ptr<const token_trie> trie_;
  std::shared_ptr<mask_cache> cache_;  // the grammar's
  match_state state_;
  bool finished_ = false;
  std::vector<json_matcher::walk_state> depth_states_;  // [max_depth + 1]: the walk's path
  std::vector<frame> depth_tops_;          // [max_depth + 1]: the plain walk's path
  std::vector<int32_t> found_;             // tokens a walk allowed
  std::vector<int64_t> found_close_;       // [found_]: closing cost after each
  std::string key_;
  std::vector<std::string> plain_seen_;    // plain keys done in this mask
};

}  // namespace baton::grammar
