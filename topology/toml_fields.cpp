// toml_fields.hpp.
#include "topology/toml_fields.hpp"

#include <sstream>

namespace baton::toml_fields {

std::string value_text(const toml::node& n) {
  std::ostringstream ss;
  n.visit([&](auto&& v) { ss << v; });
  return ss.str();
}

int line_of(const toml::node& n) {
  return static_cast<int>(n.source().begin.line);
}

/// "cluster.toml:7: " (no line: "cluster.toml: ").
std::string at(const std::string& file, int line) {
  return line > 0 ? file + ":" + std::to_string(line) + ": " : file + ": ";
}

/// A TOML basic string.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

/// "string \"2\"", "integer 3", "a table": what a value is, for "got ..." in messages.
std::string describe_value(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array " + value_text(n);
    case toml::node_type::string:
      return "string " + quote(n.as_string()->get());
    case toml::node_type::integer:
      return "integer " + value_text(n);
    case toml::node_type::floating_point:
      return "float " + value_text(n);
    case toml::node_type::boolean:
      return "boolean " + value_text(n);
    default:
      return "date/time " + value_text(n);
  }
}

error field_ref::fail(const toml::node& n, const char* field, const std::string& what) const {
    std::string m = at(file, line_of(n));
    if (!owner.empty()) {
      m += owner + " ";
    }
    m += "field '" + std::string(field) + "': " + what;
    return error{std::move(m)};
}

error field_ref::wrong_type(const toml::node& n, const char* field, const char* expected) const {
    return fail(n, field, std::string("expected ") + expected + ", got " + describe_value(n));
}

/// Unknown keys are errors (typos must not pass silently); the first one in file order
/// is named with the keys that are known.
result<void> check_keys(const std::string& file, const toml::table& t,
                        std::initializer_list<std::string_view> known, const char* where,
                        const char* expected) {
  const toml::key* first = nullptr;
  for (auto&& [k, v] : t) {
    bool ok = false;
    for (auto name : known) {
      ok = ok || k.str() == name;
    }
    if (!ok && (!first || k.source().begin < first->source().begin)) {
      first = &k;
    }
  }
  if (first) {
    return make_error("%sunknown key '%s' %s (expected one of %s)",
                      at(file, static_cast<int>(first->source().begin.line)).c_str(),
                      std::string(first->str()).c_str(), where, expected);
  }
  return {};
}

/// An integer field in [lo, hi].
result<int64_t> get_int(const field_ref& ref, const toml::node& n, const char* field, int64_t lo,
                        int64_t hi, const std::string& range) {
  const auto* v = n.as_integer();
  if (!v) {
    return ref.wrong_type(n, field, "an integer");
  }
  const int64_t x = v->get();
  if (x < lo || x > hi) {
    return ref.fail(n, field, std::to_string(x) + " is out of range (expected " + range + ")");
  }
  return x;
}

result<std::string> get_string(const field_ref& ref, const toml::node& n, const char* field) {
  const auto* v = n.as_string();
  if (!v) {
    return ref.wrong_type(n, field, "a string");
  }
  return v->get();
}

result<toml::table> parse_document(std::string_view text, const std::string& name) {
  try {
    return toml::parse(text, std::string_view(name));
  } catch (const toml::parse_error& e) {
    return make_error("%sTOML syntax error: %s (column %u)",
                      at(name, static_cast<int>(e.source().begin.line)).c_str(),
                      std::string(e.description()).c_str(),
                      static_cast<unsigned>(e.source().begin.column));
  }
}

}  // namespace baton::toml_fields
