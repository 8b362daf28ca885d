// JSON Schema to json_grammar: each schema object becomes a node once (memoized by
// address, so $ref cycles become node cycles); allOf, a $ref beside other keywords, and
// the keyword groups of one object are intersected node by node; enum and const become
// unions of exact values. String constraints collect regex components per node and are
// compiled into regex_sets at the end, once every intersection is known.
#include "runtime/grammar/json_schema.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>
#include <optional>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

namespace baton::grammar {

namespace {

using json = nlohmann::json;

constexpr int64_t k_infinite = int64_t{1} << 40;
constexpr size_t k_max_union = 256;
constexpr size_t k_max_nodes = 200000;
constexpr size_t k_max_pattern_properties = 6;

/// Regexes for the formats the grammar enforces (RFC 3339 dates and times, RFC 4122
/// UUIDs, dotted IPv4, RFC 4291 IPv6, RFC 1123 host names; e-mail and URI loosely:
/// something@something, scheme:rest).
const char* format_regex(std::string_view f) {
  // a month's days (February: 29 in any year)
#define BATON_DATE                                                                    \
  "[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|" \
  "02-(0[1-9]|1[0-9]|2[0-9]))"
#define BATON_TIME \
  "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
  static const std::map<std::string_view, const char*> formats = {
      {"date", BATON_DATE},
      {"time", BATON_TIME},
      {"date-time", BATON_DATE "[Tt]" BATON_TIME},
      {"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
      {"ipv4",
       "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"},
      {"ipv6",
       "(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))"},
      {"hostname",
       "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"},
      {"email", "[^\\s@\"]+@[^\\s@\"]+"},
      {"uri", "[a-zA-Z][a-zA-Z0-9+.-]*:[^\\s]*"},
      {"iri", "[a-zA-Z][a-zA-Z0-9+.-]*:[^\\s]*"},
  };
#undef BATON_DATE
#undef BATON_TIME
  const auto it = formats.find(f);
  return it == formats.end() ? nullptr : it->second;
}

/// Formats JSON Schema defines that the grammar does not check (others are annotations).
bool unchecked_standard_format(std::string_view f) {
  static const std::set<std::string_view> names = {
      "uri-reference", "iri-reference",         "uri-template", "idn-email", "idn-hostname",
      "json-pointer",  "relative-json-pointer", "regex",        "duration"};
  return names.count(f) > 0;
}

/// Keywords that constrain a value and that the grammar does not enforce.
bool unsupported_keyword(std::string_view k, const json& v) {
  static const std::set<std::string_view> never = {
      "not",          "dependencies",          "dependentRequired", "dependentSchemas",
      "contains",     "unevaluatedProperties", "unevaluatedItems",  "$dynamicRef",
      "$recursiveRef", "minContains",          "maxContains"};
  if (k == "uniqueItems") {
    return v.is_boolean() && v.get<bool>();
  }
  if (k == "if") {
    return true;  // a lone `if` is no constraint, but then/else follow it in practice
  }
  return never.count(k) > 0;
}

std::string escape_pointer_token(std::string_view t) {
  std::string out;
  for (char c : t) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

/// `value` in JSON, as a client would quote it back.
std::string shown(const json& value) {
  std::string s = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

int32_t numeric_level(uint8_t types) {
  return (types & jt_number) ? 2 : (types & jt_integer) ? 1 : 0;
}

uint8_t with_numeric_level(uint8_t types, int32_t level) {
  types = static_cast<uint8_t>(types & ~(jt_number | jt_integer));
  return static_cast<uint8_t>(types | (level == 2 ? jt_number : level == 1 ? jt_integer : 0));
}

/// Shortest text that reads back as `v` ("0.1", "1e+20" → "1e+20").
std::string shortest_number(double v, bool integer) {
  if (integer) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int prec = 1; prec <= 17; ++prec) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) {
      return buf;
    }
  }
  return "0";
}

class compiler {
 public:
  compiler(const json& doc, json_grammar& g, const schema_options& opts)
      : doc_(doc), g_(g), opts_(opts) {}

  result<int32_t> run() {
    const int32_t root = translate(doc_, "");
    if (failed_) {
      return error{why_.message};
    }
    if (auto r = finish(); !r) {
      return r.err();
    }
    return root;
  }

  const schema_error& why() const { return why_; }

 private:
  // -- errors -------------------------------------------------------------------

  int32_t fail(std::string keyword, const std::string& pointer, std::string message) {
    if (!failed_) {
      failed_ = true;
      why_.keyword = std::move(keyword);
      why_.pointer = pointer.empty() ? "/" : pointer;
      why_.message = std::move(message);
    }
    return k_no_value;
  }

  /// An unsupported keyword: an error when strict, else a warning.
  bool refuse(const std::string& keyword, const std::string& pointer, const std::string& what) {
    const std::string where = pointer.empty() ? "/" : pointer;
    const std::string msg = "'" + keyword + "' at " + where + " cannot be enforced: " + what;
    if (opts_.strict) {
      fail(keyword, pointer, msg);
      return true;
    }
    g_.warnings.push_back(msg);
    return false;
  }

  // -- nodes --------------------------------------------------------------------

  int32_t add_node(schema_node n) {
    if (g_.nodes.size() >= k_max_nodes) {
      return fail("", "", "the schema expands to more than " + std::to_string(k_max_nodes) +
                              " nodes");
    }
    g_.nodes.push_back(std::move(n));
    done_.push_back(true);
    return static_cast<int32_t>(g_.nodes.size() - 1);
  }

  int32_t add_union(std::vector<int32_t> alts) {
    std::vector<int32_t> kept;
    for (int32_t a : alts) {
      if (a == k_any_value) {
        return k_any_value;
      }
      if (a != k_no_value && std::find(kept.begin(), kept.end(), a) == kept.end()) {
        kept.push_back(a);
      }
    }
    if (kept.empty()) {
      return k_no_value;
    }
    if (kept.size() == 1) {
      return kept[0];
    }
    schema_node u;
    u.any_of = std::move(kept);
    return add_node(std::move(u));
  }

  int32_t add_regex(std::vector<regex_component> parts) {
    rx_parts_.push_back(std::move(parts));
    return static_cast<int32_t>(rx_parts_.size() - 1);
  }

  // -- translation --------------------------------------------------------------

  int32_t translate(const json& s, const std::string& ptr) {
    if (failed_) {
      return k_no_value;
    }
    if (s.is_boolean()) {
      return s.get<bool>() ? k_any_value : k_no_value;
    }
    if (!s.is_object()) {
      return fail("", ptr, "the schema at " + (ptr.empty() ? std::string("/") : ptr) +
                               " must be an object or a boolean, got " + shown(s));
    }
    if (auto it = memo_.find(&s); it != memo_.end()) {
      return it->second;
    }
    const auto id = static_cast<int32_t>(g_.nodes.size());
    g_.nodes.emplace_back();
    done_.push_back(false);
    memo_[&s] = id;

    std::vector<int32_t> parts;
    const auto ref = s.find("$ref");
    if (ref != s.end() && legacy_ref()) {
      // drafts 3 to 7: a $ref's sibling keywords are ignored
      parts.push_back(resolve_ref(*ref, ptr));
    } else {
      parts.push_back(local_node(s, ptr));
      if (ref != s.end()) {
        parts.push_back(resolve_ref(*ref, ptr));
      }
    }
    if (auto it = s.find("allOf"); it != s.end() && !(ref != s.end() && legacy_ref())) {
      if (!it->is_array()) {
        return fail("allOf", ptr, "'allOf' at " + ptr + " must be an array");
      }
      for (size_t i = 0; i < it->size(); ++i) {
        parts.push_back(translate((*it)[i], ptr + "/allOf/" + std::to_string(i)));
      }
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (auto it = s.find(key); it != s.end() && !(ref != s.end() && legacy_ref())) {
        if (!it->is_array() || it->empty()) {
          return fail(key, ptr, std::string("'") + key + "' at " + ptr +
                                    " must be a non-empty array");
        }
        std::vector<int32_t> alts;
        for (size_t i = 0; i < it->size(); ++i) {
          alts.push_back(translate((*it)[i], ptr + "/" + key + "/" + std::to_string(i)));
        }
        if (std::string_view(key) == "oneOf" && !pairwise_disjoint(alts)) {
          if (refuse("oneOf", ptr, "its branches may both match, and that only one does cannot be checked")) {
            return k_no_value;
          }
        }
        parts.push_back(add_union(std::move(alts)));
      }
    }
    int32_t whole = k_any_value;
    for (int32_t p : parts) {
      whole = intersect(whole, p, ptr);
    }
    if (auto it = s.find("nullable"); it != s.end() && it->is_boolean() && it->get<bool>()) {
      schema_node null_only;
      null_only.types = jt_null;
      whole = add_union({whole, add_node(std::move(null_only))});  // OpenAPI's nullable
    }
    if (failed_) {
      return k_no_value;
    }
    schema_node alias;
    if (whole == k_no_value) {
      alias.types = 0;
    } else if (whole != k_any_value) {
      alias.any_of = {whole};
    }
    g_.nodes[static_cast<size_t>(id)] = std::move(alias);
    done_[static_cast<size_t>(id)] = true;
    return id;
  }

  /// Whether the document declares a draft (3 to 7) where $ref replaces its siblings.
  bool legacy_ref() const {
    const auto it = doc_.find("$schema");
    if (it == doc_.end() || !it->is_string()) {
      return false;
    }
    const auto& v = it->get_ref<const std::string&>();
    return v.find("draft-03") != std::string::npos || v.find("draft-04") != std::string::npos ||
           v.find("draft-06") != std::string::npos || v.find("draft-07") != std::string::npos;
  }

  // -- oneOf ----------------------------------------------------------------------

  bool pairwise_disjoint(const std::vector<int32_t>& alts) {
    for (size_t i = 0; i < alts.size(); ++i) {
      for (size_t j = i + 1; j < alts.size(); ++j) {
        if (!disjoint(alts[i], alts[j], 0)) {
          return false;
        }
      }
    }
    return true;
  }

  /// Whether no value matches both nodes, as far as can be shown cheaply (false when
  /// unsure).
  bool disjoint(int32_t a, int32_t b, int depth) {
    if (a == k_no_value || b == k_no_value) {
      return true;
    }
    if (a == k_any_value || b == k_any_value || depth > 8 || !done_[static_cast<size_t>(a)] ||
        !done_[static_cast<size_t>(b)]) {
      return false;
    }
    const schema_node na = g_.nodes[static_cast<size_t>(a)];
    const schema_node nb = g_.nodes[static_cast<size_t>(b)];
    if (!na.any_of.empty() || !nb.any_of.empty()) {
      const auto& alts = !na.any_of.empty() ? na.any_of : nb.any_of;
      const int32_t other = !na.any_of.empty() ? b : a;
      for (int32_t x : alts) {
        if (!disjoint(x, other, depth + 1)) {
          return false;
        }
      }
      return true;
    }
    auto numeric = [](uint8_t t) { return (t & (jt_number | jt_integer)) != 0; };
    if ((na.types & nb.types & jt_null) != 0) {
      return false;
    }
    if ((na.types & nb.types & jt_bool) &&
        ((na.allow_true && nb.allow_true) || (na.allow_false && nb.allow_false))) {
      return false;
    }
    if (numeric(na.types) && numeric(nb.types) && !numbers_disjoint(na.num, nb.num)) {
      return false;
    }
    if ((na.types & nb.types & jt_string) && !strings_disjoint(na.str, nb.str)) {
      return false;
    }
    if ((na.types & nb.types & jt_array) &&
        !(na.arr.max_items >= 0 && na.arr.max_items < nb.arr.min_items) &&
        !(nb.arr.max_items >= 0 && nb.arr.max_items < na.arr.min_items)) {
      return false;
    }
    if ((na.types & nb.types & jt_object) && !objects_disjoint(na.obj, nb.obj, depth)) {
      return false;
    }
    return true;
  }

  static bool numbers_disjoint(const number_rule& x, const number_rule& y) {
    auto below = [](const number_rule& lo_of, const number_rule& hi_of) {
      // every value of hi_of is below every value of lo_of
      return lo_of.has_min && hi_of.has_max &&
             (hi_of.max < lo_of.min || (hi_of.max == lo_of.min && (hi_of.max_exclusive || lo_of.min_exclusive)));
    };
    return below(x, y) || below(y, x);
  }

  bool strings_disjoint(const string_rule& x, const string_rule& y) {
    if ((x.max_len >= 0 && x.max_len < y.min_len) || (y.max_len >= 0 && y.max_len < x.min_len)) {
      return true;
    }
    if (x.regex < 0 || y.regex < 0) {
      return false;
    }
    auto parts = rx_parts_[static_cast<size_t>(x.regex)];
    const auto& more = rx_parts_[static_cast<size_t>(y.regex)];
    parts.insert(parts.end(), more.begin(), more.end());
    auto both = regex_set::compile(parts);
    if (!both) {
      return false;
    }
    // no string matches every component at once: no reachable state accepts them all
    // (a search that runs out of its bound is "unsure")
    regex_set& rx = **both;
    std::vector<regex_state> todo = {rx.start()};
    std::set<regex_state> seen_states = {rx.start()};
    while (!todo.empty()) {
      const regex_state st = todo.back();
      todo.pop_back();
      if (rx.accept_mask(st) == rx.all_mask()) {
        return false;
      }
      for (int byte = 0; byte < 256; ++byte) {
        const regex_state nx = rx.next(st, static_cast<uint8_t>(byte));
        if (nx != k_dead && rx.alive_mask(nx) == rx.all_mask() && seen_states.insert(nx).second) {
          if (seen_states.size() > 2000 || rx.overflowed()) {
            return false;
          }
          todo.push_back(nx);
        }
      }
    }
    return !rx.overflowed();
  }

  bool objects_disjoint(const object_rule& x, const object_rule& y, int depth) {
    auto node_for = [](const object_rule& r, const std::string& name) {
      for (const auto& p : r.properties) {
        if (p.name == name) {
          return p.node;
        }
      }
      return r.patterns.empty() ? r.additional : k_any_value;
    };
    for (const auto& p : x.properties) {
      if (p.required && disjoint(p.node, node_for(y, p.name), depth + 1)) {
        return true;
      }
    }
    for (const auto& p : y.properties) {
      if (p.required && disjoint(p.node, node_for(x, p.name), depth + 1)) {
        return true;
      }
    }
    return false;
  }

  int32_t resolve_ref(const json& ref, const std::string& ptr) {
    if (!ref.is_string()) {
      return fail("$ref", ptr, "'$ref' at " + ptr + " must be a string, got " + shown(ref));
    }
    std::string r = ref.get<std::string>();
    // a reference through the document's own $id is a reference into it
    if (auto id = doc_.find("$id"); id != doc_.end() && id->is_string()) {
      const std::string base = id->get<std::string>();
      const std::string stem = base.substr(0, base.find('#'));
      if (!stem.empty() && r.rfind(stem, 0) == 0) {
        r = r.substr(stem.size());
      }
    }
    if (r.empty() || r[0] != '#') {
      return fail("$ref", ptr, "'$ref' at " + ptr + " points outside the schema (\"" + r +
                                   "\"): only \"#...\" references are resolved");
    }
    const json* at = &doc_;
    std::string target;
    size_t i = 1;
    if (i < r.size() && r[i] != '/') {
      return fail("$ref", ptr, "'$ref' at " + ptr + " uses an anchor (\"" + r +
                                   "\"): only JSON pointers are resolved");
    }
    while (i < r.size()) {
      size_t j = r.find('/', i + 1);
      if (j == std::string::npos) {
        j = r.size();
      }
      std::string tok = r.substr(i + 1, j - i - 1);
      std::string un;
      for (size_t k = 0; k < tok.size(); ++k) {
        if (tok[k] == '~' && k + 1 < tok.size()) {
          un += tok[k + 1] == '1' ? '/' : '~';
          ++k;
        } else if (tok[k] == '%' && k + 2 < tok.size() && std::isxdigit(static_cast<unsigned char>(tok[k + 1])) &&
                   std::isxdigit(static_cast<unsigned char>(tok[k + 2]))) {
          un += static_cast<char>(std::strtol(tok.substr(k + 1, 2).c_str(), nullptr, 16));
          k += 2;
        } else {
          un += tok[k];
        }
      }
      if (at->is_object()) {
        auto it = at->find(un);
        if (it == at->end()) {
          return fail("$ref", ptr, "'$ref' at " + ptr + " points to \"" + r +
                                       "\", which the schema does not have");
        }
        at = &*it;
      } else if (at->is_array() && !un.empty() &&
                 std::all_of(un.begin(), un.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                 un.size() < 9 && std::stoul(un) < at->size()) {
        at = &(*at)[std::stoul(un)];
      } else {
        return fail("$ref", ptr, "'$ref' at " + ptr + " points to \"" + r +
                                     "\", which the schema does not have");
      }
      target += "/" + escape_pointer_token(un);
      i = j;
    }
    if (++ref_depth_ > 10000) {
      return fail("$ref", ptr, "'$ref' chains too deep at " + ptr);
    }
    return translate(*at, target);
  }

  /// The node for what `s` itself says (type, enum/const, and the keywords of each type).
  int32_t local_node(const json& s, const std::string& ptr) {
    schema_node n;
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (unsupported_keyword(it.key(), it.value())) {
        const bool stop = refuse(it.key(), ptr, "the grammar has no way to check it");
        if (stop) {
          return k_no_value;
        }
      }
    }
    if (auto it = s.find("type"); it != s.end()) {
      uint8_t t = 0;
      auto one = [&](const json& v) {
        static const std::map<std::string, uint8_t> names = {
            {"null", jt_null},     {"boolean", jt_bool},  {"object", jt_object},
            {"array", jt_array},   {"string", jt_string}, {"number", jt_number},
            {"integer", jt_integer}};
        const auto f = v.is_string() ? names.find(v.get<std::string>()) : names.end();
        if (f == names.end()) {
          fail("type", ptr, "'type' at " + (ptr.empty() ? "/" : ptr) + " must name a JSON type, got " +
                                shown(v));
          return;
        }
        t = static_cast<uint8_t>(t | f->second);
      };
      if (it->is_array()) {
        for (const auto& v : *it) {
          one(v);
        }
      } else {
        one(*it);
      }
      if (t & jt_number) {
        t = static_cast<uint8_t>(t & ~jt_integer);
      }
      n.types = t;
    }
    string_keywords(s, ptr, n);
    number_keywords(s, ptr, n);
    object_keywords(s, ptr, n);
    array_keywords(s, ptr, n);
    if (failed_) {
      return k_no_value;
    }
    int32_t node = unconstrained(n) ? k_any_value : add_node(std::move(n));
    if (auto it = s.find("const"); it != s.end()) {
      node = intersect(node, const_node(*it, ptr + "/const"), ptr);
    }
    if (auto it = s.find("enum"); it != s.end()) {
      if (!it->is_array()) {
        return fail("enum", ptr, "'enum' at " + ptr + " must be an array, got " + shown(*it));
      }
      node = intersect(node, enum_node(*it, ptr), ptr);
    }
    return node;
  }

  static bool unconstrained(const schema_node& n) {
    return n.types == jt_any && n.allow_true && n.allow_false && n.str.min_len == 0 &&
           n.str.max_len < 0 && n.str.regex < 0 && !n.num.has_min && !n.num.has_max &&
           n.num.multiple_of == 0 && n.obj.properties.empty() && n.obj.patterns.empty() &&
           n.obj.additional == k_any_value && n.obj.min_props == 0 && n.obj.max_props < 0 &&
           n.obj.key_rule < 0 && n.arr.prefix.empty() && n.arr.items == k_any_value &&
           n.arr.min_items == 0 && n.arr.max_items < 0 && n.any_of.empty();
  }

  static std::optional<int64_t> count_of(const json& v) {
    if (v.is_number_unsigned()) {
      return static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), k_infinite));
    }
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
      return v.get<int64_t>();
    }
    if (v.is_number_float() && v.get<double>() >= 0 && std::floor(v.get<double>()) == v.get<double>()) {
      return static_cast<int64_t>(std::min(v.get<double>(), static_cast<double>(k_infinite)));
    }
    return std::nullopt;
  }

  bool read_count(const json& s, const char* key, const std::string& ptr, int64_t& out) {
    auto it = s.find(key);
    if (it == s.end()) {
      return false;
    }
    const auto v = count_of(*it);
    if (!v) {
      fail(key, ptr, std::string("'") + key + "' at " + (ptr.empty() ? "/" : ptr) +
                         " must be a non-negative integer, got " + shown(*it));
      return false;
    }
    out = *v;
    return true;
  }

  void string_keywords(const json& s, const std::string& ptr, schema_node& n) {
    read_count(s, "minLength", ptr, n.str.min_len);
    read_count(s, "maxLength", ptr, n.str.max_len);
    std::vector<regex_component> parts;
    if (auto it = s.find("pattern"); it != s.end()) {
      if (!it->is_string()) {
        fail("pattern", ptr, "'pattern' at " + ptr + " must be a string, got " + shown(*it));
        return;
      }
      parts.push_back({it->get<std::string>(), regex_kind::search});
    }
    if (auto it = s.find("format"); it != s.end() && it->is_string()) {
      if (const char* rx = format_regex(it->get<std::string>())) {
        parts.push_back({rx, regex_kind::full});
      } else if (unchecked_standard_format(it->get<std::string>())) {
        refuse("format", ptr, "format \"" + it->get<std::string>() + "\" is not checked");
      }
      // other formats are annotations (JSON Schema: unknown formats are ignored)
    }
    if (!parts.empty()) {
      n.str.regex = add_regex(std::move(parts));
      regex_where_[n.str.regex] = ptr;
    }
  }

  void number_keywords(const json& s, const std::string& ptr, schema_node& n) {
    auto number = [&](const char* key, double& out) {
      auto it = s.find(key);
      if (it == s.end() || it->is_boolean()) {
        return false;
      }
      if (!it->is_number()) {
        fail(key, ptr, std::string("'") + key + "' at " + (ptr.empty() ? "/" : ptr) +
                           " must be a number, got " + shown(*it));
        return false;
      }
      out = it->get<double>();
      return true;
    };
    n.num.has_min = number("minimum", n.num.min);
    n.num.has_max = number("maximum", n.num.max);
    // draft 4: exclusiveMinimum is a boolean modifying minimum; later: a bound itself
    if (auto it = s.find("exclusiveMinimum"); it != s.end()) {
      if (it->is_boolean()) {
        n.num.min_exclusive = it->get<bool>() && n.num.has_min;
      } else {
        double v = 0;
        if (number("exclusiveMinimum", v) && (!n.num.has_min || v >= n.num.min)) {
          n.num.has_min = true;
          n.num.min = v;
          n.num.min_exclusive = true;
        }
      }
    }
    if (auto it = s.find("exclusiveMaximum"); it != s.end()) {
      if (it->is_boolean()) {
        n.num.max_exclusive = it->get<bool>() && n.num.has_max;
      } else {
        double v = 0;
        if (number("exclusiveMaximum", v) && (!n.num.has_max || v <= n.num.max)) {
          n.num.has_max = true;
          n.num.max = v;
          n.num.max_exclusive = true;
        }
      }
    }
    double m = 0;
    if (number("multipleOf", m)) {
      if (m > 0 && std::floor(m) == m && m < 1e15) {
        n.num.multiple_of = static_cast<int64_t>(m);
        // a multiple of an integer is an integer: numbers narrow to integers
        if (n.types & jt_number) {
          n.types = static_cast<uint8_t>((n.types & ~jt_number) | jt_integer);
        }
      } else if (m <= 0) {
        fail("multipleOf", ptr, "'multipleOf' at " + ptr + " must be greater than 0");
      } else {
        refuse("multipleOf", ptr, "only integer multiples are enforced, got " + shown(s["multipleOf"]));
      }
    }
  }

  void object_keywords(const json& s, const std::string& ptr, schema_node& n) {
    object_rule& o = n.obj;
    std::vector<std::string> required;
    if (auto it = s.find("required"); it != s.end() && it->is_array()) {
      for (const auto& r : *it) {
        if (!r.is_string()) {
          fail("required", ptr, "'required' at " + ptr + " must list strings, got " + shown(r));
          return;
        }
        if (std::find(required.begin(), required.end(), r.get<std::string>()) == required.end()) {
          required.push_back(r.get<std::string>());
        }
      }
    }
    std::vector<property_rule> props;
    if (auto it = s.find("properties"); it != s.end()) {
      if (!it->is_object()) {
        fail("properties", ptr, "'properties' at " + ptr + " must be an object, got " + shown(*it));
        return;
      }
      for (auto p = it->begin(); p != it->end(); ++p) {
        property_rule pr;
        pr.name = p.key();
        pr.node = translate(p.value(), ptr + "/properties/" + escape_pointer_token(p.key()));
        props.push_back(std::move(pr));
      }
    }
    for (const auto& r : required) {
      auto f = std::find_if(props.begin(), props.end(),
                            [&](const property_rule& p) { return p.name == r; });
      if (f == props.end()) {
        property_rule pr;
        pr.name = r;
        pr.node = k_any_value;  // constrained by additionalProperties below, in finish()
        pr.required = true;
        pending_additional_.push_back(r);
        props.push_back(std::move(pr));
      } else {
        f->required = true;
      }
    }
    if (auto it = s.find("patternProperties"); it != s.end() && it->is_object()) {
      for (auto p = it->begin(); p != it->end(); ++p) {
        o.pattern_nodes.push_back(
            translate(p.value(), ptr + "/patternProperties/" + escape_pointer_token(p.key())));
        o.patterns.push_back(p.key());
      }
    }
    if (auto it = s.find("additionalProperties"); it != s.end()) {
      o.additional = translate(*it, ptr + "/additionalProperties");
    }
    // a required property that properties does not declare takes additionalProperties'
    // (or a matching pattern's) schema
    for (auto& p : props) {
      if (p.node == k_any_value && std::find(pending_additional_.begin(), pending_additional_.end(),
                                             p.name) != pending_additional_.end()) {
        p.node = o.additional;
      }
    }
    pending_additional_.clear();
    std::stable_partition(props.begin(), props.end(), [](const property_rule& p) { return p.required; });
    o.n_required = static_cast<int32_t>(
        std::count_if(props.begin(), props.end(), [](const property_rule& p) { return p.required; }));
    o.properties = std::move(props);
    if (o.n_required > 128) {
      refuse("required", ptr, "more than 128 required properties");
    }
    read_count(s, "minProperties", ptr, o.min_props);
    read_count(s, "maxProperties", ptr, o.max_props);
    if (auto it = s.find("propertyNames"); it != s.end()) {
      const int32_t kn = translate(*it, ptr + "/propertyNames");
      const schema_node* k = kn >= 0 ? &g_.nodes[static_cast<size_t>(kn)] : nullptr;
      while (k && k->any_of.size() == 1 && k->any_of[0] >= 0 && done_[static_cast<size_t>(k->any_of[0])]) {
        k = &g_.nodes[static_cast<size_t>(k->any_of[0])];
      }
      if (kn == k_any_value) {
        // nop
      } else if (k && k->any_of.empty() && (k->types & jt_string) && done_[static_cast<size_t>(kn)]) {
        g_.key_rules.push_back(k->str);
        o.key_rule = static_cast<int32_t>(g_.key_rules.size() - 1);
      } else {
        refuse("propertyNames", ptr, "only a string schema (length, pattern, format) is enforced");
      }
    }
  }

  void array_keywords(const json& s, const std::string& ptr, schema_node& n) {
    array_rule& a = n.arr;
    const auto prefix_items = s.find("prefixItems");
    const auto items = s.find("items");
    if (prefix_items != s.end() && prefix_items->is_array()) {
      for (size_t i = 0; i < prefix_items->size(); ++i) {
        a.prefix.push_back(translate((*prefix_items)[i], ptr + "/prefixItems/" + std::to_string(i)));
      }
      if (items != s.end()) {
        a.items = translate(*items, ptr + "/items");
      }
    } else if (items != s.end() && items->is_array()) {
      for (size_t i = 0; i < items->size(); ++i) {
        a.prefix.push_back(translate((*items)[i], ptr + "/items/" + std::to_string(i)));
      }
      if (auto add = s.find("additionalItems"); add != s.end()) {
        a.items = translate(*add, ptr + "/additionalItems");
      }
    } else if (items != s.end()) {
      a.items = translate(*items, ptr + "/items");
    }
    read_count(s, "minItems", ptr, a.min_items);
    read_count(s, "maxItems", ptr, a.max_items);
  }

  // -- exact values -------------------------------------------------------------

  int32_t const_node(const json& v, const std::string& ptr) {
    schema_node n;
    switch (v.type()) {
      case json::value_t::null:
        n.types = jt_null;
        break;
      case json::value_t::boolean:
        n.types = jt_bool;
        n.allow_true = v.get<bool>();
        n.allow_false = !v.get<bool>();
        break;
      case json::value_t::number_integer:
      case json::value_t::number_unsigned:
      case json::value_t::number_float:
        n.types = jt_number;
        n.num.has_min = n.num.has_max = true;
        n.num.min = n.num.max = v.get<double>();
        break;
      case json::value_t::string:
        n.types = jt_string;
        n.str.regex = add_regex({{v.get<std::string>(), regex_kind::literal}});
        regex_where_[n.str.regex] = ptr;
        break;
      case json::value_t::array:
        n.types = jt_array;
        for (size_t i = 0; i < v.size(); ++i) {
          n.arr.prefix.push_back(const_node(v[i], ptr));
        }
        n.arr.items = k_no_value;
        n.arr.min_items = n.arr.max_items = static_cast<int64_t>(v.size());
        break;
      case json::value_t::object:
        n.types = jt_object;
        for (auto it = v.begin(); it != v.end(); ++it) {
          n.obj.properties.push_back({it.key(), const_node(it.value(), ptr), true});
        }
        n.obj.n_required = static_cast<int32_t>(n.obj.properties.size());
        n.obj.additional = k_no_value;
        if (n.obj.n_required > 128) {
          return fail("const", ptr, "an exact object at " + ptr + " has more than 128 keys");
        }
        break;
      default:
        return fail("const", ptr, "cannot read the value at " + ptr);
    }
    return add_node(std::move(n));
  }

  int32_t enum_node(const json& values, const std::string& ptr) {
    std::vector<int32_t> alts;
    std::string strings;
    bool any_string = false, any_true = false, any_false = false, any_null = false;
    for (const auto& v : values) {
      if (v.is_string()) {
        strings += (any_string ? "|" : "") + regex_escape(v.get<std::string>());
        any_string = true;
      } else if (v.is_boolean()) {
        (v.get<bool>() ? any_true : any_false) = true;
      } else if (v.is_null()) {
        any_null = true;
      } else {
        alts.push_back(const_node(v, ptr + "/enum"));
      }
    }
    if (any_string) {
      schema_node n;
      n.types = jt_string;
      n.str.regex = add_regex({{strings, regex_kind::full}});
      regex_where_[n.str.regex] = ptr + "/enum";
      alts.push_back(add_node(std::move(n)));
    }
    if (any_true || any_false) {
      schema_node n;
      n.types = jt_bool;
      n.allow_true = any_true;
      n.allow_false = any_false;
      alts.push_back(add_node(std::move(n)));
    }
    if (any_null) {
      schema_node n;
      n.types = jt_null;
      alts.push_back(add_node(std::move(n)));
    }
    return add_union(std::move(alts));
  }

  // -- intersection -------------------------------------------------------------

  /// The node whose values match both; unions distribute.
  int32_t intersect(int32_t a, int32_t b, const std::string& ptr) {
    if (failed_ || a == k_no_value || b == k_no_value) {
      return k_no_value;
    }
    if (a == k_any_value || a == b) {
      return b;
    }
    if (b == k_any_value) {
      return a;
    }
    const auto key = std::make_pair(std::min(a, b), std::max(a, b));
    if (auto it = meets_.find(key); it != meets_.end()) {
      return it->second;
    }
    // the same pair again inside its own intersection (two recursive schemas met
    // through allOf): the result would be infinite
    if (!done_[static_cast<size_t>(a)] || !done_[static_cast<size_t>(b)] ||
        !meeting_.insert(key).second || meeting_.size() > k_max_meet_depth) {
      return fail("allOf", ptr, "a schema at " + (ptr.empty() ? "/" : ptr) +
                                    " combines itself with itself through allOf or $ref: "
                                    "such a recursive intersection cannot be compiled");
    }
    struct unmeet {
      std::set<std::pair<int32_t, int32_t>>& in;
      std::pair<int32_t, int32_t> key;
      ~unmeet() { in.erase(key); }
    } done_meeting{meeting_, key};
    int32_t out = k_no_value;
    const auto& na = g_.nodes[static_cast<size_t>(a)];
    const auto& nb = g_.nodes[static_cast<size_t>(b)];
    if (!na.any_of.empty() || !nb.any_of.empty()) {
      const bool split_a = !na.any_of.empty();
      const std::vector<int32_t> alts = split_a ? na.any_of : nb.any_of;
      const int32_t other = split_a ? b : a;
      std::vector<int32_t> met;
      for (int32_t x : alts) {
        met.push_back(intersect(x, other, ptr));
      }
      if (met.size() > k_max_union) {
        return fail("anyOf", ptr, "anyOf/oneOf/enum combinations at " + ptr + " expand to more than " +
                                      std::to_string(k_max_union) + " alternatives");
      }
      out = add_union(std::move(met));
    } else {
      out = merge(na, nb, ptr);
    }
    meets_[key] = out;
    return out;
  }

  int32_t merge(schema_node a, schema_node b, const std::string& ptr) {
    schema_node n;
    n.types = static_cast<uint8_t>(a.types & b.types & ~(jt_number | jt_integer));
    n.types = with_numeric_level(n.types, std::min(numeric_level(a.types), numeric_level(b.types)));
    if (n.types == 0) {
      return k_no_value;
    }
    n.allow_true = a.allow_true && b.allow_true;
    n.allow_false = a.allow_false && b.allow_false;
    // strings
    n.str.min_len = std::max(a.str.min_len, b.str.min_len);
    n.str.max_len = a.str.max_len < 0 ? b.str.max_len
                    : b.str.max_len < 0 ? a.str.max_len
                                        : std::min(a.str.max_len, b.str.max_len);
    n.str.regex = merge_regex(a.str.regex, b.str.regex);
    // numbers
    n.num = a.num;
    if (b.num.has_min && (!n.num.has_min || b.num.min > n.num.min ||
                          (b.num.min == n.num.min && b.num.min_exclusive))) {
      n.num.has_min = true;
      n.num.min = b.num.min;
      n.num.min_exclusive = b.num.min_exclusive;
    }
    if (b.num.has_max && (!n.num.has_max || b.num.max < n.num.max ||
                          (b.num.max == n.num.max && b.num.max_exclusive))) {
      n.num.has_max = true;
      n.num.max = b.num.max;
      n.num.max_exclusive = b.num.max_exclusive;
    }
    if (b.num.multiple_of > 0) {
      n.num.multiple_of = n.num.multiple_of > 0 ? std::lcm(n.num.multiple_of, b.num.multiple_of)
                                                : b.num.multiple_of;
    }
    // arrays
    n.arr.min_items = std::max(a.arr.min_items, b.arr.min_items);
    n.arr.max_items = a.arr.max_items < 0 ? b.arr.max_items
                      : b.arr.max_items < 0 ? a.arr.max_items
                                            : std::min(a.arr.max_items, b.arr.max_items);
    const size_t n_prefix = std::max(a.arr.prefix.size(), b.arr.prefix.size());
    for (size_t i = 0; i < n_prefix; ++i) {
      const int32_t x = i < a.arr.prefix.size() ? a.arr.prefix[i] : a.arr.items;
      const int32_t y = i < b.arr.prefix.size() ? b.arr.prefix[i] : b.arr.items;
      n.arr.prefix.push_back(intersect(x, y, ptr));
    }
    n.arr.items = intersect(a.arr.items, b.arr.items, ptr);
    // objects
    if ((n.types & jt_object) && !merge_objects(a.obj, b.obj, n.obj, ptr)) {
      return k_no_value;
    }
    return add_node(std::move(n));
  }

  int32_t merge_regex(int32_t a, int32_t b) {
    if (a < 0) {
      return b;
    }
    if (b < 0) {
      return a;
    }
    auto parts = rx_parts_[static_cast<size_t>(a)];
    const auto& more = rx_parts_[static_cast<size_t>(b)];
    parts.insert(parts.end(), more.begin(), more.end());
    const int32_t r = add_regex(std::move(parts));
    regex_where_[r] = regex_where_[a];
    return r;
  }

  bool merge_objects(const object_rule& a, const object_rule& b, object_rule& o,
                     const std::string& ptr) {
    const bool a_plain = a.pattern_nodes.empty() && a.additional == k_any_value;
    const bool b_plain = b.pattern_nodes.empty() && b.additional == k_any_value;
    if (!a.pattern_nodes.empty() && !b.pattern_nodes.empty()) {
      refuse("allOf", ptr, "two schemas with patternProperties are intersected");
      if (failed_) {
        return false;
      }
    }
    auto node_in = [&](const object_rule& r, const std::string& name) {
      for (const auto& p : r.properties) {
        if (p.name == name) {
          return p.node;
        }
      }
      return r.pattern_nodes.empty() ? r.additional : k_any_value;  // patterns: in finish()
    };
    std::vector<property_rule> props;
    auto add = [&](const property_rule& p, const object_rule& other) {
      for (auto& q : props) {
        if (q.name == p.name) {
          q.required = q.required || p.required;
          return;
        }
      }
      property_rule r = p;
      r.node = intersect(p.node, node_in(other, p.name), ptr);
      for (const auto& q : other.properties) {
        if (q.name == p.name) {
          r.required = r.required || q.required;
        }
      }
      props.push_back(std::move(r));
    };
    for (const auto& p : a.properties) {
      add(p, b);
    }
    for (const auto& p : b.properties) {
      add(p, a);
    }
    std::stable_partition(props.begin(), props.end(), [](const property_rule& p) { return p.required; });
    o.properties = std::move(props);
    o.n_required = static_cast<int32_t>(std::count_if(
        o.properties.begin(), o.properties.end(), [](const property_rule& p) { return p.required; }));
    o.pattern_nodes = a.pattern_nodes.empty() ? b.pattern_nodes : a.pattern_nodes;
    o.patterns = a.pattern_nodes.empty() ? b.patterns : a.patterns;
    if (!a.pattern_nodes.empty()) {
      if (!b_plain) {
        refuse("allOf", ptr, "patternProperties intersected with additionalProperties");
      }
    } else if (!b.pattern_nodes.empty()) {
      if (!a_plain) {
        refuse("allOf", ptr, "patternProperties intersected with additionalProperties");
      }
    }
    o.additional = intersect(a.additional, b.additional, ptr);
    o.min_props = std::max(a.min_props, b.min_props);
    o.max_props = a.max_props < 0 ? b.max_props
                  : b.max_props < 0 ? a.max_props
                                    : std::min(a.max_props, b.max_props);
    if (a.key_rule >= 0 && b.key_rule >= 0) {
      refuse("propertyNames", ptr, "two propertyNames intersected");
    }
    o.key_rule = a.key_rule >= 0 ? a.key_rule : b.key_rule;
    return !failed_;
  }

  // -- the end ------------------------------------------------------------------

  /// Compiles the regexes, the object key sets and pattern combinations, and the
  /// shortest value of each node.
  result<void> finish() {
    std::vector<int32_t> compiled(rx_parts_.size(), -1);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      auto& n = g_.nodes[i];
      if (n.str.regex >= 0) {
        auto r = regex_index(n.str.regex, compiled);
        if (!r) {
          return r.err();
        }
        n.str.regex = *r;
      }
    }
    for (auto& k : g_.key_rules) {
      if (k.regex >= 0) {
        auto r = regex_index(k.regex, compiled);
        if (!r) {
          return r.err();
        }
        k.regex = *r;
      }
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (auto r = object_keys(i); !r) {
        return r;
      }
    }
    compute_min_bytes();
    return {};
  }

  result<int32_t> regex_index(int32_t parts_index, std::vector<int32_t>& compiled) {
    auto& c = compiled[static_cast<size_t>(parts_index)];
    if (c >= 0) {
      return c;
    }
    auto set = regex_set::compile(rx_parts_[static_cast<size_t>(parts_index)]);
    if (!set) {
      const std::string where = regex_where_[parts_index];
      fail("pattern", where, "the pattern at " + (where.empty() ? "/" : where) + " cannot be compiled: " +
                                 set.err().message);
      return error{why_.message};
    }
    g_.regexes.push_back(std::move(*set));
    c = static_cast<int32_t>(g_.regexes.size() - 1);
    return c;
  }

  result<void> object_keys(size_t i) {
    if (!(g_.nodes[i].types & jt_object) || !g_.nodes[i].any_of.empty()) {
      return {};
    }
    // copy: intersect() below may grow g_.nodes
    object_rule o = g_.nodes[i].obj;
    if (o.patterns.size() > k_max_pattern_properties) {
      fail("patternProperties", "", "more than " + std::to_string(k_max_pattern_properties) +
                                        " patternProperties in one object");
      return error{why_.message};
    }
    name_trie names;
    for (size_t k = 0; k < o.properties.size(); ++k) {
      names.add(o.properties[k].name, static_cast<int32_t>(k));
      o.properties[k].key_bytes = static_cast<int32_t>(
          json(o.properties[k].name).dump(-1, ' ', false, json::error_handler_t::replace).size());
    }
    std::vector<int32_t> combos;
    int32_t pattern_rx = -1;
    if (!o.patterns.empty()) {
      std::vector<regex_component> parts;
      for (const auto& src : o.patterns) {
        parts.push_back({src, regex_kind::search});
      }
      auto set = regex_set::compile(parts);
      if (!set) {
        fail("patternProperties", "", "a property pattern cannot be compiled: " + set.err().message);
        return error{why_.message};
      }
      pattern_rx = static_cast<int32_t>(g_.regexes.size());
      g_.regexes.push_back(*set);
      // a declared property whose name a pattern matches must match that pattern's schema
      for (auto& p : o.properties) {
        regex_state st = (*set)->start();
        for (unsigned char c : p.name) {
          st = st == k_dead ? k_dead : (*set)->next(st, c);
        }
        const uint64_t acc = st == k_dead ? 0 : (*set)->accept_mask(st);
        for (size_t q = 0; q < o.pattern_nodes.size(); ++q) {
          if (acc >> q & 1) {
            p.node = intersect(p.node, o.pattern_nodes[q], "");
          }
        }
      }
      const size_t n_combo = size_t{1} << o.pattern_nodes.size();
      combos.assign(n_combo, k_any_value);
      combos[0] = o.additional;
      for (size_t m = 1; m < n_combo; ++m) {
        int32_t node = k_any_value;
        for (size_t q = 0; q < o.pattern_nodes.size(); ++q) {
          if (m >> q & 1) {
            node = intersect(node, o.pattern_nodes[q], "");
          }
        }
        combos[m] = node;
      }
    }
    if (failed_) {
      return error{why_.message};
    }
    g_.name_tries.push_back(std::move(names));
    auto& dst = g_.nodes[i].obj;
    dst.properties = std::move(o.properties);
    dst.names = static_cast<int32_t>(g_.name_tries.size() - 1);
    dst.pattern_rx = pattern_rx;
    dst.pattern_combos = std::move(combos);
    return {};
  }

  void compute_min_bytes() {
    const size_t n = g_.nodes.size();
    g_.min_bytes.assign(n, k_infinite);
    auto cost = [&](int32_t node) {
      return node == k_any_value ? int64_t{1}
             : node == k_no_value ? k_infinite
                                  : g_.min_bytes[static_cast<size_t>(node)];
    };
    for (int round = 0; round < 64; ++round) {
      bool changed = false;
      for (size_t i = 0; i < n; ++i) {
        const auto& nd = g_.nodes[i];
        int64_t best = k_infinite;
        if (!nd.any_of.empty()) {
          for (int32_t a : nd.any_of) {
            best = std::min(best, cost(a));
          }
        } else {
          best = basic_min_bytes(nd, cost);
        }
        if (best < g_.min_bytes[i]) {
          g_.min_bytes[i] = best;
          changed = true;
        }
      }
      if (!changed) {
        break;
      }
    }
  }

  template <class Cost>
  int64_t basic_min_bytes(const schema_node& nd, Cost cost) {
    int64_t best = k_infinite;
    if (nd.types & jt_null) {
      best = std::min<int64_t>(best, 4);
    }
    if ((nd.types & jt_bool) && (nd.allow_true || nd.allow_false)) {
      best = std::min<int64_t>(best, nd.allow_true ? 4 : 5);
    }
    if (nd.types & (jt_number | jt_integer)) {
      const std::string s = smallest_number_text(nd);
      if (!s.empty()) {
        best = std::min<int64_t>(best, static_cast<int64_t>(s.size()));
      }
    }
    if (nd.types & jt_string) {
      int64_t body = nd.str.min_len;
      if (nd.str.regex >= 0) {
        const auto& rx = g_.regexes[static_cast<size_t>(nd.str.regex)];
        const int32_t d = rx->distance_to_accept(rx->start(), rx->all_mask());
        body = d < 0 ? k_infinite : std::max<int64_t>(d, nd.str.min_len * 4);
      }
      if (nd.str.max_len < 0 || nd.str.min_len <= nd.str.max_len) {
        best = std::min(best, 2 + body);
      }
    }
    if (nd.types & jt_array) {
      int64_t sum = 2;
      for (int64_t k = 0; k < nd.arr.min_items && sum < k_infinite; ++k) {
        const int32_t item = k < static_cast<int64_t>(nd.arr.prefix.size())
                                 ? nd.arr.prefix[static_cast<size_t>(k)]
                                 : nd.arr.items;
        sum += cost(item) + (k > 0 ? 1 : 0);
      }
      if (nd.arr.max_items < 0 || nd.arr.min_items <= nd.arr.max_items) {
        best = std::min(best, std::min(sum, k_infinite));
      }
    }
    if (nd.types & jt_object) {
      int64_t sum = 2;
      int64_t n_props = 0;
      for (const auto& p : nd.obj.properties) {
        if (p.required) {
          sum += static_cast<int64_t>(json(p.name).dump().size()) + 1 + cost(p.node) + (n_props ? 1 : 0);
          ++n_props;
        }
      }
      // more properties to reach minProperties: the cheapest optional ones
      std::vector<int64_t> extra;
      for (const auto& p : nd.obj.properties) {
        if (!p.required) {
          extra.push_back(static_cast<int64_t>(json(p.name).dump().size()) + 1 + cost(p.node));
        }
      }
      std::sort(extra.begin(), extra.end());
      for (size_t k = 0; n_props < nd.obj.min_props && k < extra.size(); ++k) {
        sum += extra[k] + (n_props ? 1 : 0);
        ++n_props;
      }
      if (n_props < nd.obj.min_props) {
        sum = k_infinite;  // additional keys would do, but are not worth modelling
      }
      best = std::min(best, std::min(sum, k_infinite));
    }
    return best;
  }

  /// The shortest number text the node accepts, or "" when none is found.
  static std::string smallest_number_text(const schema_node& nd) {
    const bool integer = !(nd.types & jt_number);
    const auto& r = nd.num;
    std::vector<double> tries = {0, 1, -1};
    if (r.has_min) {
      tries.push_back(integer ? std::ceil(r.min) : r.min);
      tries.push_back(std::floor(r.min) + 1);
    }
    if (r.has_max) {
      tries.push_back(integer ? std::floor(r.max) : r.max);
      tries.push_back(std::ceil(r.max) - 1);
    }
    if (r.has_min && r.has_max) {
      tries.push_back((r.min + r.max) / 2);
    }
    if (r.multiple_of > 0 && r.has_min) {
      tries.push_back(std::ceil(r.min / static_cast<double>(r.multiple_of)) *
                      static_cast<double>(r.multiple_of));
    }
    std::string best;
    for (double v : tries) {
      if (!std::isfinite(v) || (integer && std::floor(v) != v) || std::fabs(v) > 1e300) {
        continue;
      }
      if (r.has_min && (v < r.min || (r.min_exclusive && v == r.min))) {
        continue;
      }
      if (r.has_max && (v > r.max || (r.max_exclusive && v == r.max))) {
        continue;
      }
      if (r.multiple_of > 0 && std::fmod(v, static_cast<double>(r.multiple_of)) != 0) {
        continue;
      }
      std::string s = shortest_number(v, integer || std::floor(v) == v);
      if (s.find('e') != std::string::npos) {
        continue;
      }
      if (best.empty() || s.size() < best.size()) {
        best = std::move(s);
      }
    }
    return best;
  }

  // -- member variables ---------------------------------------------------------
  const json& doc_;
  json_grammar& g_;
  schema_options opts_;
  bool failed_ = false;
  schema_error why_;
  std::unordered_map<const json*, int32_t> memo_;
  std::vector<bool> done_;  // [nodes]: translated completely (intersections may read it)
  std::map<std::pair<int32_t, int32_t>, int32_t> meets_;
  std::set<std::pair<int32_t, int32_t>> meeting_;  // intersections under way
  static constexpr size_t k_max_meet_depth = 256;
  std::vector<std::vector<regex_component>> rx_parts_;
  std::map<int32_t, std::string> regex_where_;
  std::vector<std::string> pending_additional_;
  int64_t ref_depth_ = 0;
};

/// Deepest nesting of [ and { in JSON text, outside strings.
size_t nesting_depth(std::string_view text) {
  size_t depth = 0, most = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      most = std::max(most, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return most;
}

}  // namespace

void name_trie::add(std::string_view name, int32_t index) {
  int32_t at = 0;
  auto mark = [&](int32_t node, int32_t left) {
    if (index < 128) {
      below[static_cast<size_t>(node)][static_cast<size_t>(index / 64)] |= uint64_t{1} << (index % 64);
    }
    auto& d = to_end[static_cast<size_t>(node)];
    d = std::min(d, left);
  };
  const auto n = static_cast<int32_t>(name.size());
  mark(0, n);
  int32_t level = 0;
  for (unsigned char c : name) {
    int32_t to = next(at, c);
    if (to < 0) {
      to = static_cast<int32_t>(edges.size());
      edges[static_cast<size_t>(at)].push_back({c, to});
      edges.emplace_back();
      property.push_back(-1);
      below.push_back({0, 0});
      to_end.push_back(1 << 20);
      depth.push_back(depth[static_cast<size_t>(at)] + 1);
    }
    at = to;
    ++level;
    mark(at, n - level);
  }
  property[static_cast<size_t>(at)] = index;
}

int64_t json_grammar::min_value_bytes(int32_t node) const {
  if (node == k_any_value) {
    return 1;
  }
  if (node == k_no_value) {
    return k_infinite;
  }
  return min_bytes[static_cast<size_t>(node)];
}

result<std::shared_ptr<json_grammar>> compile_json_schema(std::string_view schema_json,
                                                          const schema_options& opts,
                                                          schema_error* why) {
  auto refuse = [&](std::string msg) -> result<std::shared_ptr<json_grammar>> {
    if (why) {
      *why = schema_error{"", "/", msg};
    }
    return error{std::move(msg)};
  };
  constexpr size_t k_max_depth = 256;
  if (nesting_depth(schema_json) > k_max_depth) {
    return refuse("the schema nests deeper than " + std::to_string(k_max_depth) + " levels");
  }
  const json doc = json::parse(schema_json, nullptr, false);
  if (doc.is_discarded()) {
    return refuse("the schema is not valid JSON");
  }
  auto g = std::make_shared<json_grammar>();
  g->options = opts;
  compiler c(doc, *g, opts);
  auto root = c.run();
  if (!root) {
    if (why) {
      *why = c.why();
    }
    return root.err();
  }
  g->root = *root;
  if (g->min_value_bytes(g->root) >= k_infinite) {
    if (why) {
      *why = schema_error{"", "/", "no JSON value matches the schema"};
    }
    return error{"no JSON value matches the schema"};
  }
  return g;
}

}  // namespace baton::grammar
