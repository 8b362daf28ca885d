// The API keys of `baton serve` (--api-key, --api-key-file): one parsing rule for flags
// and files, a refusal to start on a key set that would let everyone in, and a
// constant-time check of an Authorization header.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton::api {

/// The keys of --api-key and --api-key-file; compared in constant time.
class api_keys {
 public:
  /// One rule for flags and files: surrounding whitespace (CR included) is trimmed;
  /// in a file, blank lines and lines starting with '#' are skipped. An empty key, or
  /// a file with none, is an error naming the flag: it would otherwise let everyone in.
  static result<api_keys> load(const std::vector<std::string>& flag_keys,
                               const std::string& key_file);
  bool required() const { return !keys_.empty(); }
  /// Whether `authorization` ("Bearer <key>") carries one of the keys; its key in `key`.
  bool accepts(std::string_view authorization, std::string* key) const;

 private:
  // -- member variables -------------------------------------------------------
  std::vector<std::string> keys_;
};

}  // namespace baton::api
