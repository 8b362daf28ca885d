// What the TOML files baton reads (topology files, cluster descriptions) share: where a
// node is ("cluster.toml:7: "), what a value is for a message ("string \"2\"", "a table"),
// unknown keys refused by name, and typed fields whose errors name the file, line, owner
// and field.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <toml++/toml.h>

#include "runtime/system/error.hpp"

namespace baton::toml_fields {

int line_of(const toml::node& n);

/// "cluster.toml:7: " (no line: "cluster.toml: ").
std::string at(const std::string& file, int line);

/// A TOML basic string.
std::string quote(const std::string& s);

/// A value as TOML writes it: "\"2\"", "0.5", "[1, 2]".
std::string value_text(const toml::node& n);

/// "string \"2\"", "integer 3", "a table": what a value is, for "got ..." in messages.
std::string describe_value(const toml::node& n);

/// The part of a field's message that names where it is: "stage 2 field 'layers'".
struct field_ref {
  const std::string& file;
  std::string owner;  ///< "stage 2", "[pipeline]" or "" at the top level

  error fail(const toml::node& n, const char* field, const std::string& what) const;
  error wrong_type(const toml::node& n, const char* field, const char* expected) const;
};

/// Unknown keys are errors (typos must not pass silently); the first one in file order
/// is named with the keys that are known.
result<void> check_keys(const std::string& file, const toml::table& t,
                        std::initializer_list<std::string_view> known, const char* where,
                        const char* expected);

/// An integer field in [lo, hi].
result<int64_t> get_int(const field_ref& ref, const toml::node& n, const char* field, int64_t lo,
                        int64_t hi, const std::string& range);

result<std::string> get_string(const field_ref& ref, const toml::node& n, const char* field);

/// A whole document; a syntax error names the file, line and column.
result<toml::table> parse_document(std::string_view text, const std::string& name);

}  // namespace baton::toml_fields
