// A JSON Schema compiled into the grammar the JSON matcher runs: a graph of nodes, one
// per schema (recursion through $ref becomes a cycle), each saying which JSON types a
// value may take and, per type, what constrains it. allOf is merged into one node, anyOf
// and oneOf become unions, enum and const become unions of exact values, and string
// constraints (pattern, format, enum literals, property names) become regex_sets.
//
// A keyword the grammar cannot enforce (not, if/then/else, uniqueItems, ...) is, with
// `strict`, an error naming the keyword and its JSON pointer; without it, a warning with
// the same text, and the keyword is left out (the output may then violate it).
// Annotations (title, description, default, examples, unknown keywords) are ignored.
// oneOf is read as anyOf: the grammar does not check that only one branch matches.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/grammar/regex.hpp"
#include "runtime/system/error.hpp"

namespace baton::grammar {

/// Bits of `schema_node::types`.
enum json_type : uint8_t {
  jt_null = 1,
  jt_bool = 2,
  jt_object = 4,
  jt_array = 8,
  jt_string = 16,
  jt_number = 32,   ///< any number (integer or not)
  jt_integer = 64,  ///< an integer only (a subset of numbers: set without jt_number)
  jt_any = 127,
};

/// A node reference: an index into json_grammar::nodes, or one of these.
inline constexpr int32_t k_any_value = -1;  ///< any JSON value
inline constexpr int32_t k_no_value = -2;   ///< no value is allowed (false schema)

struct string_rule {
  int64_t min_len = 0;   ///< code points
  int64_t max_len = -1;  ///< -1: no bound
  int32_t regex = -1;    ///< index into json_grammar::regexes; every component must match
};

struct number_rule {
  bool has_min = false, has_max = false;
  bool min_exclusive = false, max_exclusive = false;
  double min = 0, max = 0;
  int64_t multiple_of = 0;  ///< integers only; 0: none
};

struct property_rule {
  std::string name;
  int32_t node = k_any_value;
  bool required = false;
  int32_t key_bytes = 0;  ///< the name as a JSON string, quotes included
};

/// Declared property names as a byte trie; node 0 is the root.
struct name_trie {
  struct edge {
    uint8_t byte;
    int32_t to;
  };
  std::vector<std::vector<edge>> edges = {{}};  ///< [n_nodes]
  std::vector<int32_t> property = {-1};         ///< [n_nodes]: property ending here, or -1
  /// [n_nodes]: bits of the properties (first 128) whose names pass through the node
  std::vector<std::array<uint64_t, 2>> below = {{0, 0}};
  /// [n_nodes]: fewest bytes from the node to the end of some property's name
  std::vector<int32_t> to_end = {1 << 20};
  std::vector<int32_t> depth = {0};  ///< [n_nodes]

  /// The node after `byte`, or -1.
  int32_t next(int32_t at, uint8_t byte) const {
    for (const auto& e : edges[static_cast<size_t>(at)]) {
      if (e.byte == byte) {
        return e.to;
      }
    }
    return -1;
  }
  void add(std::string_view name, int32_t index);
};

struct object_rule {
  std::vector<property_rule> properties;  ///< required ones first
  std::vector<std::string> patterns;      ///< patternProperties' regexes, in order
  std::vector<int32_t> pattern_nodes;     ///< [patterns]
  /// [1 << patterns.size()]: the node a value must match when exactly the patterns in
  /// the index's bits match its key (their intersection); [0] is `additional`
  std::vector<int32_t> pattern_combos;
  int32_t additional = k_any_value;
  int32_t names = -1;     ///< json_grammar::name_tries index (declared names)
  int32_t pattern_rx = -1;  ///< regex_set: one component per pattern
  int32_t n_required = 0;
  int64_t min_props = 0, max_props = -1;
  int32_t key_rule = -1;  ///< propertyNames as a json_grammar::key_rules index; -1: any
};

struct array_rule {
  std::vector<int32_t> prefix;  ///< prefixItems (or draft-4 tuple items)
  int32_t items = k_any_value;  ///< items after the prefix
  int64_t min_items = 0, max_items = -1;
};

struct schema_node {
  uint8_t types = jt_any;
  bool allow_true = true, allow_false = true;
  string_rule str;
  number_rule num;
  object_rule obj;
  array_rule arr;
  /// Non-empty: the node is the union of these (and the fields above are unused).
  std::vector<int32_t> any_of;
};

/// What compile_json_schema refuses, in parts the HTTP layer can show.
struct schema_error {
  std::string keyword;  ///< "not", "$ref", "pattern"; empty for a schema that is not JSON
  std::string pointer;  ///< JSON pointer of the schema object holding it ("/properties/a")
  std::string message;  ///< the whole sentence, naming both
};

struct schema_options {
  bool strict = true;
  /// Whitespace bytes allowed between two tokens of the document (JSON allows any
  /// number; a model must not be able to pad forever).
  int32_t max_whitespace = 24;
  int32_t max_int_digits = 32;
  int32_t max_frac_digits = 32;
};

class mask_cache;

class json_grammar {
 public:
  std::vector<schema_node> nodes;
  std::vector<string_rule> key_rules;  ///< propertyNames
  std::vector<name_trie> name_tries;
  std::vector<std::shared_ptr<regex_set>> regexes;
  int32_t root = k_any_value;
  schema_options options;
  /// Keywords left out without `strict` ("uniqueItems at /properties/tags").
  std::vector<std::string> warnings;
  /// Fewest bytes of a value matching each node ([nodes.size()]); a large value when
  /// no finite value exists.
  std::vector<int64_t> min_bytes;
  /// Token masks already computed for this grammar (token_mask.hpp), shared by every
  /// sequence it constrains. Filled as masks are asked for, so like the regexes' lazy
  /// DFAs it makes the grammar not thread-safe.
  mutable std::shared_ptr<mask_cache> masks;

  int64_t min_value_bytes(int32_t node) const;
};

/// Compiles a schema given as JSON text. `{"type": "json_object"}`-mode callers pass
/// `{"type": "object"}`; `{}` or `true` allows any JSON value.
result<std::shared_ptr<json_grammar>> compile_json_schema(std::string_view schema_json,
                                                          const schema_options& opts,
                                                          schema_error* why = nullptr);

}  // namespace baton::grammar
