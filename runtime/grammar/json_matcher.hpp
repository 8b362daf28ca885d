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
#include <string>
#include <string_view>
#include <utility>
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

  // -- the token walk -----------------------------------------------------------------
  // The mask steps the matcher along every path of the vocabulary trie from one state,
  // the root. A state a few bytes past it differs from it only near the top of each
  // thread, so the walk holds each thread as a prefix of one of the root's threads, read
  // in place, and the frames above that prefix: a step copies only what it changes.

  struct walk_state {
    struct thread {
      uint32_t root;      ///< the root's thread it starts with
      uint32_t n_shared;  ///< how many of that thread's frames, from the bottom
      uint32_t own_end;   ///< one past its frames in `own` (from the previous thread's end)
      uint64_t hash;      ///< of its whole stack, to merge identical threads; 0: not yet
    };
    std::vector<thread> threads;
    std::vector<frame> own;

    bool dead() const { return threads.empty(); }
  };

  /// Makes `root` the state walk steps start from; it must outlive them.
  void walk_root(const match_state& root);
  /// `out` = `in` (null: the root) after `byte`; false (and `out` dead) when no thread
  /// takes it. Like step, but identical stacks are found by their hashes.
  bool walk_step(const walk_state* in, uint8_t byte, walk_state& out);
  /// min_close_bytes of a walk state.
  int64_t min_close_bytes(const walk_state& s);

  // -- plain content ------------------------------------------------------------------
  // A plain token (token_mask.hpp) holds no quote, backslash or control byte and only
  // whole UTF-8 characters. Where every thread's top frame is a string or key in
  // content (no escape or character half written), such a token changes nothing but
  // those top frames, so the mask can judge plain tokens on the top frames alone.

  /// Whether every thread of `s` is in a string's or key's content (see above).
  bool in_content(const match_state& s) const;

  /// How plain tokens fare on a top frame in content (`parent`: the frame under it, a
  /// key's object). `free`: each is allowed exactly when it adds at most `max_chars`
  /// code points (-1: any number), and none raises the top frame's closing cost above
  /// `close_bound` (a string with no regex; a key that may take any name and has no
  /// propertyNames). Otherwise each must be stepped with plain_byte.
  struct plain_rule {
    bool free = false;
    int64_t max_chars = -1;
    int64_t close_bound = 0;
  };
  plain_rule plain_rule_of(const frame* parent, const frame& top) const;

  /// `top` (in content) after one byte of a plain token; false when no string or key it
  /// may become can follow. Between a multi-byte character's bytes `top` is not a state
  /// of its own: only what follows a whole token means anything.
  bool plain_byte(const frame* parent, frame& top, uint8_t byte);

  /// A thread's closing cost in two parts: its top frame's (a key's with its object,
  /// `parent`) and that of the frames under those (`n` frames from `st`, the top
  /// included). For a thread with no escape half written, min_close_bytes is the lesser
  /// of their sum and k_infinite.
  int64_t close_top(const frame* parent, const frame& top) const;
  int64_t close_below(const frame* st, size_t n) const;
  static constexpr int64_t k_infinite = int64_t{1} << 40;

  // -- cache keys ---------------------------------------------------------------------

  /// Appends to `out` bytes that equal another state's exactly when both allow the same
  /// tokens of up to `max_token_bytes` bytes with the same closing costs after each:
  /// the frames, with what cannot matter left out (a string's code-point count beyond
  /// what its bounds can still tell apart, stale fields).
  void state_key(const match_state& s, int64_t max_token_bytes, std::string& out) const;

  /// The same for a top frame in content as plain tokens see it (with a key's object).
  void plain_key(const frame* parent, const frame& top, int64_t max_token_bytes,
                 std::string& out) const;

  const json_grammar& grammar() const { return *g_; }

 private:
  /// Adds a thread (`n_shared` frames of root thread `root`, then `n_own` from `own`)
  /// to `out` unless an identical one is there.
  void walk_add(walk_state& out, uint32_t root, uint32_t n_shared, const frame* own, size_t n_own);
  /// Frame i of thread t of `s` (whose frames in s.own start at `own_begin`).
  const frame& walk_frame(const walk_state& s, const walk_state::thread& t, uint32_t own_begin,
                          size_t i) const;

  // -- member variables -------------------------------------------------------
  std::shared_ptr<json_grammar> g_;
  std::vector<frame> scratch_;  // the frames a step writes (above the shared ones)
  std::vector<frame> forks_;    // threads forked at a value's first byte (their own frames)
  std::vector<std::pair<uint32_t, uint32_t>> fork_ends_;  // per fork: shared frames, end in forks_
  std::vector<int32_t> alts_;   // a value's alternatives

  // the walk's root: its threads' first frames and, per thread and prefix length (each
  // thread's n + 1 entries back to back, from prefix_at_[thread]), hashes and closing
  // costs of the frames under it (the latter computed when first asked for)
  const match_state* root_ = nullptr;
  walk_state root_walk_;
  std::vector<uint32_t> root_begin_;
  std::vector<uint32_t> prefix_at_;
  std::vector<uint64_t> prefix_hash_;
  std::vector<int64_t> prefix_close_;
};

}  // namespace baton::grammar
