// regex.hpp: the ECMA-262 pattern parser (to a tree over code point sets), the
// Thompson construction of one byte-level NFA for all components (code point sets split
// into UTF-8 byte ranges, `^`/`$` as assertion edges, counted repetition expanded under
// a state cap), the trimming that keeps only states that can still reach acceptance,
// the lazy subset construction behind `regex_set::next`, and the distances to
// acceptance (exact per component from the NFA; A* over the DFA for several at once).
//
// All K components live in one NFA, each in its own range of state ids, so a DFA state
// is one sorted vector of NFA ids: the tuple of per-component sets, concatenated. A
// set holds only the states that matter after a byte (those with byte edges, or that
// accept at the end of input); the epsilon-only states in between are followed, not
// kept, so that equivalent sets compare equal.
#include "runtime/grammar/regex.hpp"

#include <algorithm>
#include <bit>
#include <deque>
#include <queue>
#include <unordered_map>
#include <utility>

namespace baton::grammar {

namespace {

constexpr uint32_t k_max_code_point = 0x10ffff;
constexpr uint32_t k_inf = UINT32_MAX;            // a quantifier without an upper bound
constexpr size_t k_max_nfa_states = 100000;       // per component
constexpr size_t k_max_dfa_states = 20000;        // per regex_set
constexpr size_t k_max_distance_states = 4096;    // DFA states one distance search sees
constexpr uint32_t k_far = UINT32_MAX;            // no way to acceptance
constexpr int32_t k_max_group_depth = 128;        // the parser and the builder recurse
constexpr size_t k_max_components = 64;

// -- code point sets ----------------------------------------------------------

struct cp_range {
  uint32_t lo = 0;
  uint32_t hi = 0;
};
using cp_set = std::vector<cp_range>;  // sorted, disjoint, not adjacent once normalized

cp_set normalized(cp_set s) {
  std::sort(s.begin(), s.end(), [](cp_range a, cp_range b) { return a.lo < b.lo; });
  cp_set out;
  for (cp_range r : s) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

cp_set negated(const cp_set& s) {
  cp_set out;
  uint32_t lo = 0;
  for (cp_range r : s) {
    if (r.lo > lo) {
      out.push_back({lo, r.lo - 1});
    }
    lo = r.hi + 1;
  }
  if (lo <= k_max_code_point) {
    out.push_back({lo, k_max_code_point});
  }
  return out;
}

cp_set digit_set() { return {{'0', '9'}}; }
cp_set word_set() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
cp_set space_set() {
  // ECMA-262 WhiteSpace and LineTerminator
  return {{0x09, 0x0d}, {0x20, 0x20},     {0xa0, 0xa0},     {0x1680, 0x1680},
          {0x2000, 0x200a}, {0x2028, 0x2029}, {0x202f, 0x202f}, {0x205f, 0x205f},
          {0x3000, 0x3000}, {0xfeff, 0xfeff}};
}
cp_set dot_set() { return negated({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}); }
cp_set any_set() { return {{0, k_max_code_point}}; }

// -- UTF-8 ----------------------------------------------------------------------

/// The bytes of code points lo..hi as 1-4 byte ranges, one per position.
struct utf8_seq {
  int n = 0;
  std::array<uint8_t, 4> lo{};
  std::array<uint8_t, 4> hi{};
};

int utf8_encode(uint32_t cp, std::array<uint8_t, 4>& b) {
  if (cp < 0x80) {
    b[0] = static_cast<uint8_t>(cp);
    return 1;
  }
  if (cp < 0x800) {
    b[0] = static_cast<uint8_t>(0xc0 | (cp >> 6));
    b[1] = static_cast<uint8_t>(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    b[0] = static_cast<uint8_t>(0xe0 | (cp >> 12));
    b[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3f));
    b[2] = static_cast<uint8_t>(0x80 | (cp & 0x3f));
    return 3;
  }
  b[0] = static_cast<uint8_t>(0xf0 | (cp >> 18));
  b[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3f));
  b[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3f));
  b[3] = static_cast<uint8_t>(0x80 | (cp & 0x3f));
  return 4;
}

/// Splits lo..hi (no surrogates inside) until each piece is a product of byte ranges:
/// same encoded length, and every position but the ranged ones shared.
void utf8_split(uint32_t lo, uint32_t hi, std::vector<utf8_seq>& out) {
  for (uint32_t edge : {0x7fu, 0x7ffu, 0xffffu}) {
    if (lo <= edge && hi > edge) {
      utf8_split(lo, edge, out);
      utf8_split(edge + 1, hi, out);
      return;
    }
  }
  for (int n = 1; n < 4; ++n) {
    const uint32_t m = (1u << (6 * n)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_split(lo, lo | m, out);
        utf8_split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_split(lo, (hi & ~m) - 1, out);
        utf8_split(hi & ~m, hi, out);
        return;
      }
    }
  }
  utf8_seq s;
  s.n = utf8_encode(lo, s.lo);
  utf8_encode(hi, s.hi);
  out.push_back(s);
}

// -- the pattern's tree -------------------------------------------------------------

enum class node_kind : uint8_t { empty, set, concat, alt, repeat, bol, eol };

struct node {
  node_kind kind = node_kind::empty;
  cp_set set;                   // kind set
  std::vector<int32_t> kids;    // concat, alt; repeat: one
  uint32_t min = 0;             // repeat
  uint32_t max = 0;             // repeat; k_inf when unbounded
  size_t offset = 0;            // repeat: the quantifier's bytes in the pattern
  size_t length = 0;
};

/// One escape or class member: a code point or a set (\d, \w, \s and negations).
struct class_atom {
  bool is_set = false;
  uint32_t cp = 0;
  cp_set set;
};

/// Recursive descent over the pattern's code points; `offs_[i]` is the byte offset of
/// code point i, `offs_[n]` the pattern's length.
class parser {
 public:
  explicit parser(std::string_view src) : src_(src) {}

  result<int32_t> parse() {
    if (auto r = decode(); !r) {
      return r.err();
    }
    auto root = parse_alt(0);
    if (!root) {
      return root;
    }
    if (i_ < n()) {  // only an unmatched ')' stops parse_alt early
      return fail("unmatched ) at offset %zu", offs_[i_]);
    }
    return root;
  }

  std::vector<node>& nodes() { return nodes_; }

 private:
  size_t n() const { return cps_.size(); }
  bool at(uint32_t c) const { return i_ < n() && cps_[i_] == c; }
  bool at(size_t i, uint32_t c) const { return i < n() && cps_[i] == c; }

  template <class... Ts>
  error fail(const char* fmt, Ts... xs) const {
    const std::string quoted =
        src_.size() <= 200 ? std::string(src_) : std::string(src_.substr(0, 200)) + "...";
    return make_error(("regex \"%s\": " + std::string(fmt)).c_str(), quoted.c_str(), xs...);
  }

  result<void> decode() {
    size_t i = 0;
    while (i < src_.size()) {
      const auto b0 = static_cast<uint8_t>(src_[i]);
      const int len = b0 < 0x80           ? 1
                      : (b0 >> 5) == 0x06 ? 2
                      : (b0 >> 4) == 0x0e ? 3
                      : (b0 >> 3) == 0x1e ? 4
                                          : 0;
      if (len == 0 || i + static_cast<size_t>(len) > src_.size()) {
        return fail("invalid UTF-8 at offset %zu", i);
      }
      uint32_t cp = len == 1 ? b0 : b0 & (0x7fu >> len);
      for (int k = 1; k < len; ++k) {
        const auto b = static_cast<uint8_t>(src_[i + static_cast<size_t>(k)]);
        if ((b & 0xc0) != 0x80) {
          return fail("invalid UTF-8 at offset %zu", i);
        }
        cp = (cp << 6) | (b & 0x3fu);
      }
      cps_.push_back(cp);
      offs_.push_back(i);
      i += static_cast<size_t>(len);
    }
    offs_.push_back(src_.size());
    return {};
  }

  int32_t add(node x) {
    nodes_.push_back(std::move(x));
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  int32_t add_set(cp_set s) {
    node x;
    x.kind = node_kind::set;
    x.set = std::move(s);
    return add(std::move(x));
  }

  result<int32_t> parse_alt(int32_t depth) {
    if (depth > k_max_group_depth) {
      return fail("groups nested deeper than %d at offset %zu", k_max_group_depth, offs_[i_]);
    }
    node alt;
    alt.kind = node_kind::alt;
    while (true) {
      auto c = parse_concat(depth);
      if (!c) {
        return c;
      }
      alt.kids.push_back(*c);
      if (!at('|')) {
        break;
      }
      ++i_;
    }
    return alt.kids.size() == 1 ? alt.kids[0] : add(std::move(alt));
  }

  result<int32_t> parse_concat(int32_t depth) {
    node cat;
    cat.kind = node_kind::concat;
    while (i_ < n() && !at('|') && !at(')')) {
      if (size_t len = quantifier_length(i_); len > 0) {
        return fail("nothing to repeat before %s at offset %zu", text(i_, len).c_str(),
                    offs_[i_]);
      }
      const bool assertion = at('^') || at('$');
      auto a = parse_atom(depth);
      if (!a) {
        return a;
      }
      int32_t x = *a;
      if (size_t len = quantifier_length(i_); len > 0) {
        if (assertion) {
          return fail("nothing to repeat before %s at offset %zu", text(i_, len).c_str(),
                      offs_[i_]);
        }
        auto q = parse_quantifier(x, len);
        if (!q) {
          return q;
        }
        x = *q;
      }
      cat.kids.push_back(x);
    }
    if (cat.kids.empty()) {
      return add(node{});
    }
    return cat.kids.size() == 1 ? cat.kids[0] : add(std::move(cat));
  }

  std::string text(size_t i, size_t len) const {
    return std::string(src_.substr(offs_[i], offs_[i + len] - offs_[i]));
  }

  /// Code points of the quantifier at i, or 0 when none starts there (a `{` that is
  /// not `{n}`, `{n,}` or `{n,m}` is a literal, as browsers read it).
  size_t quantifier_length(size_t i) const {
    if (at(i, '*') || at(i, '+') || at(i, '?')) {
      return 1;
    }
    if (!at(i, '{')) {
      return 0;
    }
    size_t j = i + 1;
    const auto digits = [&] {
      const size_t j0 = j;
      while (j < n() && cps_[j] >= '0' && cps_[j] <= '9') {
        ++j;
      }
      return j > j0;
    };
    if (!digits()) {
      return 0;
    }
    if (at(j, ',')) {
      ++j;
      digits();
    }
    return at(j, '}') ? j + 1 - i : 0;
  }

  uint32_t number(size_t& j) const {
    uint64_t v = 0;
    while (j < n() && cps_[j] >= '0' && cps_[j] <= '9') {
      v = std::min<uint64_t>(v * 10 + (cps_[j] - '0'), k_inf - 1);
      ++j;
    }
    return static_cast<uint32_t>(v);
  }

  result<int32_t> parse_quantifier(int32_t x, size_t len) {
    node rep;
    rep.kind = node_kind::repeat;
    rep.kids = {x};
    rep.offset = offs_[i_];
    rep.length = offs_[i_ + len] - offs_[i_];
    const uint32_t c = cps_[i_];
    if (c == '*' || c == '+' || c == '?') {
      rep.min = c == '+' ? 1 : 0;
      rep.max = c == '?' ? 1 : k_inf;
    } else {
      size_t j = i_ + 1;
      rep.min = number(j);
      rep.max = rep.min;
      if (at(j, ',')) {
        ++j;
        rep.max = at(j, '}') ? k_inf : number(j);
      }
      if (rep.max < rep.min) {
        return fail("numbers out of order in %s at offset %zu", text(i_, len).c_str(),
                    offs_[i_]);
      }
    }
    i_ += len;
    if (at('?')) {  // lazy: the same strings match
      ++i_;
    }
    if (size_t again = quantifier_length(i_); again > 0) {
      return fail("nothing to repeat before %s at offset %zu", text(i_, again).c_str(),
                  offs_[i_]);
    }
    return add(std::move(rep));
  }

  result<int32_t> parse_atom(int32_t depth) {
    const uint32_t c = cps_[i_];
    switch (c) {
      case '.':
        ++i_;
        return add_set(dot_set());
      case '^':
      case '$': {
        ++i_;
        node a;
        a.kind = c == '^' ? node_kind::bol : node_kind::eol;
        return add(std::move(a));
      }
      case '(':
        return parse_group(depth);
      case '[':
        return parse_class();
      case '\\': {
        auto e = parse_escape(false);
        if (!e) {
          return e.err();
        }
        return add_set(e->is_set ? std::move(e->set) : cp_set{{e->cp, e->cp}});
      }
      default:
        ++i_;
        return add_set({{c, c}});
    }
  }

  result<int32_t> parse_group(int32_t depth) {
    const size_t open = i_;
    ++i_;
    if (at('?')) {
      const auto next_is = [&](size_t k, uint32_t ch) { return at(i_ + k, ch); };
      if (next_is(1, ':')) {
        i_ += 2;
      } else if (next_is(1, '=') || next_is(1, '!')) {
        return fail("lookahead %s at offset %zu is not supported", text(open, 3).c_str(),
                    offs_[open]);
      } else if (next_is(1, '<') && (next_is(2, '=') || next_is(2, '!'))) {
        return fail("lookbehind %s at offset %zu is not supported", text(open, 4).c_str(),
                    offs_[open]);
      } else if (next_is(1, '<')) {
        size_t j = i_ + 2;
        while (j < n() && cps_[j] != '>' && cps_[j] != ')') {
          ++j;
        }
        if (!at(j, '>') || j == i_ + 2) {
          return fail("group name at offset %zu has no closing >", offs_[open]);
        }
        i_ = j + 1;  // a named group is a plain group: no backreferences
      } else {
        return fail("group flags or modifiers (? at offset %zu are not supported", offs_[open]);
      }
    }
    auto inner = parse_alt(depth + 1);
    if (!inner) {
      return inner;
    }
    if (!at(')')) {
      return fail("unterminated group ( at offset %zu", offs_[open]);
    }
    ++i_;
    return inner;
  }

  result<int32_t> parse_class() {
    const size_t open = i_;
    ++i_;
    const bool negate = at('^');
    if (negate) {
      ++i_;
    }
    cp_set s;
    while (!at(']')) {
      if (i_ >= n()) {
        return fail("unterminated character class [ at offset %zu", offs_[open]);
      }
      auto a = parse_class_atom();
      if (!a) {
        return a.err();
      }
      if (at('-') && i_ + 1 < n() && !at(i_ + 1, ']')) {
        const size_t dash = i_;
        ++i_;
        auto b = parse_class_atom();
        if (!b) {
          return b.err();
        }
        if (a->is_set || b->is_set) {  // [\d-z]: the dash is a literal (Annex B)
          for (class_atom* x : {&*a, &*b}) {
            if (x->is_set) {
              s.insert(s.end(), x->set.begin(), x->set.end());
            } else {
              s.push_back({x->cp, x->cp});
            }
          }
          s.push_back({'-', '-'});
          continue;
        }
        if (b->cp < a->cp) {
          return fail("range out of order in character class at offset %zu", offs_[dash]);
        }
        s.push_back({a->cp, b->cp});
        continue;
      }
      if (a->is_set) {
        s.insert(s.end(), a->set.begin(), a->set.end());
      } else {
        s.push_back({a->cp, a->cp});
      }
    }
    ++i_;
    s = normalized(std::move(s));
    return add_set(negate ? negated(s) : std::move(s));
  }

  result<class_atom> parse_class_atom() {
    if (!at('\\')) {
      return class_atom{false, cps_[i_++], {}};
    }
    if (at(i_ + 1, 'b')) {  // backspace inside a class
      i_ += 2;
      return class_atom{false, 0x08, {}};
    }
    if (at(i_ + 1, '-')) {
      i_ += 2;
      return class_atom{false, '-', {}};
    }
    return parse_escape(true);
  }

  static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9') {
      return static_cast<int>(c - '0');
    }
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
      return static_cast<int>((c | 0x20) - 'a' + 10);
    }
    return -1;
  }

  /// `count` hex digits at j, or -1.
  int64_t hex_at(size_t j, size_t count) const {
    int64_t v = 0;
    for (size_t k = 0; k < count; ++k) {
      const int h = j + k < n() ? hex_value(cps_[j + k]) : -1;
      if (h < 0) {
        return -1;
      }
      v = v * 16 + h;
    }
    return v;
  }

  /// The escape at i_ (a backslash), outside or inside a class.
  result<class_atom> parse_escape(bool in_class) {
    const size_t bs = i_;
    if (bs + 1 >= n()) {
      return fail("\\ at end of pattern (offset %zu)", offs_[bs]);
    }
    const uint32_t c = cps_[bs + 1];
    i_ = bs + 2;
    const auto cp = [](uint32_t v) { return class_atom{false, v, {}}; };
    const auto set = [](cp_set s) { return class_atom{true, 0, std::move(s)}; };
    switch (c) {
      case 'd': return set(digit_set());
      case 'D': return set(negated(digit_set()));
      case 'w': return set(word_set());
      case 'W': return set(negated(word_set()));
      case 's': return set(normalized(space_set()));
      case 'S': return set(negated(normalized(space_set())));
      case 't': return cp('\t');
      case 'n': return cp('\n');
      case 'v': return cp('\v');
      case 'f': return cp('\f');
      case 'r': return cp('\r');
      default: break;
    }
    if ((c == 'b' || c == 'B') && !in_class) {
      return fail("word boundary \\%c at offset %zu is not supported", static_cast<char>(c),
                  offs_[bs]);
    }
    if ((c == 'p' || c == 'P') && at(i_, '{')) {
      return fail("Unicode property escape \\%c{ at offset %zu is not supported",
                  static_cast<char>(c), offs_[bs]);
    }
    if (c == 'k' && at(i_, '<') && !in_class) {
      return fail("named backreference \\k< at offset %zu is not supported", offs_[bs]);
    }
    if (c >= '1' && c <= '9' && !in_class) {
      return fail("backreference \\%c at offset %zu is not supported", static_cast<char>(c),
                  offs_[bs]);
    }
    if (c >= '0' && c <= '7') {  // \0, and Annex B's legacy octal \0NN and [\1]
      uint32_t v = c - '0';
      const size_t max_digits = c <= '3' ? 2 : 1;
      for (size_t k = 0; k < max_digits && i_ < n() && cps_[i_] >= '0' && cps_[i_] <= '7'; ++k) {
        v = v * 8 + (cps_[i_++] - '0');
      }
      return cp(v);
    }
    if (c == 'x') {
      if (const int64_t v = hex_at(i_, 2); v >= 0) {
        i_ += 2;
        return cp(static_cast<uint32_t>(v));
      }
      return cp('x');
    }
    if (c == 'u') {
      if (at(i_, '{')) {
        size_t j = i_ + 1;
        uint64_t v = 0;
        while (j < n() && hex_value(cps_[j]) >= 0 && v <= k_max_code_point) {
          v = v * 16 + static_cast<uint64_t>(hex_value(cps_[j++]));
        }
        if (j > i_ + 1 && at(j, '}') && v <= k_max_code_point) {
          i_ = j + 1;
          return cp(static_cast<uint32_t>(v));
        }
        return fail("invalid \\u{...} escape at offset %zu", offs_[bs]);
      }
      const int64_t v = hex_at(i_, 4);
      if (v < 0) {
        return cp('u');
      }
      i_ += 4;
      if (v >= 0xd800 && v <= 0xdbff && at(i_, '\\') && at(i_ + 1, 'u')) {  // a pair
        if (const int64_t lo = hex_at(i_ + 2, 4); lo >= 0xdc00 && lo <= 0xdfff) {
          i_ += 6;
          return cp(static_cast<uint32_t>(0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00)));
        }
      }
      return cp(static_cast<uint32_t>(v));
    }
    if (c == 'c') {
      if (i_ < n() && ((cps_[i_] | 0x20) >= 'a' && (cps_[i_] | 0x20) <= 'z')) {
        return cp(cps_[i_++] % 32);
      }
      i_ = bs + 1;  // Annex B: the backslash is itself, `c` is read next
      return cp('\\');
    }
    return cp(c);  // identity escape, leniently for any character
  }

  // -- member variables -------------------------------------------------------
  std::string_view src_;
  std::vector<uint32_t> cps_;  // [n]
  std::vector<size_t> offs_;   // [n + 1]
  size_t i_ = 0;
  std::vector<node> nodes_;
};

// -- the NFA ------------------------------------------------------------------------

enum class edge_kind : uint8_t { eps, byte, bol, eol };

struct edge {
  uint32_t from = 0;
  uint32_t target = 0;
  edge_kind kind = edge_kind::eps;
  uint8_t lo = 0;
  uint8_t hi = 0;
};

struct fragment {
  uint32_t in = 0;
  uint32_t out = 0;
};

/// Thompson construction into one list of edges, for all components in turn.
class nfa_builder {
 public:
  std::vector<edge> edges;    // [n_edges], in the order added
  std::vector<uint8_t> comp;  // [n_states]: the component a state belongs to

  uint32_t add_state() {
    comp.push_back(comp_);
    return static_cast<uint32_t>(comp.size() - 1);
  }

  void begin_component(uint8_t c) {
    comp_ = c;
    base_ = comp.size();
  }
  size_t component_size() const { return comp.size() - base_; }

  void add(uint32_t from, uint32_t to, edge_kind kind, uint8_t lo = 0, uint8_t hi = 0) {
    edges.push_back(edge{from, to, kind, lo, hi});
  }

  /// Byte paths from `from` to `to` for every code point of `s` (surrogates left out).
  /// Paths share their tails: a state is keyed by its one edge (range, target).
  void add_code_points(uint32_t from, uint32_t to, const cp_set& s) {
    std::vector<utf8_seq> seqs;
    for (cp_range r : s) {
      if (r.lo < 0xd800 && r.hi >= 0xd800) {
        utf8_split(r.lo, 0xd7ff, seqs);
      }
      if (r.hi > 0xdfff && r.lo <= 0xdfff) {
        utf8_split(0xe000, r.hi, seqs);
      }
      if (r.hi < 0xd800 || r.lo > 0xdfff) {
        utf8_split(r.lo, r.hi, seqs);
      }
    }
    std::unordered_map<uint64_t, uint32_t> tails;
    for (const utf8_seq& q : seqs) {
      uint32_t t = to;
      for (int k = q.n - 1; k >= 1; --k) {
        const uint64_t key = (uint64_t{q.lo[k]} << 40) | (uint64_t{q.hi[k]} << 32) | t;
        auto [it, fresh] = tails.try_emplace(key, 0);
        if (fresh) {
          it->second = add_state();
          add(it->second, t, edge_kind::byte, q.lo[k], q.hi[k]);
        }
        t = it->second;
      }
      add(from, t, edge_kind::byte, q.lo[0], q.hi[0]);
    }
  }

 private:
  uint8_t comp_ = 0;
  size_t base_ = 0;
};

/// Builds the tree's fragments, checking the state cap where repetition multiplies.
class fragment_builder {
 public:
  fragment_builder(nfa_builder& b, const std::vector<node>& nodes, std::string_view src)
      : b_(b), nodes_(nodes), src_(src) {}

  result<fragment> build(int32_t id) {
    const node& x = nodes_[static_cast<size_t>(id)];
    switch (x.kind) {
      case node_kind::empty: {
        const uint32_t s = b_.add_state();
        return fragment{s, s};
      }
      case node_kind::set: {
        const fragment f{b_.add_state(), b_.add_state()};
        b_.add_code_points(f.in, f.out, x.set);
        return f;
      }
      case node_kind::bol:
      case node_kind::eol: {
        const fragment f{b_.add_state(), b_.add_state()};
        b_.add(f.in, f.out, x.kind == node_kind::bol ? edge_kind::bol : edge_kind::eol);
        return f;
      }
      case node_kind::concat: {
        fragment f{};
        for (size_t k = 0; k < x.kids.size(); ++k) {
          auto g = build(x.kids[k]);
          if (!g) {
            return g;
          }
          if (k == 0) {
            f = *g;
          } else {
            b_.add(f.out, g->in, edge_kind::eps);
            f.out = g->out;
          }
        }
        return f;
      }
      case node_kind::alt: {
        const fragment f{b_.add_state(), b_.add_state()};
        for (int32_t kid : x.kids) {
          auto g = build(kid);
          if (!g) {
            return g;
          }
          b_.add(f.in, g->in, edge_kind::eps);
          b_.add(g->out, f.out, edge_kind::eps);
        }
        return f;
      }
      case node_kind::repeat:
        return build_repeat(x);
    }
    return fragment{};
  }

  result<void> check_size() const {
    if (b_.component_size() > k_max_nfa_states) {
      return make_error("regex \"%s\": pattern too large (more than %zu automaton states)",
                        quoted().c_str(), k_max_nfa_states);
    }
    return {};
  }

 private:
  std::string quoted() const {
    return src_.size() <= 200 ? std::string(src_) : std::string(src_.substr(0, 200)) + "...";
  }

  // x{min,max} as min copies, then either x* or (max - min) nested optional copies
  // x(x(x)?)? so that skipping one skips the rest.
  result<fragment> build_repeat(const node& x) {
    const uint64_t copies =
        x.max == k_inf ? uint64_t{x.min} + 1 : std::max<uint64_t>(x.max, 1);
    const size_t before = b_.component_size();
    const uint32_t in = b_.add_state();
    uint32_t tail = in;
    bool checked = false;
    const auto one = [&]() -> result<fragment> {
      auto g = build(x.kids[0]);
      if (g && !checked) {
        checked = true;
        const uint64_t per_copy = b_.component_size() - before;
        if (before + per_copy * copies > k_max_nfa_states) {
          return make_error(
              "regex \"%s\": quantifier %s at offset %zu repeats its operand into more than "
              "%zu automaton states",
              quoted().c_str(), std::string(src_.substr(x.offset, x.length)).c_str(), x.offset,
              k_max_nfa_states);
        }
      }
      return g;
    };
    for (uint32_t k = 0; k < x.min; ++k) {
      auto g = one();
      if (!g) {
        return g;
      }
      b_.add(tail, g->in, edge_kind::eps);
      tail = g->out;
    }
    if (x.max == k_inf) {
      auto g = one();
      if (!g) {
        return g;
      }
      const uint32_t loop = b_.add_state();
      b_.add(tail, loop, edge_kind::eps);
      b_.add(loop, g->in, edge_kind::eps);
      b_.add(g->out, loop, edge_kind::eps);
      return fragment{in, loop};
    }
    const uint32_t out = b_.add_state();
    for (uint32_t k = x.min; k < x.max; ++k) {
      auto g = one();
      if (!g) {
        return g;
      }
      b_.add(tail, out, edge_kind::eps);
      b_.add(tail, g->in, edge_kind::eps);
      tail = g->out;
    }
    b_.add(tail, out, edge_kind::eps);
    return fragment{in, out};
  }

  // -- member variables -------------------------------------------------------
  nfa_builder& b_;
  const std::vector<node>& nodes_;
  std::string_view src_;
};

struct vector_hash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ v.size();
    for (uint32_t x : v) {
      h = (h ^ x) * 0x100000001b3ull;
      h ^= h >> 29;
    }
    return static_cast<size_t>(h);
  }
};

struct distance_key {
  int32_t state = 0;
  uint64_t need = 0;
  bool operator==(const distance_key&) const = default;
};

struct distance_key_hash {
  size_t operator()(const distance_key& k) const {
    uint64_t h = (k.need ^ static_cast<uint32_t>(k.state)) * 0x9e3779b97f4a7c15ull;
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(k.state)) << 32;
    h *= 0xff51afd7ed558ccdull;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

}  // namespace

// -- the compiled set -------------------------------------------------------------

struct regex_set::impl {
  // The trimmed NFA in compressed rows: eps[eps_first[q] .. eps_first[q + 1]) are q's
  // epsilon targets, likewise bytes its byte edges; edges into states that cannot reach
  // acceptance are gone.
  std::vector<uint32_t> eps_first;    // [n_nfa + 1]
  std::vector<uint32_t> eps;          // [n_eps_edges]
  std::vector<uint32_t> byte_first;   // [n_nfa + 1]
  std::vector<edge> bytes;            // [n_byte_edges]
  std::vector<uint8_t> comp;          // [n_nfa]: the component a state belongs to
  std::vector<uint8_t> end_ok;        // [n_nfa]: final reachable by eps and `$` edges
  std::vector<uint8_t> keep;          // [n_nfa]: recorded in sets (see file comment)
  std::vector<uint8_t> is_sink;       // [n_nfa]: a search component's match-everything end
  std::vector<uint32_t> dist;         // [n_nfa]: fewest bytes to acceptance, or k_far
  uint64_t start_accept = 0;          // components that accept the empty string

  // Bytes no NFA edge tells apart form one interval; a transition computed for one
  // byte fills its whole interval.
  std::array<uint8_t, 256> class_lo{};
  std::array<uint8_t, 256> class_hi{};
  std::vector<uint8_t> class_reps;

  std::vector<std::vector<uint32_t>> keys;  // [n_dfa]: sorted NFA states
  std::unordered_map<std::vector<uint32_t>, int32_t, vector_hash> ids;  // all but start
  std::unordered_map<distance_key, int32_t, distance_key_hash> distances;  // A*'s answers

  // scratch for the closure
  std::vector<uint32_t> seen;   // [n_nfa]: stamp of the last closure that reached it
  uint32_t stamp = 0;
  std::vector<uint32_t> stack;

  /// The closure of `seeds` by eps edges, sorted, keeping only `keep` states; a search
  /// component that reached its sink keeps the sink alone (it matches whatever follows).
  std::vector<uint32_t> close(std::vector<uint32_t> seeds) {
    ++stamp;
    std::vector<uint32_t> set;
    uint64_t sunk = 0;
    stack = std::move(seeds);
    for (uint32_t q : stack) {
      seen[q] = stamp;
    }
    while (!stack.empty()) {
      const uint32_t q = stack.back();
      stack.pop_back();
      if (keep[q]) {
        set.push_back(q);
        if (is_sink[q]) {
          sunk |= uint64_t{1} << comp[q];
        }
      }
      for (uint32_t k = eps_first[q]; k < eps_first[q + 1]; ++k) {
        const uint32_t t = eps[k];
        if (seen[t] != stamp) {
          seen[t] = stamp;
          stack.push_back(t);
        }
      }
    }
    if (sunk != 0) {
      std::erase_if(set, [&](uint32_t q) { return (sunk >> comp[q] & 1) != 0 && !is_sink[q]; });
    }
    std::sort(set.begin(), set.end());
    return set;
  }

  std::vector<uint32_t> step(const std::vector<uint32_t>& from, uint8_t byte) {
    std::vector<uint32_t> seeds;
    for (uint32_t q : from) {
      for (uint32_t k = byte_first[q]; k < byte_first[q + 1]; ++k) {
        const edge& e = bytes[k];
        if (e.lo <= byte && byte <= e.hi) {
          seeds.push_back(e.target);
        }
      }
    }
    std::sort(seeds.begin(), seeds.end());
    seeds.erase(std::unique(seeds.begin(), seeds.end()), seeds.end());
    return close(std::move(seeds));
  }

  /// Per component, the fewest bytes from DFA state `s` to its acceptance, k_far when
  /// none: exact, as a set's continuations are the union of its NFA states'.
  std::array<uint32_t, 64> distances_of(regex_state s) const {
    std::array<uint32_t, 64> d;
    d.fill(k_far);
    for (uint32_t q : keys[static_cast<size_t>(s)]) {
      d[comp[q]] = std::min(d[comp[q]], dist[q]);
    }
    for (size_t c = 0; s == 0 && c < 64; ++c) {
      if ((start_accept >> c & 1) != 0) {
        d[c] = 0;
      }
    }
    return d;
  }
};

namespace {

/// Edges grouped by source (or by target): edges[first[q] .. first[q + 1]).
struct graph {
  std::vector<uint32_t> first;  // [n_states + 1]
  std::vector<edge> edges;      // [n_edges]
};

graph grouped(const std::vector<edge>& edges, size_t n, bool by_target) {
  graph g;
  g.first.assign(n + 1, 0);
  for (const edge& e : edges) {
    ++g.first[(by_target ? e.target : e.from) + 1];
  }
  for (size_t q = 0; q < n; ++q) {
    g.first[q + 1] += g.first[q];
  }
  g.edges.resize(edges.size());
  std::vector<uint32_t> fill(g.first.begin(), g.first.end() - 1);
  for (const edge& e : edges) {
    g.edges[fill[by_target ? e.target : e.from]++] = e;
  }
  return g;
}

/// Marks every state that reaches a marked one by edges `follow` accepts; `in` is
/// grouped by target.
template <class F>
void mark_backwards(const graph& in, std::vector<uint8_t>& marked, F follow) {
  std::vector<uint32_t> stack;
  for (size_t q = 0; q < marked.size(); ++q) {
    if (marked[q]) {
      stack.push_back(static_cast<uint32_t>(q));
    }
  }
  while (!stack.empty()) {
    const uint32_t q = stack.back();
    stack.pop_back();
    for (uint32_t k = in.first[q]; k < in.first[q + 1]; ++k) {
      const edge& e = in.edges[k];
      if (follow(e) && !marked[e.from]) {
        marked[e.from] = 1;
        stack.push_back(e.from);
      }
    }
  }
}

/// The states reachable from `seeds` (seeds included) by edges `follow` accepts; `out`
/// is grouped by source. `seen` ([n_states], all zero) is left all zero.
template <class F>
std::vector<uint32_t> reachable(const graph& out, std::vector<uint32_t> seeds,
                                std::vector<uint8_t>& seen, F follow) {
  std::vector<uint32_t> found;
  for (uint32_t q : seeds) {
    seen[q] = 1;
  }
  while (!seeds.empty()) {
    const uint32_t q = seeds.back();
    seeds.pop_back();
    found.push_back(q);
    for (uint32_t k = out.first[q]; k < out.first[q + 1]; ++k) {
      const edge& e = out.edges[k];
      if (follow(e) && !seen[e.target]) {
        seen[e.target] = 1;
        seeds.push_back(e.target);
      }
    }
  }
  for (uint32_t q : found) {
    seen[q] = 0;
  }
  return found;
}

/// Where a component's states begin and end in the shared NFA.
struct component_ends {
  uint32_t start = 0;
  uint32_t final = 0;
  uint32_t sink = UINT32_MAX;  // a search component's final, which loops on any code point
};

result<component_ends> build_component(nfa_builder& b, const regex_component& rc) {
  component_ends ends;
  if (rc.kind == regex_kind::literal) {
    ends.start = ends.final = b.add_state();
    for (char ch : rc.source) {
      const uint32_t t = b.add_state();
      const auto byte = static_cast<uint8_t>(ch);
      b.add(ends.final, t, edge_kind::byte, byte, byte);
      ends.final = t;
    }
    return ends;
  }
  parser p(rc.source);
  auto root = p.parse();
  if (!root) {
    return root.err();
  }
  fragment_builder fb(b, p.nodes(), rc.source);
  auto f = fb.build(*root);
  if (!f) {
    return f.err();
  }
  if (auto ok = fb.check_size(); !ok) {
    return ok.err();
  }
  ends.start = f->in;
  ends.final = f->out;
  if (rc.kind == regex_kind::search) {  // [\s\S]*(?:P)[\s\S]* with P's anchors kept
    ends.start = b.add_state();
    b.add_code_points(ends.start, ends.start, any_set());
    b.add(ends.start, f->in, edge_kind::eps);
    ends.final = ends.sink = b.add_state();
    b.add(f->out, ends.sink, edge_kind::eps);
    b.add_code_points(ends.sink, ends.sink, any_set());
  }
  return ends;
}

/// What each NFA state can still reach. `^` edges count only in the start closure
/// and `$` edges only at the end of input, so each kind of path is its own pass.
struct reach {
  std::vector<uint8_t> end_ok;  // [n]: a final state by eps and `$` edges
  std::vector<uint8_t> live;    // [n]: an end_ok state by eps and byte edges
  std::vector<uint8_t> useful;  // [n]: a live state by eps, byte and `^` edges
  std::vector<uint32_t> dist;   // [n]: fewest bytes to an end_ok state, or k_far
};

reach analyse(const std::vector<edge>& edges, size_t n, const std::vector<uint32_t>& finals) {
  const graph rev = grouped(edges, n, true);
  reach r;
  r.end_ok.assign(n, 0);
  for (uint32_t f : finals) {
    r.end_ok[f] = 1;
  }
  mark_backwards(rev, r.end_ok, [](const edge& e) {
    return e.kind == edge_kind::eps || e.kind == edge_kind::eol;
  });
  r.live = r.end_ok;
  mark_backwards(rev, r.live, [](const edge& e) {
    return e.kind == edge_kind::eps || e.kind == edge_kind::byte;
  });
  r.useful = r.live;
  mark_backwards(rev, r.useful, [](const edge& e) { return e.kind != edge_kind::eol; });

  // breadth-first backwards from the end_ok states; eps edges cost nothing (0-1 BFS)
  r.dist.assign(n, k_far);
  std::deque<uint32_t> queue;
  for (size_t q = 0; q < n; ++q) {
    if (r.end_ok[q]) {
      r.dist[q] = 0;
      queue.push_back(static_cast<uint32_t>(q));
    }
  }
  while (!queue.empty()) {
    const uint32_t q = queue.front();
    queue.pop_front();
    for (uint32_t k = rev.first[q]; k < rev.first[q + 1]; ++k) {
      const edge& e = rev.edges[k];
      if (e.kind != edge_kind::eps && e.kind != edge_kind::byte) {
        continue;
      }
      const uint32_t d = r.dist[q] + (e.kind == edge_kind::byte ? 1 : 0);
      if (d < r.dist[e.from]) {
        r.dist[e.from] = d;
        if (e.kind == edge_kind::eps) {
          queue.push_front(e.from);
        } else {
          queue.push_back(e.from);
        }
      }
    }
  }
  return r;
}

/// A* over the lazy DFA from `s` to the nearest state where h is 0; h ([state] ->
/// bytes) must never overestimate and drop by at most 1 a byte, k_far when hopeless.
/// -1 past k_max_distance_states states.
template <class H>
int32_t astar(regex_set& set, const std::vector<uint8_t>& reps, regex_state s, H h) {
  struct entry {
    uint32_t f = 0;
    uint32_t g = 0;
    regex_state q = 0;
    bool operator>(const entry& o) const { return f > o.f; }
  };
  std::priority_queue<entry, std::vector<entry>, std::greater<>> open;
  std::unordered_map<regex_state, uint32_t> best{{s, 0}};
  if (const uint32_t h0 = h(s); h0 != k_far) {
    open.push({h0, 0, s});
  }
  while (!open.empty()) {
    const entry e = open.top();
    open.pop();
    if (e.g != best[e.q]) {
      continue;  // reached again more cheaply since
    }
    if (e.f == e.g) {
      return static_cast<int32_t>(e.g);
    }
    for (uint8_t b : reps) {
      const regex_state t = set.next(e.q, b);
      if (t == k_dead) {
        continue;
      }
      auto [it, fresh] = best.try_emplace(t, e.g + 1);
      if (!fresh && it->second <= e.g + 1) {
        continue;
      }
      it->second = e.g + 1;
      if (best.size() > k_max_distance_states) {
        return -1;
      }
      if (const uint32_t ht = h(t); ht != k_far) {
        open.push({e.g + 1 + ht, e.g + 1, t});
      }
    }
  }
  return -1;
}

}  // namespace

regex_set::regex_set() : impl_(std::make_unique<impl>()) {}
regex_set::~regex_set() = default;

result<std::shared_ptr<regex_set>> regex_set::compile(std::vector<regex_component> components) {
  if (components.size() > k_max_components) {
    return make_error("regex_set: %zu components, at most %zu", components.size(),
                      k_max_components);
  }
  nfa_builder b;
  std::vector<uint32_t> starts;
  std::vector<uint32_t> finals;
  std::vector<uint32_t> sinks;  // per component; UINT32_MAX unless search
  for (size_t c = 0; c < components.size(); ++c) {
    b.begin_component(static_cast<uint8_t>(c));
    auto ends = build_component(b, components[c]);
    if (!ends) {
      return ends.err();
    }
    starts.push_back(ends->start);
    finals.push_back(ends->final);
    sinks.push_back(ends->sink);
  }

  std::shared_ptr<regex_set> set(new regex_set());
  impl& m = *set->impl_;
  const size_t n = b.comp.size();
  set->n_components_ = components.size();
  set->all_ = components.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << components.size()) - 1;
  const graph fwd = grouped(b.edges, n, false);
  std::vector<uint8_t> seen(n, 0);

  // At position 0 of an empty string both anchors hold: decide that before trimming,
  // which treats `^` as usable only before the first byte.
  uint64_t start_accept = 0;
  for (size_t c = 0; c < components.size(); ++c) {
    const auto r = reachable(fwd, {starts[c]}, seen,
                             [](const edge& e) { return e.kind != edge_kind::byte; });
    if (std::find(r.begin(), r.end(), finals[c]) != r.end()) {
      start_accept |= uint64_t{1} << c;
    }
  }

  reach r = analyse(b.edges, n, finals);
  const std::vector<uint8_t>& live = r.live;
  const std::vector<uint8_t>& useful = r.useful;
  m.end_ok = std::move(r.end_ok);
  m.dist = std::move(r.dist);
  m.comp = std::move(b.comp);
  m.keep.assign(n, 0);
  m.is_sink.assign(n, 0);
  for (uint32_t s : sinks) {
    if (s != UINT32_MAX) {
      m.is_sink[s] = 1;
    }
  }
  m.eps_first.assign(n + 1, 0);
  m.byte_first.assign(n + 1, 0);
  std::array<uint8_t, 257> boundary{};
  for (size_t q = 0; q < n; ++q) {
    bool has_bytes = false;
    for (uint32_t k = fwd.first[q]; k < fwd.first[q + 1]; ++k) {
      const edge& e = fwd.edges[k];
      if (!useful[e.target]) {
        continue;
      }
      if (e.kind == edge_kind::eps) {
        m.eps.push_back(e.target);
      } else if (e.kind == edge_kind::byte && live[e.target]) {
        m.bytes.push_back(e);
        boundary[e.lo] = 1;
        boundary[e.hi + 1] = 1;
        has_bytes = true;
      }
    }
    m.eps_first[q + 1] = static_cast<uint32_t>(m.eps.size());
    m.byte_first[q + 1] = static_cast<uint32_t>(m.bytes.size());
    m.keep[q] = live[q] && (has_bytes || m.end_ok[q]);
  }
  for (int lo = 0; lo < 256;) {
    int hi = lo;
    while (hi + 1 < 256 && !boundary[hi + 1]) {
      ++hi;
    }
    for (int x = lo; x <= hi; ++x) {
      m.class_lo[static_cast<size_t>(x)] = static_cast<uint8_t>(lo);
      m.class_hi[static_cast<size_t>(x)] = static_cast<uint8_t>(hi);
    }
    m.class_reps.push_back(static_cast<uint8_t>(lo));
    lo = hi + 1;
  }

  // The start closure also crosses `^` edges: seed it with every state so reachable.
  std::vector<uint32_t> seeds = reachable(fwd, starts, seen, [&](const edge& e) {
    return (e.kind == edge_kind::eps || e.kind == edge_kind::bol) && useful[e.target];
  });
  m.seen.assign(n, 0);
  set->add_state(m.close(std::move(seeds)));
  m.start_accept = start_accept;
  set->info_[0].accept = start_accept;
  set->info_[0].alive |= start_accept;
  return set;
}

regex_state regex_set::add_state(std::vector<uint32_t> key) {
  impl& m = *impl_;
  state_info info;
  for (uint32_t q : key) {
    const uint64_t bit = uint64_t{1} << m.comp[q];
    info.alive |= bit;
    if (m.end_ok[q]) {
      info.accept |= bit;
    }
  }
  const auto id = static_cast<regex_state>(info_.size());
  info_.push_back(info);
  if (trans_.capacity() == 0) {
    trans_.reserve(64 * 256);
  }
  trans_.resize(trans_.size() + 256, k_unknown);
  if (id != 0) {
    m.ids.emplace(key, id);
  }
  m.keys.push_back(std::move(key));
  return id;
}

regex_state regex_set::compute(regex_state s, uint8_t byte) {
  impl& m = *impl_;
  std::vector<uint32_t> key = m.step(m.keys[static_cast<size_t>(s)], byte);
  regex_state t = k_dead;
  if (!key.empty()) {
    if (auto it = m.ids.find(key); it != m.ids.end()) {
      t = it->second;
    } else if (info_.size() >= k_max_dfa_states) {
      overflowed_ = true;
    } else {
      t = add_state(std::move(key));
    }
  }
  int32_t* row = &trans_[static_cast<size_t>(s) * 256];
  for (int x = m.class_lo[byte]; x <= m.class_hi[byte]; ++x) {
    row[x] = t;
  }
  return t;
}

int32_t regex_set::distance_to_accept(regex_state s, uint64_t need) {
  if (s == k_dead || (need & ~all_) != 0) {
    return -1;
  }
  // The farthest component: exact for one, a lower bound for several together.
  const auto farthest = [&](regex_state q) {
    const std::array<uint32_t, 64> d = impl_->distances_of(q);
    uint32_t worst = 0;
    for (size_t c = 0; c < n_components_; ++c) {
      if ((need >> c & 1) != 0) {
        worst = std::max(worst, d[c]);
      }
    }
    return worst;
  };
  if (std::popcount(need) <= 1) {
    const uint32_t d = farthest(s);
    return d == k_far ? -1 : static_cast<int32_t>(d);
  }
  const distance_key key{s, need};
  if (auto it = impl_->distances.find(key); it != impl_->distances.end()) {
    return it->second;
  }
  const int32_t d = astar(*this, impl_->class_reps, s, farthest);
  impl_->distances.emplace(key, d);
  return d;
}

int32_t regex_set::distance_to_any(regex_state s, uint64_t any) {
  if (s == k_dead) {
    return -1;
  }
  const std::array<uint32_t, 64> d = impl_->distances_of(s);
  uint32_t nearest = k_far;
  for (size_t c = 0; c < n_components_; ++c) {
    if ((any >> c & 1) != 0) {
      nearest = std::min(nearest, d[c]);
    }
  }
  return nearest == k_far ? -1 : static_cast<int32_t>(nearest);
}

std::string regex_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}/").find(c) != std::string_view::npos) {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace baton::grammar
