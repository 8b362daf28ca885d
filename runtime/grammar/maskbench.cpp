// MaskBench's protocol (see maskbench.hpp).
#include "runtime/grammar/maskbench.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/text/tokenizer.hpp"

namespace baton::grammar {

namespace {

using ojson = nlohmann::ordered_json;

/// Python's repr(float): the shortest digits that read back, fixed notation for decimal
/// exponents in [-4, 16), else d.ddde±XX.
std::string python_float(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "Infinity" : "-Infinity";
  }
  std::string digits;
  int exp10 = 0;
  for (int prec = 1; prec <= 17; ++prec) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (std::strtod(buf, nullptr) != v && prec < 17) {
      continue;
    }
    const std::string s = buf;
    const size_t e = s.find('e');
    exp10 = std::atoi(s.c_str() + e + 1);
    for (size_t i = 0; i < e; ++i) {
      if (s[i] >= '0' && s[i] <= '9') {
        digits += s[i];
      }
    }
    break;
  }
  while (digits.size() > 1 && digits.back() == '0') {
    digits.pop_back();
  }
  std::string out = std::signbit(v) ? "-" : "";
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 >= 0) {
      std::string whole = digits.substr(0, std::min<size_t>(digits.size(), static_cast<size_t>(exp10) + 1));
      whole.append(static_cast<size_t>(exp10) + 1 - whole.size(), '0');
      const std::string frac = digits.size() > static_cast<size_t>(exp10) + 1
                                   ? digits.substr(static_cast<size_t>(exp10) + 1)
                                   : "0";
      out += whole + "." + frac;
    } else {
      out += "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) {
    out += "." + digits.substr(1);
  }
  char e[16];
  std::snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return out + e;
}

void python_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void python_dump(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::null:
      out += "null";
      break;
    case ojson::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case ojson::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case ojson::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case ojson::value_t::number_float:
      out += python_float(v.get<double>());
      break;
    case ojson::value_t::string:
      python_string(v.get_ref<const std::string&>(), out);
      break;
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& x : v) {
        out += first ? "" : ", ";
        first = false;
        python_dump(x, out);
      }
      out += ']';
      break;
    }
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out += first ? "" : ", ";
        first = false;
        python_string(it.key(), out);
        out += ": ";
        python_dump(it.value(), out);
      }
      out += '}';
      break;
    }
    default:
      out += "null";
  }
}

double micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

result<std::string> python_json_dumps(const std::string& value_json) {
  const ojson v = ojson::parse(value_json, nullptr, false);
  if (v.is_discarded()) {
    return error{"not JSON"};
  }
  std::string out;
  python_dump(v, out);
  return out;
}

result<maskbench_file> run_maskbench(const std::string& path, const tokenizer& tok,
                                     std::shared_ptr<const token_trie> trie,
                                     const schema_options& opts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return error{"cannot read " + path};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const ojson doc = ojson::parse(ss.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("schema")) {
    return error{path + " is not a MaskBench test file (a JSON object with \"schema\")"};
  }
  maskbench_file r;
  r.path = path;
  std::vector<uint64_t> mask;
  const auto t0 = std::chrono::steady_clock::now();
  auto g = compile_json_schema(doc["schema"].dump(), opts, &r.why);
  if (!g) {
    r.ttfm_us = micros_since(t0);
    return r;
  }
  {
    json_constraint first(*g, trie);
    first.fill_mask(-1, mask);
  }
  r.ttfm_us = micros_since(t0);
  r.compiled = true;
  const auto tests = doc.find("tests");
  if (tests == doc.end() || !tests->is_array()) {
    return r;
  }
  for (size_t ti = 0; ti < tests->size(); ++ti) {
    const auto& t = (*tests)[ti];
    if (!t.is_object() || !t.contains("data") || !t.contains("valid")) {
      continue;
    }
    std::string text;
    python_dump(t["data"], text);
    const bool valid = t["valid"].is_boolean() && t["valid"].get<bool>();
    const auto ids = tok.encode(text, false, false);
    json_constraint c(*g, trie);
    bool accepted = true;
    size_t at = 0;
    for (; at < ids.size(); ++at) {
      const auto m0 = std::chrono::steady_clock::now();
      c.fill_mask(-1, mask);
      r.tbm_us.push_back(micros_since(m0));
      const auto id = static_cast<size_t>(ids[at]);
      const bool in_mask = mask[id / 64] >> (id % 64) & 1;
      const bool takes = c.commit(ids[at]);
      if (in_mask != takes) {
        r.notes.push_back("test " + std::to_string(ti) + ": token " + std::to_string(at) +
                          " in the mask " + (in_mask ? "yes" : "no") + " but commit " +
                          (takes ? "yes" : "no") + " (a matcher bug)");
      }
      if (!in_mask || !takes) {
        accepted = false;
        break;
      }
    }
    if (accepted && !c.complete()) {
      accepted = false;
    }
    ++r.n_tests;
    if (valid && !accepted) {
      ++r.validation_errors;
      r.notes.push_back("test " + std::to_string(ti) + " (valid) rejected at token " +
                        std::to_string(at) + " of " + std::to_string(ids.size()) + ": " +
                        text.substr(0, 200));
    } else if (!valid && accepted) {
      ++r.invalidation_errors;
      r.notes.push_back("test " + std::to_string(ti) + " (invalid) accepted: " + text.substr(0, 200));
    }
  }
  return r;
}

}  // namespace baton::grammar
