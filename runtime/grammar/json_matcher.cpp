// The JSON matcher's transitions. Frames (json_matcher.hpp) by kind:
//   value   node: a value of `node` is due (leading whitespace allowed)
//   object  phase, a = properties so far, b = the value node of the current key,
//           e/f = properties seen (bits 0..127 of object_rule::properties)
//   key     a = code points, b = propertyNames regex state, c = name trie node (-1: no
//           declared name), d = patternProperties regex state, u = \u digits, f = high
//           surrogate
//   array   phase, a = items so far
//   string  a = code points, b = regex state (-1: none), u = \u digits, f = high surrogate
//   number  phase, flags (negative, negative exponent), a = integer digits, b = fraction
//           digits in e, c = exponent digits, d = exponent, e = significant digits, f =
//           residue modulo multipleOf, u = digits held in e, pad = integer digits beyond e,
//           ws = fraction digits typed
//   literal a = bytes matched, b = which (true, false, null)
// A frame whose construct completes is popped and its parent told; a number ends at the
// first byte that cannot continue it, and that byte goes on to the parent.
#include "runtime/grammar/json_matcher.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <limits>
#include <type_traits>

namespace baton::grammar {

namespace {

enum frame_kind : uint8_t { fk_value, fk_object, fk_array, fk_key, fk_string, fk_number, fk_literal };
enum object_phase : uint8_t { o_start, o_key, o_key_done, o_colon, o_value, o_after_value, o_after_comma };
enum array_phase : uint8_t { a_start, a_value, a_after_value, a_after_comma };
enum number_phase : uint8_t { n_begin, n_sign, n_zero, n_int, n_dot, n_frac, n_e, n_esign, n_exp };

constexpr int64_t k_far = json_matcher::k_infinite;
constexpr uint8_t k_negative = 1, k_exp_negative = 2;
constexpr const char* k_literals[3] = {"true", "false", "null"};
constexpr int32_t k_literal_len[3] = {4, 5, 4};
constexpr int32_t k_max_exp_digits = 3;

const schema_node& any_node() {
  static const schema_node n;
  return n;
}

bool is_ws(uint8_t b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }

double pow10(int64_t k) {
  static const double exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  return k >= 0 && k <= 22 ? exact[k] : std::pow(10.0, static_cast<double>(k));
}

/// Whether some t in the interval from x to y (open ends as flagged) meets the rule's
/// bounds.
bool meets(double x, bool x_open, double y, bool y_open, const number_rule& r) {
  double lo = x, hi = y;
  bool lo_open = x_open, hi_open = y_open;
  if (r.has_min && (r.min > lo || (r.min == lo && r.min_exclusive))) {
    lo = r.min;
    lo_open = r.min_exclusive;
  }
  if (r.has_max && (r.max < hi || (r.max == hi && r.max_exclusive))) {
    hi = r.max;
    hi_open = r.max_exclusive;
  }
  return lo < hi || (lo == hi && !lo_open && !hi_open);
}

/// Whether some integer in [x, y] meets the bounds.
bool meets_integer(double x, double y, const number_rule& r) {
  double lo = x, hi = y;
  if (r.has_min) {
    double m = std::ceil(r.min);
    if (r.min_exclusive && m == r.min) {
      m += 1;
    }
    lo = std::max(lo, m);
  }
  if (r.has_max) {
    double m = std::floor(r.max);
    if (r.max_exclusive && m == r.max) {
      m -= 1;
    }
    hi = std::min(hi, m);
  }
  return lo <= hi;
}

class thread_runner;

}  // namespace

// -- numbers ----------------------------------------------------------------------

namespace {

bool integer_only(const schema_node& n) { return !(n.types & jt_number); }
bool bounded(const schema_node& n) { return n.num.has_min || n.num.has_max; }

double number_value(const frame& f) {
  const int64_t scale = static_cast<int64_t>(f.pad) - f.b +
                        ((f.flags & k_exp_negative) ? -int64_t{f.d} : int64_t{f.d});
  double v = static_cast<double>(f.e);
  v = scale < 0 ? (-scale <= 22 ? v / pow10(-scale) : v * std::pow(10.0, static_cast<double>(scale)))
                : v * pow10(scale);
  return (f.flags & k_negative) ? -v : v;
}

bool number_terminal(const frame& f) {
  return f.phase == n_zero || f.phase == n_int || f.phase == n_frac || f.phase == n_exp;
}

/// A whole number that meets the node's rule.
bool number_valid(const schema_node& n, const frame& f) {
  if (!number_terminal(f)) {
    return false;
  }
  if (n.num.multiple_of > 0 && f.f != 0) {
    return false;
  }
  if (!bounded(n)) {
    return true;
  }
  const double v = number_value(f);
  return meets(v, false, v, false, n.num);
}

/// Whether the digits so far can still become a number that meets the bounds.
bool number_feasible(const schema_node& n, const frame& f, int32_t max_int_digits) {
  if (!bounded(n)) {
    return true;
  }
  const bool neg = f.flags & k_negative;
  const auto& r = n.num;
  // the reachable values x..y (magnitudes), mirrored when negative
  auto check = [&](double x, bool x_open, double y, bool y_open) {
    return neg ? meets(-y, y_open, -x, x_open, r) : meets(x, x_open, y, y_open, r);
  };
  auto check_int = [&](double x, double y) { return neg ? meets_integer(-y, -x, r) : meets_integer(x, y, r); };
  const bool integer = integer_only(n);
  switch (f.phase) {
    case n_begin:
      return true;
    case n_sign:
      return integer ? check_int(0, std::numeric_limits<double>::infinity())
                     : check(0, false, std::numeric_limits<double>::infinity(), true);
    case n_zero:
      return integer ? check_int(0, 0) : check(0, false, 1, true);
    case n_int: {
      const double p = std::fabs(number_value(f));
      for (int32_t k = 0; k + f.a <= max_int_digits; ++k) {
        const double s = pow10(k);
        const bool ok = integer ? check_int(p * s, p * s + s - 1) : check(p * s, false, (p + 1) * s, true);
        if (ok) {
          return true;
        }
        if (!neg && r.has_max && p * s > r.max) {
          return false;
        }
        if (neg && r.has_min && -p * s < r.min) {
          return false;
        }
      }
      return false;
    }
    case n_dot:
    case n_frac: {
      const double v = std::fabs(number_value(f));
      return check(v, false, v + 1.0 / pow10(f.b), true);
    }
    default:
      return true;  // exponents: only unbounded numbers have them
  }
}

/// Feeds one byte to a number frame: 1 taken, 0 not part of the number, -1 refused.
int number_byte(frame& f, const schema_node& n, uint8_t byte, const schema_options& o) {
  const bool integer = integer_only(n);
  const bool exp_ok = !integer && !bounded(n);
  auto digit = [&](bool integer_part) {
    const uint32_t dv = byte - '0';
    if (f.u < 19) {
      if (f.e != 0 || dv != 0) {
        f.e = f.e * 10 + dv;
        ++f.u;
      }
    } else if (integer_part) {
      ++f.pad;
    }
    if (integer_part && n.num.multiple_of > 0) {
      f.f = (f.f * 10 + dv) % static_cast<uint64_t>(n.num.multiple_of);
    }
  };
  switch (f.phase) {
    case n_begin:
      if (byte == '-') {
        f.flags |= k_negative;
        f.phase = n_sign;
        break;
      }
      [[fallthrough]];
    case n_sign:
      if (byte == '0') {
        f.phase = n_zero;
        f.a = 1;
      } else if (byte >= '1' && byte <= '9') {
        f.phase = n_int;
        f.a = 1;
        digit(true);
      } else {
        return f.phase == n_begin ? 0 : 0;
      }
      break;
    case n_zero:
    case n_int:
      if (is_digit(byte) && f.phase == n_int) {
        if (f.a >= o.max_int_digits) {
          return -1;
        }
        ++f.a;
        digit(true);
      } else if (byte == '.' && !integer) {
        f.phase = n_dot;
      } else if ((byte == 'e' || byte == 'E') && exp_ok) {
        f.phase = n_e;
      } else {
        return 0;
      }
      break;
    case n_dot:
    case n_frac:
      if (is_digit(byte)) {
        if (f.ws >= o.max_frac_digits) {
          return -1;
        }
        ++f.ws;
        if (f.u < 19) {  // beyond 19 significant digits the value no longer changes
          ++f.b;
          digit(false);
        }
        f.phase = n_frac;
      } else if ((byte == 'e' || byte == 'E') && exp_ok && f.phase == n_frac) {
        f.phase = n_e;
      } else {
        return 0;
      }
      break;
    case n_e:
      if (byte == '+' || byte == '-') {
        if (byte == '-') {
          f.flags |= k_exp_negative;
        }
        f.phase = n_esign;
        break;
      }
      [[fallthrough]];
    case n_esign:
    case n_exp:
      if (!is_digit(byte)) {
        return 0;
      }
      if (f.c >= k_max_exp_digits) {
        return -1;
      }
      ++f.c;
      f.d = f.d * 10 + (byte - '0');
      f.phase = n_exp;
      break;
    default:
      return -1;
  }
  return number_feasible(n, f, o.max_int_digits) ? 1 : -1;
}

/// Fewest bytes that make the number whole and valid (k_far when none is found).
int64_t number_close(const frame& f, const schema_node& n, const schema_options& o) {
  if (number_valid(n, f)) {
    return 0;
  }
  static const char* const suffixes[] = {
      "0",     "1",      "5",      "9",       "00",      "10",      "50",      "99",
      "000",   "100",    "500",    "999",     "0000",    "1000",    "9999",    "00000",
      "10000", "99999",  "000000", "100000",  "999999",  ".0",      ".5",      ".1",
      "0.0",   "0.5",    ".00",    ".01",     ".99",     ".001",    ".999",    "0.01",
      "0000000", "1000000", "9999999", "00000000", "10000000", "99999999"};
  int64_t best = k_far;
  for (const char* s : suffixes) {
    frame g = f;
    int64_t len = 0;
    bool ok = true;
    for (const char* p = s; *p; ++p, ++len) {
      if (number_byte(g, n, static_cast<uint8_t>(*p), o) != 1) {
        ok = false;
        break;
      }
    }
    if (ok && number_valid(n, g)) {
      best = std::min(best, len);
    }
  }
  return best;
}

}  // namespace

// -- escapes ---------------------------------------------------------------------------

namespace {

/// What may follow a backslash in escape completions: the short escapes and \u of every
/// ASCII code point; and, after a high surrogate, its low half \udc00. Each also with
/// the backslash before it, for a low half whose backslash is still due.
struct escape_bodies {
  std::vector<std::string> any, low, any_backslash, low_backslash;

  escape_bodies() {
    for (const char* e : {"\"", "\\", "/", "b", "f", "n", "r", "t"}) {
      any.emplace_back(e);
    }
    for (int cp = 0; cp < 0x7f; ++cp) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "u%04x", cp);
      any.emplace_back(buf);
    }
    low.emplace_back("udc00");
    for (const auto& b : any) {
      any_backslash.push_back("\\" + b);
    }
    low_backslash.push_back("\\udc00");
  }
};

uint32_t hex_prefix(std::string_view digits) {
  uint32_t v = 0;
  for (char c : digits) {
    v = v * 16 + static_cast<uint32_t>(c >= 'a' ? c - 'a' + 10 : c - '0');
  }
  return v;
}

}  // namespace

/// Calls `try_one` on each way to finish the escape sequence begun in `f` (the bytes
/// still due) until it returns true; whether one did. The ways: the short escapes, \u of
/// every ASCII code point, and the low half of a surrogate pair taken (\udc00). A subset
/// of what JSON allows, enough to tell whether an escape can still end in a byte the
/// string takes, and what it costs at least.
template <class F>
bool any_escape_completion(const frame& f, F&& try_one) {
  static const escape_bodies tables;
  const auto& bodies = f.f != 0 ? tables.low : tables.any;  // what follows the backslash
  const auto each = [&](const std::vector<std::string>& v) {
    for (const auto& b : v) {
      if (try_one(std::string_view(b))) {
        return true;
      }
    }
    return false;
  };
  if (f.esc == 1 || f.esc == 7) {  // after the backslash (of a low half's: its u is due)
    return each(bodies);
  }
  if (f.esc == 6) {  // a high surrogate taken: its low half is due
    return each(f.f != 0 ? tables.low_backslash : tables.any_backslash);
  }
  if (f.esc >= 2 && f.esc < 6) {  // hex digits: those read so far must match
    const auto read = static_cast<size_t>(f.esc - 2);
    for (const auto& b : bodies) {
      if (b.size() != 5 || b[0] != 'u') {
        continue;
      }
      if ((read == 0 || hex_prefix(std::string_view(b).substr(1, read)) == f.u) &&
          try_one(std::string_view(b).substr(1 + read))) {
        return true;
      }
    }
  }
  return false;
}

// -- string and key content ----------------------------------------------------------

namespace {

const schema_node& node_of(const json_grammar& g, int32_t id) {
  return id >= 0 ? g.nodes[static_cast<size_t>(id)] : any_node();
}

/// Whether key frame `k` (of object frame `o`) can still become an allowed key.
bool key_alive(const json_grammar& g, const frame& o, const frame& k) {
  const auto& rule = node_of(g, o.node).obj;
  if (rule.key_rule >= 0) {
    const auto& kr = g.key_rules[static_cast<size_t>(rule.key_rule)];
    if ((kr.max_len >= 0 && k.a > kr.max_len) || (kr.regex >= 0 && k.b == k_dead)) {
      return false;
    }
  }
  if (rule.additional != k_no_value) {
    return true;
  }
  if (k.d != k_dead && rule.pattern_rx >= 0) {
    return true;
  }
  if (k.c >= 0) {
    const auto& below = g.name_tries[static_cast<size_t>(rule.names)].below[static_cast<size_t>(k.c)];
    return (below[0] & ~o.e) != 0 || (below[1] & ~o.f) != 0 || rule.properties.size() > 128;
  }
  return false;
}

/// One decoded byte of a string's or key's content into `f` (`parent`: a key's object):
/// counts code points, steps the regexes and the name trie; false when no string or
/// key `f` may become can follow.
bool content_byte(const json_grammar& g, frame& f, const frame* parent, uint8_t byte) {
  const bool lead = (byte & 0xC0) != 0x80;
  if (f.kind == fk_string) {
    const auto& s = node_of(g, f.node).str;
    if (lead && s.max_len >= 0 && f.a >= s.max_len) {
      return false;
    }
    if (f.b >= 0) {
      auto& rx = *g.regexes[static_cast<size_t>(s.regex)];
      f.b = rx.next(f.b, byte);
      if (f.b == k_dead || rx.alive_mask(f.b) != rx.all_mask()) {
        return false;
      }
    }
    if (lead) {
      ++f.a;
    }
    return true;
  }
  // a key
  const auto& rule = node_of(g, f.node).obj;
  if (lead) {
    ++f.a;
  }
  if (f.c >= 0) {
    f.c = g.name_tries[static_cast<size_t>(rule.names)].next(f.c, byte);
  }
  if (f.d != k_dead) {
    f.d = g.regexes[static_cast<size_t>(rule.pattern_rx)]->next(f.d, byte);
  }
  if (rule.key_rule >= 0 && f.b >= 0) {
    const auto& kr = g.key_rules[static_cast<size_t>(rule.key_rule)];
    f.b = g.regexes[static_cast<size_t>(kr.regex)]->next(f.b, byte);
  }
  return key_alive(g, *parent, f);
}

}  // namespace

// -- the runner: one thread, one byte ------------------------------------------------

namespace {

/// A thread's stack as a step writes it: the first `n_shared` frames are read in place
/// from another state, the frames above them are `own`. Writing a shared frame first
/// moves it, and the shared frames above it, into `own`; a step mostly writes the top
/// frame or two, so it copies those and not the stack.
struct cow_stack {
  const frame* shared;
  uint32_t n_shared;
  std::vector<frame>& own;

  size_t size() const { return n_shared + own.size(); }
  bool empty() const { return size() == 0; }
  const frame& operator[](size_t i) const { return i < n_shared ? shared[i] : own[i - n_shared]; }
  frame& edit(size_t i) {
    if (i < n_shared) {
      if (own.empty() && i + 1 == n_shared) {
        own.push_back(shared[i]);  // the top, as most steps write it
      } else {
        own.insert(own.begin(), shared + i, shared + n_shared);
      }
      n_shared = static_cast<uint32_t>(i);
    }
    return own[i - n_shared];
  }
  frame& back() { return edit(size() - 1); }
  void pop_back() {
    if (own.empty()) {
      --n_shared;
    } else {
      own.pop_back();
    }
  }
  void push_back(const frame& f) { own.push_back(f); }
};

/// Forks a step made: per fork, its shared frames (of the stack it forked from) and
/// one past its own frames in the forks' frames.
using fork_list = std::vector<std::pair<uint32_t, uint32_t>>;

/// Advances one thread (a stack) by one byte; forks of a value's start go to `forks`.
class thread_runner {
 public:
  thread_runner(const json_grammar& g, cow_stack& st, std::vector<frame>& forks,
                fork_list& fork_ends, std::vector<int32_t>& alts)
      : g_(g), st_(st), forks_(forks), fork_ends_(fork_ends), alts_(alts) {}

  /// False when the thread dies.
  bool run(uint8_t byte) {
    for (int guard = 0; guard < 64; ++guard) {
      if (st_.empty()) {
        return false;  // a whole document takes no more bytes
      }
      switch (top().kind) {
        case fk_value:
          return start_value(byte);
        case fk_object: {
          const int r = object_byte(byte);
          if (r != 2) {
            return r == 1;
          }
          break;  // a value was pushed: it takes the byte
        }
        case fk_array: {
          const int r = array_byte(byte);
          if (r != 2) {
            return r == 1;
          }
          break;
        }
        case fk_key:
        case fk_string:
          return string_byte(byte);
        case fk_literal:
          return literal_byte(byte);
        case fk_number: {
          frame& f = top();
          const int r = number_byte(f, node(f.node), byte, g_.options);
          if (r == 1) {
            return true;
          }
          if (r < 0 || !number_valid(node(f.node), f)) {
            return false;
          }
          pop_done();
          break;  // the byte goes on to the parent
        }
        default:
          return false;
      }
    }
    return false;
  }

 private:
  frame& top() { return st_.back(); }

  const schema_node& node(int32_t id) const {
    return id >= 0 ? g_.nodes[static_cast<size_t>(id)] : any_node();
  }

  /// Pops a completed construct and tells its parent.
  void pop_done() {
    st_.pop_back();
    if (st_.empty()) {
      return;
    }
    frame& p = top();
    p.ws = 0;
    if (p.kind == fk_object) {
      p.phase = o_after_value;
    } else if (p.kind == fk_array) {
      p.phase = a_after_value;
      ++p.a;
    }
  }

  bool whitespace(frame& f) {
    if (f.ws >= g_.options.max_whitespace) {
      return false;
    }
    ++f.ws;
    return true;
  }

  // -- values -------------------------------------------------------------------

  /// The basic nodes `id` stands for (unions flattened), into `out`.
  void flatten(int32_t id, std::vector<int32_t>& out, int depth) const {
    if (id == k_no_value || depth > 32) {
      return;
    }
    if (id >= 0 && !g_.nodes[static_cast<size_t>(id)].any_of.empty()) {
      for (int32_t a : g_.nodes[static_cast<size_t>(id)].any_of) {
        flatten(a, out, depth + 1);
      }
      return;
    }
    if (std::find(out.begin(), out.end(), id) == out.end()) {
      out.push_back(id);
    }
  }

  /// The frame a value of basic node `id` starts with `byte`, if it can.
  bool started(int32_t id, uint8_t byte, frame& out) const {
    const schema_node& n = node(id);
    out = frame{};
    out.node = id;
    switch (byte) {
      case '{':
        if (!(n.types & jt_object)) {
          return false;
        }
        out.kind = fk_object;
        out.phase = o_start;
        return true;
      case '[':
        if (!(n.types & jt_array)) {
          return false;
        }
        out.kind = fk_array;
        out.phase = a_start;
        return true;
      case '"':
        if (!(n.types & jt_string)) {
          return false;
        }
        out.kind = fk_string;
        out.b = n.str.regex >= 0 ? g_.regexes[static_cast<size_t>(n.str.regex)]->start() : -1;
        return n.str.max_len != 0 || n.str.min_len == 0;
      case 't':
      case 'f':
      case 'n': {
        const int which = byte == 't' ? 0 : byte == 'f' ? 1 : 2;
        const bool ok = which == 2 ? (n.types & jt_null) != 0
                                   : (n.types & jt_bool) && (which == 0 ? n.allow_true : n.allow_false);
        if (!ok) {
          return false;
        }
        out.kind = fk_literal;
        out.b = which;
        out.a = 1;
        return true;
      }
      default:
        if ((byte == '-' || is_digit(byte)) && (n.types & (jt_number | jt_integer))) {
          out.kind = fk_number;
          out.phase = n_begin;
          return number_byte(out, n, byte, g_.options) == 1;
        }
        return false;
    }
  }

  bool start_value(uint8_t byte) {
    frame& f = top();
    if (is_ws(byte)) {
      return whitespace(f);
    }
    alts_.clear();
    flatten(f.node, alts_, 0);
    bool kept = false;
    frame first;
    frame other;
    for (int32_t id : alts_) {
      if (!started(id, byte, kept ? other : first)) {
        continue;
      }
      if (kept) {
        // this stack with `other` for its top (written above: not shared)
        const size_t below = st_.size() - 1;
        for (size_t i = st_.n_shared; i < below; ++i) {
          forks_.push_back(st_[i]);
        }
        forks_.push_back(other);
        fork_ends_.emplace_back(st_.n_shared, static_cast<uint32_t>(forks_.size()));
      }
      kept = true;
    }
    if (!kept) {
      return false;
    }
    top() = first;
    if (first.kind == fk_literal && first.a == k_literal_len[first.b]) {
      pop_done();
    }
    return true;
  }

  // -- objects ------------------------------------------------------------------

  static bool seen(const frame& f, size_t k) {
    return k < 64 ? (f.e >> k & 1) : k < 128 ? (f.f >> (k - 64) & 1) : false;
  }

  bool can_add_key(const frame& f) const {
    const auto& o = node(f.node).obj;
    if (o.max_props >= 0 && f.a >= o.max_props) {
      return false;
    }
    if (o.additional != k_no_value || !o.patterns.empty()) {
      return true;
    }
    for (size_t k = 0; k < o.properties.size(); ++k) {
      if (!seen(f, k) && o.properties[k].node != k_no_value) {
        return true;
      }
    }
    return false;
  }

  bool can_close(const frame& f) const {
    const auto& o = node(f.node).obj;
    for (int32_t k = 0; k < o.n_required && k < 128; ++k) {
      if (!seen(f, static_cast<size_t>(k))) {
        return false;
      }
    }
    return f.a >= o.min_props;
  }

  /// 1 taken, 0 refused, 2 a value frame pushed that takes the byte.
  int object_byte(uint8_t byte) {
    frame& f = top();
    if (is_ws(byte) && f.phase != o_value && f.phase != o_key) {
      return whitespace(f) ? 1 : 0;
    }
    switch (f.phase) {
      case o_start:
      case o_after_comma:
        if (byte == '"' && (f.phase == o_after_comma || can_add_key(f))) {
          const auto& o = node(f.node).obj;
          frame k;
          k.kind = fk_key;
          k.node = f.node;
          k.c = o.names >= 0 ? 0 : -1;
          k.d = o.pattern_rx >= 0 ? g_.regexes[static_cast<size_t>(o.pattern_rx)]->start() : k_dead;
          k.b = o.key_rule >= 0 && g_.key_rules[static_cast<size_t>(o.key_rule)].regex >= 0
                    ? g_.regexes[static_cast<size_t>(g_.key_rules[static_cast<size_t>(o.key_rule)].regex)]->start()
                    : -1;
          f.phase = o_key;
          f.ws = 0;
          st_.push_back(k);
          return 1;
        }
        if (byte == '}' && f.phase == o_start && can_close(f)) {
          pop_done();
          return 1;
        }
        return 0;
      case o_key_done:
        if (byte == ':') {
          f.phase = o_colon;
          f.ws = 0;
          return 1;
        }
        return 0;
      case o_colon: {
        f.phase = o_value;
        frame v;
        v.kind = fk_value;
        v.node = f.b;
        st_.push_back(v);
        return 2;
      }
      case o_after_value:
        if (byte == ',' && can_add_key(f)) {
          f.phase = o_after_comma;
          f.ws = 0;
          return 1;
        }
        if (byte == '}' && can_close(f)) {
          pop_done();
          return 1;
        }
        return 0;
      default:
        return 0;
    }
  }

  /// The key frame on top closes: classify it and hand its value node to the object.
  bool close_key() {
    const frame k = top();
    frame& o = st_.edit(st_.size() - 2);
    const auto& rule = node(o.node).obj;
    if (rule.key_rule >= 0) {
      const auto& kr = g_.key_rules[static_cast<size_t>(rule.key_rule)];
      if (k.a < kr.min_len || (kr.max_len >= 0 && k.a > kr.max_len)) {
        return false;
      }
      if (kr.regex >= 0) {
        auto& rx = *g_.regexes[static_cast<size_t>(kr.regex)];
        if (k.b == k_dead || rx.accept_mask(k.b) != rx.all_mask()) {
          return false;
        }
      }
    }
    int32_t value_node = rule.additional;
    const int32_t prop = k.c >= 0 && rule.names >= 0
                             ? g_.name_tries[static_cast<size_t>(rule.names)].property[static_cast<size_t>(k.c)]
                             : -1;
    if (prop >= 0) {
      const auto p = static_cast<size_t>(prop);
      if (seen(o, p)) {
        return false;  // a duplicate key
      }
      value_node = rule.properties[p].node;
      if (p < 64) {
        o.e |= uint64_t{1} << p;
      } else if (p < 128) {
        o.f |= uint64_t{1} << (p - 64);
      }
    } else if (rule.pattern_rx >= 0) {
      const uint64_t m = k.d == k_dead ? 0 : g_.regexes[static_cast<size_t>(rule.pattern_rx)]->accept_mask(k.d);
      value_node = rule.pattern_combos[m];
    }
    if (value_node == k_no_value) {
      return false;
    }
    st_.pop_back();
    ++o.a;
    o.b = value_node;
    o.phase = o_key_done;
    o.ws = 0;
    return true;
  }

  // -- arrays -------------------------------------------------------------------

  int32_t item_node(const array_rule& a, int32_t i) const {
    return i < static_cast<int32_t>(a.prefix.size()) ? a.prefix[static_cast<size_t>(i)] : a.items;
  }

  bool can_add_item(const frame& f) const {
    const auto& a = node(f.node).arr;
    return (a.max_items < 0 || f.a < a.max_items) && item_node(a, f.a) != k_no_value;
  }

  int array_byte(uint8_t byte) {
    frame& f = top();
    if (is_ws(byte) && f.phase != a_value) {
      return whitespace(f) ? 1 : 0;
    }
    const auto& a = node(f.node).arr;
    switch (f.phase) {
      case a_start:
        if (byte == ']') {
          if (f.a < a.min_items) {
            return 0;
          }
          pop_done();
          return 1;
        }
        if (!can_add_item(f)) {
          return 0;
        }
        [[fallthrough]];
      case a_after_comma: {
        f.phase = a_value;
        frame v;
        v.kind = fk_value;
        v.node = item_node(a, f.a);
        st_.push_back(v);
        return 2;
      }
      case a_after_value:
        if (byte == ',' && can_add_item(f)) {
          f.phase = a_after_comma;
          f.ws = 0;
          return 1;
        }
        if (byte == ']' && f.a >= a.min_items) {
          pop_done();
          return 1;
        }
        return 0;
      default:
        return 0;
    }
  }

  // -- strings and keys ---------------------------------------------------------

  /// One decoded byte of a string's or key's content.
  bool content(frame& f, uint8_t byte) {
    return content_byte(g_, f, f.kind == fk_key ? &st_[st_.size() - 2] : nullptr, byte);
  }

  /// A code point decoded from a \u escape, as UTF-8 content.
  bool content_code_point(frame& f, uint32_t cp) {
    uint8_t buf[4];
    int n = 0;
    if (cp < 0x80) {
      buf[n++] = static_cast<uint8_t>(cp);
    } else if (cp < 0x800) {
      buf[n++] = static_cast<uint8_t>(0xC0 | (cp >> 6));
      buf[n++] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      buf[n++] = static_cast<uint8_t>(0xE0 | (cp >> 12));
      buf[n++] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      buf[n++] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    } else {
      buf[n++] = static_cast<uint8_t>(0xF0 | (cp >> 18));
      buf[n++] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
      buf[n++] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
      buf[n++] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    }
    for (int i = 0; i < n; ++i) {
      if (!content(f, buf[i])) {
        return false;
      }
    }
    return true;
  }

  static int hex_value(uint8_t b) {
    if (is_digit(b)) {
      return b - '0';
    }
    if (b >= 'a' && b <= 'f') {
      return b - 'a' + 10;
    }
    if (b >= 'A' && b <= 'F') {
      return b - 'A' + 10;
    }
    return -1;
  }

  // escape progress (frame::esc)
  static constexpr uint8_t e_none = 0, e_backslash = 1, e_hex = 2,  // 2..5: digits read + 2
      e_low_backslash = 6, e_low_u = 7;

  bool string_byte(uint8_t byte) {
    frame& f = top();
    if (f.esc == e_backslash) {
      f.esc = e_none;
      switch (byte) {
        case '"':
        case '\\':
        case '/':
          return content(f, byte);
        case 'b':
          return content(f, '\b');
        case 'f':
          return content(f, '\f');
        case 'n':
          return content(f, '\n');
        case 'r':
          return content(f, '\r');
        case 't':
          return content(f, '\t');
        case 'u':
          f.esc = e_hex;
          f.u = 0;
          return escape_feasible();
        default:
          return false;
      }
    }
    if (f.esc >= e_hex && f.esc < e_hex + 4) {
      const int h = hex_value(byte);
      if (h < 0) {
        return false;
      }
      f.u = f.u * 16 + static_cast<uint32_t>(h);
      if (++f.esc < e_hex + 4) {
        return escape_feasible();
      }
      f.esc = e_none;
      const uint32_t cp = f.u;
      if (f.f != 0) {  // the low half of a surrogate pair
        const auto hi = static_cast<uint32_t>(f.f);
        f.f = 0;
        if (cp < 0xDC00 || cp > 0xDFFF) {
          return false;
        }
        return content_code_point(f, 0x10000 + ((hi - 0xD800) << 10) + (cp - 0xDC00));
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        f.f = cp;
        f.esc = e_low_backslash;
        return escape_feasible();
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return false;  // a lone low surrogate
      }
      return content_code_point(f, cp);
    }
    if (f.esc == e_low_backslash) {
      f.esc = e_low_u;
      return byte == '\\';
    }
    if (f.esc == e_low_u) {
      f.esc = e_hex;
      f.u = 0;
      return byte == 'u';
    }
    if (f.utf8_left > 0) {
      static const uint8_t lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
      static const uint8_t hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
      if (byte < lo[f.utf8_class] || byte > hi[f.utf8_class]) {
        return false;
      }
      f.utf8_class = 0;
      --f.utf8_left;
      return content(f, byte);
    }
    if (byte == '"') {
      return f.kind == fk_key ? close_key() : close_string();
    }
    if (byte == '\\') {
      f.esc = e_backslash;
      return escape_feasible();
    }
    if (byte < 0x20) {
      return false;
    }
    if (byte >= 0x80) {
      if (byte >= 0xC2 && byte <= 0xDF) {
        f.utf8_left = 1;
      } else if (byte >= 0xE0 && byte <= 0xEF) {
        f.utf8_left = 2;
        f.utf8_class = byte == 0xE0 ? 1 : byte == 0xED ? 2 : 0;
      } else if (byte >= 0xF0 && byte <= 0xF4) {
        f.utf8_left = 3;
        f.utf8_class = byte == 0xF0 ? 3 : byte == 0xF4 ? 4 : 0;
      } else {
        return false;
      }
    }
    return content(f, byte);
  }

  /// Whether the escape begun in the top frame can still end in a byte the string or
  /// key takes: always for free content; else tried on any_escape_completion() (so a
  /// pattern or a key's names never leave a backslash with nothing to follow it).
  bool escape_feasible() {
    if (checking_) {
      return true;
    }
    const frame& f = top();
    if (f.kind == fk_string && f.b < 0) {
      return true;
    }
    if (f.kind == fk_key) {
      const auto& rule = node(st_[st_.size() - 2].node).obj;
      if (rule.additional != k_no_value && rule.key_rule < 0) {
        return true;
      }
    }
    std::vector<frame> own;
    std::vector<frame> forks;
    fork_list fork_ends;
    std::vector<int32_t> alts;
    return any_escape_completion(f, [&](std::string_view c) {
      own = st_.own;
      cow_stack copy{st_.shared, st_.n_shared, own};
      thread_runner r(g_, copy, forks, fork_ends, alts);
      r.checking_ = true;
      for (char ch : c) {
        if (!r.run(static_cast<uint8_t>(ch))) {
          return false;
        }
      }
      return true;
    });
  }

  bool close_string() {
    const frame& f = top();
    const auto& s = node(f.node).str;
    if (f.a < s.min_len) {
      return false;
    }
    if (f.b >= 0) {
      const auto& rx = *g_.regexes[static_cast<size_t>(s.regex)];
      if (rx.accept_mask(f.b) != rx.all_mask()) {
        return false;
      }
    }
    pop_done();
    return true;
  }

  bool literal_byte(uint8_t byte) {
    frame& f = top();
    if (byte != static_cast<uint8_t>(k_literals[f.b][f.a])) {
      return false;
    }
    if (++f.a == k_literal_len[f.b]) {
      pop_done();
    }
    return true;
  }

  // -- member variables ---------------------------------------------------------
  const json_grammar& g_;
  cow_stack& st_;
  std::vector<frame>& forks_;
  fork_list& fork_ends_;
  std::vector<int32_t>& alts_;
  bool checking_ = false;  // inside escape_feasible: no nested checks
};

}  // namespace

// -- the matcher --------------------------------------------------------------------

json_matcher::json_matcher(std::shared_ptr<json_grammar> g) : g_(std::move(g)) {}

match_state json_matcher::start() const {
  match_state s;
  frame v;
  v.kind = fk_value;
  v.node = g_->root;
  s.frames.push_back(v);
  s.ends.push_back(1);
  return s;
}

bool json_matcher::step(const match_state& in, uint8_t byte, match_state& out) {
  out.clear();
  auto add = [&](const frame* shared, uint32_t n_shared, const frame* own, size_t n_own) {
    const size_t at = out.frames.size();
    out.frames.insert(out.frames.end(), shared, shared + n_shared);
    out.frames.insert(out.frames.end(), own, own + n_own);
    // identical stacks merge
    const size_t n = n_shared + n_own;
    uint32_t b = 0;
    for (uint32_t end : out.ends) {
      if (end - b == n && std::equal(out.frames.begin() + b, out.frames.begin() + end,
                                     out.frames.begin() + static_cast<std::ptrdiff_t>(at))) {
        out.frames.resize(at);
        return;
      }
      b = end;
    }
    out.ends.push_back(static_cast<uint32_t>(out.frames.size()));
  };
  uint32_t begin = 0;
  for (uint32_t end : in.ends) {
    const frame* shared = in.frames.data() + begin;
    scratch_.clear();
    cow_stack st{shared, end - begin, scratch_};
    begin = end;
    forks_.clear();
    fork_ends_.clear();
    thread_runner run(*g_, st, forks_, fork_ends_, alts_);
    if (run.run(byte)) {
      add(shared, st.n_shared, scratch_.data(), scratch_.size());
    }
    // forks start a value of another alternative; each takes no further part of this byte
    uint32_t fb = 0;
    for (const auto& [n_shared, fe] : fork_ends_) {
      add(shared, n_shared, forks_.data() + fb, fe - fb);
      fb = fe;
    }
  }
  return !out.dead();
}

bool json_matcher::feed(match_state& s, std::string_view bytes) {
  match_state next;
  for (unsigned char c : bytes) {
    if (!step(s, c, next)) {
      s.clear();
      return false;
    }
    std::swap(s, next);
  }
  return true;
}

bool json_matcher::accepting(const match_state& s) const {
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (end == begin) {
      return true;
    }
    if (end - begin == 1) {
      const frame& f = s.frames[begin];
      const schema_node& n = f.node >= 0 ? g_->nodes[static_cast<size_t>(f.node)] : any_node();
      if (f.kind == fk_number && number_valid(n, f)) {
        return true;
      }
    }
    begin = end;
  }
  return false;
}

// -- closing costs ------------------------------------------------------------------

namespace {

class closer {
 public:
  explicit closer(const json_grammar& g) : g_(g) {}

  int64_t thread(const frame* st, size_t n) const {
    if (n == 0) {
      return 0;
    }
    return std::min(k_far, own(st[n - 1], n >= 2 ? &st[n - 2] : nullptr) + below(st, n));
  }

  /// What the top frame needs to finish itself (`parent`: the frame under it).
  int64_t own(const frame& f, const frame* parent) const {
    switch (f.kind) {
      case fk_value:
        return value(f.node);
      case fk_literal:
        return k_literal_len[f.b] - f.a;
      case fk_number:
        return number_close(f, node(f.node), g_.options);
      case fk_string:
        return string_rest(f, node(f.node).str);
      case fk_object:
        switch (f.phase) {
          case o_start:
            return object_rest(f, false);
          case o_after_comma: {
            const auto [req, n_req] = unseen_required(f);
            (void)req;
            const int64_t base = object_rest(f, false);
            return n_req > 0 ? base : base + cheapest_extra(f);
          }
          case o_key_done:
            return 1 + value(f.b) + object_rest(f, true);
          case o_colon:
            return value(f.b) + object_rest(f, true);
          default:
            return object_rest(f, true);
        }
      case fk_array:
        switch (f.phase) {
          case a_start:
            return array_rest(f, f.a, false, false);
          case a_after_comma:
            return array_rest(f, f.a, false, true);
          default:
            return array_rest(f, f.a, true, false);
        }
      case fk_key:
        return key_rest(f, *parent);
      default:
        return k_far;
    }
  }

  /// What the frames under the top of `n` frames from `st` need once it is done, at
  /// most k_far; a key's cost takes in its object's rest (which key it becomes decides
  /// that), so under a key the object is left out too.
  int64_t below(const frame* st, size_t n) const {
    const size_t under = st[n - 1].kind == fk_key ? n - 2 : n - 1;
    int64_t sum = 0;
    for (size_t i = under; i-- > 0 && sum < k_far;) {
      sum += after_child(st[i]);
    }
    return std::min(sum, k_far);
  }

  /// What the frame below a finished child still needs.
  int64_t after_child(const frame& f) const {
    switch (f.kind) {
      case fk_object:
        return object_rest(f, true);
      case fk_array:
        return array_rest(f, f.a + 1, true, false);
      default:
        return 0;
    }
  }

 private:
  const schema_node& node(int32_t id) const {
    return id >= 0 ? g_.nodes[static_cast<size_t>(id)] : any_node();
  }
  int64_t value(int32_t id) const { return std::min(g_.min_value_bytes(id), k_far); }

  static bool seen(const frame& f, size_t k) {
    return k < 64 ? (f.e >> k & 1) : k < 128 ? (f.f >> (k - 64) & 1) : false;
  }

  /// Bytes for the required properties not yet seen, and how many they are.
  std::pair<int64_t, int64_t> unseen_required(const frame& f) const {
    const auto& o = node(f.node).obj;
    int64_t sum = 0, n = 0;
    for (int32_t k = 0; k < o.n_required; ++k) {
      if (!seen(f, static_cast<size_t>(k))) {
        const auto& p = o.properties[static_cast<size_t>(k)];
        sum += p.key_bytes + 1 + value(p.node);
        ++n;
      }
    }
    return {sum, n};
  }

  /// The cheapest property that may still be added ("key":value).
  int64_t cheapest_extra(const frame& f) const {
    const auto& o = node(f.node).obj;
    int64_t best = o.additional != k_no_value ? 3 + value(o.additional) : k_far;
    for (size_t k = 0; k < o.properties.size(); ++k) {
      if (!seen(f, k)) {
        best = std::min(best, o.properties[k].key_bytes + 1 + value(o.properties[k].node));
      }
    }
    return best;
  }

  int64_t object_rest(const frame& f, bool after_value) const {
    const auto [req, n_req] = unseen_required(f);
    const auto& o = node(f.node).obj;
    int64_t sum = req + 1;
    int64_t n_more = n_req;
    if (f.a + n_req < o.min_props) {
      const int64_t extra = o.min_props - f.a - n_req;
      sum += extra * cheapest_extra(f);
      n_more += extra;
    }
    return sum + (after_value ? n_more : std::max<int64_t>(n_more - 1, 0));
  }

  int64_t array_rest(const frame& f, int32_t done, bool after_value, bool need_one) const {
    const auto& a = node(f.node).arr;
    int64_t n_need = std::max<int64_t>(a.min_items - done, need_one ? 1 : 0);
    if (n_need > 100000) {
      return k_far;
    }
    int64_t sum = 1;
    for (int64_t i = 0; i < n_need; ++i) {
      const int32_t idx = done + static_cast<int32_t>(i);
      const int32_t item = idx < static_cast<int32_t>(a.prefix.size()) ? a.prefix[static_cast<size_t>(idx)] : a.items;
      sum += value(item) + ((after_value || i > 0) ? 1 : 0);
      if (sum >= k_far) {
        return k_far;
      }
    }
    if (need_one && !after_value) {
      // after a comma: the first item needs no comma of its own
    }
    return sum;
  }



  int64_t string_rest(const frame& f, const string_rule& s) const {
    int64_t pending = f.utf8_left;
    if (f.esc == 1) {
      pending += 1;
    } else if (f.esc >= 2 && f.esc < 6) {
      pending += 6 - f.esc;
    } else if (f.esc >= 6) {
      pending += 6;
    }
    const int64_t need = std::max<int64_t>(s.min_len - f.a, 0);
    int64_t body = need;
    if (s.regex >= 0 && f.b >= 0) {
      auto& rx = *g_.regexes[static_cast<size_t>(s.regex)];
      const int32_t d = rx.distance_to_accept(f.b, rx.all_mask());
      if (d < 0) {
        return k_far;
      }
      body = std::max<int64_t>(d, need);
    }
    return pending + body + 1;
  }

  /// Closing the key, its colon, the cheapest value it can lead to, and the rest of its
  /// object once that property is in.
  int64_t key_rest(const frame& k, const frame& o) const {
    const auto& rule = node(o.node).obj;
    string_rule none;
    const string_rule& kr = rule.key_rule >= 0 ? g_.key_rules[static_cast<size_t>(rule.key_rule)] : none;
    frame as_string = k;
    as_string.b = kr.regex >= 0 ? k.b : -1;
    const int64_t close = string_rest(as_string, kr);  // the closing quote included
    frame after = o;
    ++after.a;
    const int64_t rest_other = object_rest(after, true);
    int64_t best = k_far;
    if (rule.additional != k_no_value) {
      best = close + 1 + value(rule.additional) + rest_other;
    }
    if (k.c >= 0 && rule.names >= 0) {
      const auto& trie = g_.name_tries[static_cast<size_t>(rule.names)];
      const int32_t depth = trie.depth[static_cast<size_t>(k.c)];
      const auto& below = trie.below[static_cast<size_t>(k.c)];
      for (size_t p = 0; p < rule.properties.size() && p < 128; ++p) {
        if ((below[p / 64] >> (p % 64) & 1) && !seen(o, p)) {
          const auto& pr = rule.properties[p];
          frame with = after;
          if (p < 64) {
            with.e |= uint64_t{1} << p;
          } else {
            with.f |= uint64_t{1} << (p - 64);
          }
          best = std::min(best, static_cast<int64_t>(pr.name.size()) - depth + 2 + value(pr.node) +
                                    object_rest(with, true));
        }
      }
    }
    if (k.d != k_dead && rule.pattern_rx >= 0) {
      auto& rx = *g_.regexes[static_cast<size_t>(rule.pattern_rx)];
      const int32_t d = rx.distance_to_any(k.d, rx.all_mask());
      if (d >= 0) {
        int64_t worst = 0;
        for (int32_t pn : rule.pattern_nodes) {
          worst = std::max(worst, value(pn));
        }
        best = std::min(best, d + 2 + worst + rest_other);
      }
    }
    return best;
  }

  // -- member variables ---------------------------------------------------------
  const json_grammar& g_;
};

}  // namespace

int64_t json_matcher::min_close_bytes(const match_state& s) const {
  closer c(*g_);
  int64_t best = k_far;
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (end > begin && s.frames[end - 1].esc != 0) {
      // an escape half written: which character it becomes decides the rest, so each
      // way to finish it is tried
      match_state one;
      one.frames.assign(s.frames.begin() + begin, s.frames.begin() + end);
      one.ends.push_back(end - begin);
      match_state after;
      any_escape_completion(s.frames[end - 1], [&](std::string_view done) {
        after = one;
        if (const_cast<json_matcher*>(this)->feed(after, done)) {
          best = std::min(best, static_cast<int64_t>(done.size()) + min_close_bytes(after));
        }
        return false;  // every way
      });
    } else {
      best = std::min(best, c.thread(s.frames.data() + begin, end - begin));
    }
    begin = end;
  }
  return best;
}

// -- the token walk ---------------------------------------------------------------------

namespace {

static_assert(sizeof(frame) % sizeof(uint64_t) == 0);
constexpr uint64_t k_hash_seed = 0x9E3779B97F4A7C15ull;

/// A stack's hash with frame `f` pushed on it (the hash of a stack is the same however
/// its frames are split between shared and own).
uint64_t hash_push(uint64_t h, const frame& f) {
  uint64_t w[sizeof(frame) / sizeof(uint64_t)];
  std::memcpy(w, &f, sizeof f);
  for (uint64_t x : w) {
    h = (h ^ x) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
  }
  return h;
}

}  // namespace

void json_matcher::walk_root(const match_state& root) {
  root_ = &root;
  root_walk_.threads.clear();
  root_walk_.own.clear();
  root_begin_.clear();
  prefix_at_.clear();
  prefix_hash_.clear();
  prefix_close_.clear();
  uint32_t begin = 0;
  for (uint32_t end : root.ends) {
    const auto t = static_cast<uint32_t>(root_begin_.size());
    root_begin_.push_back(begin);
    prefix_at_.push_back(static_cast<uint32_t>(prefix_hash_.size()));
    uint64_t h = k_hash_seed;
    prefix_hash_.push_back(h);
    for (uint32_t i = begin; i < end; ++i) {
      h = hash_push(h, root.frames[i]);
      prefix_hash_.push_back(h);
    }
    root_walk_.threads.push_back({t, end - begin, 0, 0});
    begin = end;
  }
}

const frame& json_matcher::walk_frame(const walk_state& s, const walk_state::thread& t,
                                      uint32_t own_begin, size_t i) const {
  return i < t.n_shared ? root_->frames[root_begin_[t.root] + i]
                        : s.own[own_begin + (i - t.n_shared)];
}

void json_matcher::walk_add(walk_state& out, uint32_t root, uint32_t n_shared, const frame* own,
                            size_t n_own) {
  if (out.threads.empty()) {
    // one thread, the common case, needs no hash
    out.own.insert(out.own.end(), own, own + n_own);
    out.threads.push_back({root, n_shared, static_cast<uint32_t>(out.own.size()), 0});
    return;
  }
  const auto hash_of = [&](uint32_t r, uint32_t n, const frame* f, size_t n_f) {
    uint64_t h = prefix_hash_[prefix_at_[r] + n];
    for (size_t i = 0; i < n_f; ++i) {
      h = hash_push(h, f[i]);
    }
    return h;
  };
  const uint64_t h = hash_of(root, n_shared, own, n_own);
  const size_t n = n_shared + n_own;
  const frame* shared = root_->frames.data() + root_begin_[root];
  uint32_t u_begin = 0;
  for (auto& u : out.threads) {
    const uint32_t b = u_begin;
    u_begin = u.own_end;
    if (u.hash == 0) {
      u.hash = hash_of(u.root, u.n_shared, out.own.data() + b, u.own_end - b);
    }
    if (u.hash != h || u.n_shared + (u.own_end - b) != n) {
      continue;
    }
    bool same = true;
    for (size_t i = 0; i < n && same; ++i) {
      same = walk_frame(out, u, b, i) == (i < n_shared ? shared[i] : own[i - n_shared]);
    }
    if (same) {
      return;
    }
  }
  out.own.insert(out.own.end(), own, own + n_own);
  out.threads.push_back({root, n_shared, static_cast<uint32_t>(out.own.size()), h});
}

bool json_matcher::walk_step(const walk_state* in, uint8_t byte, walk_state& out) {
  const walk_state& from = in != nullptr ? *in : root_walk_;
  out.threads.clear();
  out.own.clear();
  uint32_t own_begin = 0;
  for (const auto& t : from.threads) {
    const frame* shared = root_->frames.data() + root_begin_[t.root];
    scratch_.assign(from.own.begin() + own_begin, from.own.begin() + t.own_end);
    own_begin = t.own_end;
    cow_stack st{shared, t.n_shared, scratch_};
    forks_.clear();
    fork_ends_.clear();
    thread_runner run(*g_, st, forks_, fork_ends_, alts_);
    if (run.run(byte)) {
      walk_add(out, t.root, st.n_shared, scratch_.data(), scratch_.size());
    }
    uint32_t fb = 0;
    for (const auto& [n_shared, fe] : fork_ends_) {
      walk_add(out, t.root, n_shared, forks_.data() + fb, fe - fb);
      fb = fe;
    }
  }
  return !out.dead();
}

int64_t json_matcher::min_close_bytes(const walk_state& s) {
  const closer c(*g_);
  if (prefix_close_.empty()) {
    // what the root's frames need once those above them are done, per prefix: as
    // closer::below sums them, at most k_far
    prefix_close_.resize(prefix_hash_.size());
    for (size_t t = 0; t < root_begin_.size(); ++t) {
      const size_t n = root_->ends[t] - root_begin_[t];
      int64_t sum = 0;
      prefix_close_[prefix_at_[t]] = 0;
      for (size_t i = 0; i < n; ++i) {
        sum = std::min(k_far, sum + c.after_child(root_->frames[root_begin_[t] + i]));
        prefix_close_[prefix_at_[t] + i + 1] = sum;
      }
    }
  }
  int64_t best = k_far;
  uint32_t own_begin = 0;
  for (const auto& t : s.threads) {
    const uint32_t b = own_begin;
    own_begin = t.own_end;
    const size_t n = t.n_shared + (t.own_end - b);
    if (n == 0) {
      return 0;  // a whole document
    }
    const frame& top = walk_frame(s, t, b, n - 1);
    if (top.esc != 0) {
      match_state one;
      for (size_t i = 0; i < n; ++i) {
        one.frames.push_back(walk_frame(s, t, b, i));
      }
      one.ends.push_back(static_cast<uint32_t>(n));
      best = std::min(best, min_close_bytes(one));
      continue;
    }
    const frame* parent = n >= 2 ? &walk_frame(s, t, b, n - 2) : nullptr;
    const size_t under = top.kind == fk_key ? n - 2 : n - 1;
    int64_t below = prefix_close_[prefix_at_[t.root] + std::min<size_t>(under, t.n_shared)];
    for (size_t i = t.n_shared; i < under; ++i) {
      below = std::min(k_far, below + c.after_child(walk_frame(s, t, b, i)));
    }
    best = std::min(best, std::min(k_far, c.own(top, parent) + below));
  }
  return best;
}

// -- plain content --------------------------------------------------------------------

bool json_matcher::in_content(const match_state& s) const {
  if (s.dead()) {
    return false;
  }
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    if (end == begin) {
      return false;  // a whole document
    }
    const frame& f = s.frames[end - 1];
    if ((f.kind != fk_string && f.kind != fk_key) || f.esc != 0 || f.utf8_left != 0) {
      return false;
    }
    begin = end;
  }
  return true;
}

json_matcher::plain_rule json_matcher::plain_rule_of(const frame* parent, const frame& top) const {
  plain_rule r;
  const closer c(*g_);
  if (top.kind == fk_string) {
    const auto& s = node_of(*g_, top.node).str;
    if (s.regex < 0) {
      r.free = true;
      r.max_chars = s.max_len < 0 ? -1 : s.max_len - top.a;
      // more code points only lower what is still due (string_rest)
      r.close_bound = c.own(top, parent);
    }
    return r;
  }
  const auto& rule = node_of(*g_, parent->node).obj;
  if (rule.additional != k_no_value && rule.key_rule < 0) {
    r.free = true;
    // key_rest's first way, closing the key as an additional property, costs the same
    // after any plain token and bounds the others: it alone is left with no declared
    // name (c) and no patternProperties state (d)
    frame any = top;
    any.c = -1;
    any.d = k_dead;
    r.close_bound = c.own(any, parent);
  }
  return r;
}

bool json_matcher::plain_byte(const frame* parent, frame& top, uint8_t byte) {
  return content_byte(*g_, top, parent, byte);
}

int64_t json_matcher::close_top(const frame* parent, const frame& top) const {
  return closer(*g_).own(top, parent);
}

int64_t json_matcher::close_below(const frame* st, size_t n) const {
  return closer(*g_).below(st, n);
}

// -- cache keys -----------------------------------------------------------------------

namespace {

static_assert(std::has_unique_object_representations_v<frame>, "frames are keys byte for byte");

/// Appends frame `f` (`parent`: the one under it) as cache key bytes. A string's or
/// key's code-point count counts only through its bounds: as the code points it may
/// still take (a token of n bytes adds at most n, so beyond max_token_bytes all counts
/// are alike) and those it still needs. Fields no transition or closing cost reads in
/// the frame's phase are zeroed: \u digits outside an escape, an object's value node
/// outside o_key_done and o_colon.
void append_frame(const json_grammar& g, const frame* parent, const frame& f,
                  int64_t max_token_bytes, std::string& out) {
  frame k = f;
  if (f.kind == fk_string || f.kind == fk_key) {
    string_rule none;
    const string_rule* r = &none;
    if (f.kind == fk_string) {
      r = &node_of(g, f.node).str;
    } else if (const auto& o = node_of(g, parent->node).obj; o.key_rule >= 0) {
      r = &g.key_rules[static_cast<size_t>(o.key_rule)];
    }
    const int64_t room = r->max_len < 0 ? -1 : std::min<int64_t>(r->max_len - f.a, max_token_bytes + 1);
    const int64_t need = std::max<int64_t>(r->min_len - f.a, 0);
    k.a = 0;
    if (f.esc == 0) {
      k.u = 0;
    }
    out.append(reinterpret_cast<const char*>(&k), sizeof k);
    out.append(reinterpret_cast<const char*>(&room), sizeof room);
    out.append(reinterpret_cast<const char*>(&need), sizeof need);
    return;
  }
  if (f.kind == fk_object && f.phase != o_key_done && f.phase != o_colon) {
    k.b = 0;
  }
  out.append(reinterpret_cast<const char*>(&k), sizeof k);
}

}  // namespace

void json_matcher::state_key(const match_state& s, int64_t max_token_bytes, std::string& out) const {
  uint32_t begin = 0;
  for (uint32_t end : s.ends) {
    const uint32_t n = end - begin;
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    for (uint32_t i = begin; i < end; ++i) {
      append_frame(*g_, i > begin ? &s.frames[i - 1] : nullptr, s.frames[i], max_token_bytes, out);
    }
    begin = end;
  }
}

void json_matcher::plain_key(const frame* parent, const frame& top, int64_t max_token_bytes,
                             std::string& out) const {
  // a string's plain tokens and its closing cost read the string alone; a key's, its
  // object too
  if (top.kind == fk_key) {
    append_frame(*g_, nullptr, *parent, max_token_bytes, out);
  }
  append_frame(*g_, parent, top, max_token_bytes, out);
}

}  // namespace baton::grammar
