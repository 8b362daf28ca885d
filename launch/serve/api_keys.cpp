// api_keys.hpp: trimming and loading keys from flags and a key file (blank lines and # comments
// skipped, an empty key refused), and the Bearer check, which compares the presented key with
// every key in time that depends only on the lengths.
#include "launch/serve/api_keys.hpp"

#include <cctype>
#include <filesystem>
#include <fstream>

namespace baton::api {

namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
  };
  while (!s.empty() && space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

/// Equal in time that depends on the lengths only, never on where the bytes differ.
bool same_key(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

result<api_keys> api_keys::load(const std::vector<std::string>& flag_keys,
                                const std::string& key_file) {
  api_keys out;
  for (const auto& k : flag_keys) {
    const auto t = trim(k);
    if (t.empty()) {
      return make_error("--api-key: an empty key would let every client in; give a key, or "
                        "leave the flag out to serve without keys");
    }
    out.keys_.emplace_back(t);
  }
  if (!key_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(key_file, ec)) {
      return make_error("--api-key-file %s: not a readable regular file", key_file.c_str());
    }
    std::ifstream in(key_file);
    if (!in) {
      return make_error("--api-key-file %s: cannot read it", key_file.c_str());
    }
    size_t n = 0;
    for (std::string line; std::getline(in, line);) {
      const auto t = trim(line);
      if (t.empty() || t.front() == '#') {
        continue;
      }
      out.keys_.emplace_back(t);
      ++n;
    }
    if (n == 0) {
      return make_error("--api-key-file %s: holds no key (blank lines and # comments are "
                        "skipped); an empty key file would let every client in",
                        key_file.c_str());
    }
  }
  return out;
}

bool api_keys::accepts(std::string_view authorization, std::string* key) const {
  auto a = trim(authorization);
  constexpr std::string_view scheme = "bearer";
  if (a.size() < scheme.size()) {
    return false;
  }
  for (size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != scheme[i]) {
      return false;
    }
  }
  a.remove_prefix(scheme.size());
  if (a.empty() || (a.front() != ' ' && a.front() != '\t')) {
    return false;
  }
  const auto presented = trim(a);
  bool found = false;
  for (const auto& k : keys_) {  // every key compared, whichever matches
    found = same_key(presented, k) || found;
  }
  if (found && key != nullptr) {
    *key = std::string(presented);
  }
  return found;
}

}  // namespace baton::api
