// Reading the small text files of /proc and of cgroup hierarchies: whole-file reads,
// trimming, splitting, strict integers and quoted excerpts for messages. Shared by
// cgroup.cpp and budget.cpp, and internal to runtime/system/ (namespace `system_detail`).
#pragma once

#include <cctype>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace baton::system_detail {

/// The whole file, or nothing when it cannot be opened.
inline std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) {
    ++b;
  }
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

/// A quoted excerpt of a bad value for messages, cut so a binary file cannot flood a log.
inline std::string quoted(std::string_view s) {
  std::string t = trim(s);
  if (t.size() > 40) {
    t = t.substr(0, 40) + "...";
  }
  for (char& c : t) {
    if (!std::isprint(static_cast<unsigned char>(c))) {
      c = '?';
    }
  }
  return "\"" + t + "\"";
}

template <class T>
inline std::optional<T> parse_int(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) {
    return std::nullopt;
  }
  return v;
}

inline std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) {
      return out;
    }
    start = pos + 1;
  }
}

/// Words separated by runs of spaces.
inline std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream ss{std::string(s)};
  std::string w;
  while (ss >> w) {
    out.push_back(w);
  }
  return out;
}

/// "/a/b/" -> "/a/b"; "/" stays.
inline std::string strip_trailing_slash(std::string s) {
  while (s.size() > 1 && s.back() == '/') {
    s.pop_back();
  }
  return s;
}

}  // namespace baton::system_detail
