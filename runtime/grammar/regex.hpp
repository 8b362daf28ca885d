// Regular expressions for constrained decoding: ECMA-262 patterns (the dialect JSON
// Schema's `pattern` uses) and literals, compiled to a byte-level NFA over UTF-8 and
// run as a DFA built lazily, state by state, as bytes arrive. One `regex_set` runs K
// components side by side (a product automaton): a string value that must match its
// `pattern` and its `format` at once, or an object key checked against every declared
// property name and every `patternProperties` regex in one pass.
//
// NFAs are trimmed (states that cannot reach acceptance are dropped), so a component
// whose state set is empty can never match again: `alive_mask` says which can. A state
// id is stable for the life of the set; `next` is one table lookup once a transition
// has been seen. Not thread-safe: the lazy tables grow on first use.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton::grammar {

/// How a component's source is read.
enum class regex_kind : uint8_t {
  search,   ///< ECMA-262 pattern, unanchored as JSON Schema's `pattern`: matches when
            ///< some substring matches; `^` and `$` anchor to the string's ends
  full,     ///< ECMA-262 pattern that must match the whole string (formats)
  literal,  ///< exactly these bytes
};

struct regex_component {
  std::string source;
  regex_kind kind = regex_kind::search;
};

/// A DFA state of a `regex_set`; `k_dead` when no component is alive (never a state).
using regex_state = int32_t;
inline constexpr regex_state k_dead = -1;

class regex_set {
 public:
  /// Compiles up to 64 components. The error names the construct it cannot compile and
  /// its offset in the pattern ("lookahead (?= at offset 3 of \"a(?=b)\""): lookaround,
  /// backreferences, \b, \p{...}, flags), or a pattern whose NFA would exceed the size
  /// limit ("{1,100000}").
  static result<std::shared_ptr<regex_set>> compile(std::vector<regex_component> components);

  /// The state before any byte.
  regex_state start() const { return 0; }

  /// The state after `byte`; k_dead when no component is still alive.
  regex_state next(regex_state s, uint8_t byte) {
    const int32_t t = trans_[static_cast<size_t>(s) * 256 + byte];
    return t != k_unknown ? t : compute(s, byte);
  }

  /// Bit i: component i matches the bytes so far.
  uint64_t accept_mask(regex_state s) const { return info_[static_cast<size_t>(s)].accept; }
  /// Bit i: component i can still match after more bytes (or matches now).
  uint64_t alive_mask(regex_state s) const { return info_[static_cast<size_t>(s)].alive; }
  /// All components' bits.
  uint64_t all_mask() const { return all_; }

  /// The fewest bytes to append from `s` so that every component in `need` (a subset
  /// of all_mask()) matches at once; 0 when they already do; -1 when impossible or
  /// when the search exceeds its bound (callers treat -1 as "cannot close").
  int32_t distance_to_accept(regex_state s, uint64_t need);
  /// The fewest bytes so that at least one component in `any` matches; -1 as above.
  int32_t distance_to_any(regex_state s, uint64_t any);

  /// Whether a transition was refused because the DFA reached its state limit (then
  /// `next` answered k_dead): the caller reports the regex as too complex.
  bool overflowed() const { return overflowed_; }

  size_t n_components() const { return n_components_; }
  size_t n_states() const { return info_.size(); }

  regex_set(const regex_set&) = delete;
  regex_set& operator=(const regex_set&) = delete;
  ~regex_set();

 private:
  struct impl;
  struct state_info {
    uint64_t accept = 0;
    uint64_t alive = 0;
  };
  static constexpr int32_t k_unknown = -2;

  regex_set();
  regex_state compute(regex_state s, uint8_t byte);
  /// Appends the DFA state for `key` (sorted NFA states) and its row of k_unknown.
  regex_state add_state(std::vector<uint32_t> key);

  // -- member variables -------------------------------------------------------
  std::vector<int32_t> trans_;     // [n_states * 256]: next state, k_dead or k_unknown
  std::vector<state_info> info_;   // [n_states]
  uint64_t all_ = 0;
  size_t n_components_ = 0;
  bool overflowed_ = false;
  std::unique_ptr<impl> impl_;
};

/// `text` as an ECMA-262 pattern matching exactly it (metacharacters escaped).
std::string regex_escape(std::string_view text);

}  // namespace baton::grammar
