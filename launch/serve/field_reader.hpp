// Reading the fields of a hostile JSON request body: `field_reader` checks a value's
// type, and an integer's range on the int64 or uint64 nlohmann holds, before converting
// it, and keeps the first bad field as an api_error naming it; `shown` and `excerpt`
// describe a value in a message without copying megabytes or invalid UTF-8 into it.
// Shared by the completion parser (openai_api) and /tokenize (tokenize_api), so that
// every refusal reads the same way. Nothing here throws on any JSON value.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "launch/serve/openai_api.hpp"

namespace baton::api {

/// A 400 invalid_request_error naming `param`.
api_error invalid(const std::string& param, const std::string& message);

/// A value as a message shows it: numbers and booleans as JSON spells them, anything
/// else by its type ("a string", "an array"): a string may be megabytes long, or not UTF-8.
std::string shown(const nlohmann::json& v);

/// `s` cut to at most `n` bytes at a character boundary, in quotes, for messages.
std::string excerpt(const std::string& s, size_t n = 40);

/// Reads the fields of one JSON object; the first bad field is kept as `error()` and
/// every later read returns nothing. Absent and null both mean "the default".
class field_reader {
 public:
  /// `prefix` is how the object's fields are named ("stream_options.").
  explicit field_reader(const nlohmann::json& object, std::string prefix = "")
      : object_(object), prefix_(std::move(prefix)) {}

  const std::optional<api_error>& error() const { return error_; }

  /// Keeps `message` as the error unless one is held already.
  void fail(const std::string& param, const std::string& message);

  /// The field, unless it is absent or null or an error is held.
  const nlohmann::json* find(const char* key) const;

  /// An integer in [lo, hi]; floats such as 5.0 are refused, as any non-integer.
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi);
  /// A number (integer or not) in [lo, hi].
  std::optional<double> number(const char* key, double lo, double hi);
  std::optional<bool> boolean(const char* key);
  std::optional<std::string> string(const char* key);

 private:
  // -- member variables -------------------------------------------------------
  const nlohmann::json& object_;
  std::string prefix_;
  std::optional<api_error> error_;
};

}  // namespace baton::api
