// The byte-level matcher for a json_grammar: a pushdown automaton whose stack holds one
// frame per open JSON construct (object, array, key, string, number, literal). anyOf
// makes it nondeterministic: the state is a set of stacks ("threads"), forked where a
// value starts and dropped where a byte kills one; identical stacks merge. A state
// depends only on the bytes fed so far, so a new owner rebuilds it by replaying them.
//
// Every frame says how many bytes at least finish it (`min_close_bytes`), which is
// how the token mask keeps a reply closable within max_tokens: each byte is a token of
// Llama 3's vocabulary, so a document that fits in the bytes left fits in the tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "runtime/grammar/json_schema.hpp"

namespace baton::grammar {

/// One open construct. Fields are shared by kinds (see json_matcher.cpp, "frames").
struct frame {
  uint8_t kind = 0;
  uint8_t phase = 0;
  uint8_t ws = 0;          ///< whitespace bytes since the last token
  uint8_t esc = 0;         ///< strings and keys: escape sequence progress
  uint8_t utf8_left = 0;   ///< strings and keys: continuation bytes still due
  uint8_t utf8_class = 0;  ///< strings and keys: the next continuation byte's range
  uint8_t flags = 0;       ///< numbers: negative, negative exponent
  uint8_t pad = 0;
  int32_t node = 0;
  int32_t a = 0;
  int32_t b = 0;
  int32_t c = 0;
  int32_t d = 0;
  uint32_t u = 0;
  uint64_t e = 0;
  uint64_t f = 0;

  friend bool operator==(const frame&, const frame&) = default;
};

/// A set of stacks, stored back to back.
struct match_state {
  std::vector<frame> frames;
  std::vector<uint32_t> ends;  ///< [threads]: one past each thread's last frame

  size_t n_threads() const { return ends.size(); }
  bool dead() const { return ends.empty(); }
  void clear() {
    frames.clear();
    ends.clear();
  }
};

class json_matcher {
 public:
  explicit json_matcher(std::shared_ptr<json_grammar> g);

  /// The state before any byte.
  match_state start() const;

  /// `out` = `in` after `byte`; false (and `out` dead) when no thread accepts it.
  bool step(const match_state& in, uint8_t byte, match_state& out);

  /// Feeds `bytes` to `s` in place; false when one of them is refused (s is then dead).
  bool feed(match_state& s, std::string_view bytes);

  /// Whether the bytes so far are a whole document.
  bool accepting(const match_state& s) const;

  /// Fewest bytes that make `s` a whole document (k_infinite-ish when none is known).
  int64_t min_close_bytes(const match_state& s) const;

  /// Whether `s` is one thread inside a string or key whose next plain bytes (no quote,
  /// backslash or control byte; whole UTF-8 characters) are all allowed, and how many
  /// more code points it takes (-1: any number).
  bool in_free_string(const match_state& s, int64_t& max_more_chars) const;

  const json_grammar& grammar() const { return *g_; }

 private:
  // -- member variables -------------------------------------------------------
  std::shared_ptr<json_grammar> g_;
  std::vector<frame> scratch_;  // one thread being advanced
  std::vector<frame> forks_;    // threads forked at a value's first byte
  std::vector<uint32_t> fork_ends_;
};

}  // namespace baton::grammar
