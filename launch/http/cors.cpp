// cors.hpp: reading the flags' lists, and Starlette's rules for answers and preflights.
#include "launch/http/cors.hpp"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace baton::http {

namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

/// The entries of a comma-separated list, trimmed, empty ones skipped.
std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto comma = s.find(',');
    const auto item = trimmed(s.substr(0, comma));
    if (!item.empty()) {
      out.emplace_back(item);
    }
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
  }
  return out;
}

/// A flag's value as a list: '["a", "b"]' (vLLM's JSON) or "a, b".
result<std::vector<std::string>> read_list(const char* flag, const std::string& value) {
  const auto v = trimmed(value);
  if (v.empty() || v.front() != '[') {
    return split(v);
  }
  const auto j = nlohmann::json::parse(v, nullptr, false);
  if (!j.is_array()) {
    return make_error("%s %s: not a JSON list (expected '[\"a\", \"b\"]' or a comma-separated "
                      "list)", flag, value.c_str());
  }
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string()) {
      return make_error("%s %s: every entry must be a string", flag, value.c_str());
    }
    const auto s = trimmed(e.get_ref<const std::string&>());
    if (!s.empty()) {
      out.emplace_back(s);
    }
  }
  return out;
}

/// An HTTP token (RFC 9110's tchar), which method and header names are.
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                  std::string_view::npos;
  });
}

/// `*`, or scheme://host[:port] as a browser's Origin header spells one: no path, no
/// wildcard, no whitespace.
bool is_origin(std::string_view s) {
  if (s == "*") {
    return true;
  }
  const auto sep = s.find("://");
  if (sep == std::string_view::npos || sep == 0 || sep + 3 == s.size()) {
    return false;
  }
  const auto scheme = s.substr(0, sep);
  const auto host = s.substr(sep + 3);
  const bool scheme_ok = std::isalpha(static_cast<unsigned char>(scheme[0])) &&
                         std::all_of(scheme.begin(), scheme.end(), [](unsigned char c) {
                           return std::isalnum(c) || c == '+' || c == '-' || c == '.';
                         });
  const bool host_ok = std::none_of(host.begin(), host.end(), [](unsigned char c) {
    return c == '/' || c == '*' || c == '?' || c == '#' || std::isspace(c) || c < 0x20;
  });
  return scheme_ok && host_ok;
}

bool contains(const std::vector<std::string>& list, const std::string& x) {
  return std::find(list.begin(), list.end(), x) != list.end();
}

std::string joined(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& s : list) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

/// Starlette's expansion of `*` for Access-Control-Allow-Methods.
const std::vector<std::string> k_all_methods = {"DELETE", "GET",  "HEAD", "OPTIONS",
                                                "PATCH",  "POST", "PUT"};
/// Request headers a browser never asks leave for (CORS-safelisted).
const std::vector<std::string> k_safelisted = {"accept", "accept-language", "content-language",
                                               "content-type"};

}  // namespace

result<cors_policy> cors_policy::parse(const std::string& origins, const std::string& methods,
                                       const std::string& headers, bool credentials) {
  cors_policy p;
  p.credentials_ = credentials;
  auto o = read_list("--allowed-origins", origins);
  auto m = read_list("--allowed-methods", methods);
  auto h = read_list("--allowed-headers", headers);
  if (!o || !m || !h) {
    return !o ? o.err() : !m ? m.err() : h.err();
  }
  for (const auto& s : *o) {
    if (!is_origin(s)) {
      return make_error("--allowed-origins: '%s' is not an origin (expected * or "
                        "scheme://host[:port] without a path, as http://localhost:3000)",
                        s.c_str());
    }
  }
  for (const auto& s : *m) {
    if (!is_token(s)) {
      return make_error("--allowed-methods: '%s' is not an HTTP method (or *)", s.c_str());
    }
    p.methods_.push_back(upper(s));
  }
  for (const auto& s : *h) {
    if (!is_token(s)) {
      return make_error("--allowed-headers: '%s' is not a header name (or *)", s.c_str());
    }
    p.headers_.push_back(lower(s));
  }
  p.origins_ = std::move(*o);
  return p;
}

bool cors_policy::allows_origin(std::string_view origin) const {
  if (origin.empty()) {
    return false;
  }
  const std::string o = lower(origin);
  // a wildcard with credentials echoes the origin: only a well-formed one ("null", sent by
  // sandboxed pages and files, would hand them the user's credentials)
  const bool wildcard_ok = !credentials_ || (origin != "*" && is_origin(origin));
  return std::any_of(origins_.begin(), origins_.end(), [&](const std::string& a) {
    return (a == "*" && wildcard_ok) || lower(a) == o;
  });
}

header_list cors_policy::response_headers(std::string_view origin) const {
  if (!enabled() || !allows_origin(origin)) {
    return {};
  }
  header_list h;
  // a wildcard answers `*` unless credentials are allowed: browsers refuse `*` with them
  if (contains(origins_, "*") && !credentials_) {
    h.emplace_back("Access-Control-Allow-Origin", "*");
  } else {
    h.emplace_back("Access-Control-Allow-Origin", std::string(origin));
  }
  if (credentials_) {
    h.emplace_back("Access-Control-Allow-Credentials", "true");
  }
  h.emplace_back("Vary", "Origin");
  return h;
}

preflight_answer cors_policy::preflight(std::string_view origin, std::string_view method,
                                        std::string_view request_headers) const {
  preflight_answer a;
  if (!allows_origin(origin)) {
    a.status = 400;
    a.message = "CORS preflight: the origin is not allowed (see --allowed-origins)";
    return a;
  }
  const std::string m = upper(trimmed(method));
  if (!contains(methods_, "*") && !contains(methods_, m)) {
    a.status = 400;
    a.message = "CORS preflight: method " + m + " is not allowed (see --allowed-methods)";
    return a;
  }
  const auto asked = split(request_headers);
  if (!contains(headers_, "*")) {
    for (const auto& name : asked) {
      const std::string n = lower(name);
      if (!contains(headers_, n) && !contains(k_safelisted, n)) {
        a.status = 400;
        a.message = "CORS preflight: header " + n + " is not allowed (see --allowed-headers)";
        return a;
      }
    }
  }
  a.headers = response_headers(origin);
  a.headers.emplace_back("Access-Control-Allow-Methods",
                         joined(contains(methods_, "*") ? k_all_methods : methods_));
  // `*` echoes the names asked for (with credentials a literal `*` is not honoured)
  std::vector<std::string> echoed;
  for (const auto& name : asked) {
    if (is_token(name)) {
      echoed.push_back(lower(name));
    }
  }
  const std::string allowed = contains(headers_, "*") ? joined(echoed) : joined(headers_);
  if (!allowed.empty()) {
    a.headers.emplace_back("Access-Control-Allow-Headers", allowed);
  }
  a.headers.emplace_back("Access-Control-Max-Age", "600");
  return a;
}

}  // namespace baton::http
