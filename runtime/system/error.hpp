// Errors users can cause (a bad file, a bad flag, a bad request) travel as values:
// `result<T>` holds either a T or an `error` whose message names the file, field or
// value and what was expected. Invariants of the program itself abort instead
// (BATON_ASSERT), in every build.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace baton {

/// An error a caller can cause, with a message fit for the user.
struct error {
  std::string message;
};

/// Either a value or an error; the project's `expected`.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : state_(std::move(value)) {}       // NOLINT: implicit by design
  result(error err) : state_(std::move(err)) {}       // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const error& err() const { return std::get<1>(state_); }

 private:
  // -- member variables -------------------------------------------------------
  std::variant<T, error> state_;
};

/// result<void>: success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(error err) : err_(std::move(err)), failed_(true) {}  // NOLINT: implicit

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const error& err() const { return err_; }

 private:
  // -- member variables -------------------------------------------------------
  error err_;
  bool failed_ = false;
};

/// Builds an error from printf-style arguments.
template <class... Ts>
error make_error(const char* fmt, Ts&&... xs) {
  if constexpr (sizeof...(Ts) == 0) {
    return error{fmt};
  } else {
    int n = std::snprintf(nullptr, 0, fmt, xs...);
    std::string s(static_cast<size_t>(n > 0 ? n : 0), '\0');
    std::snprintf(s.data(), s.size() + 1, fmt, xs...);
    return error{std::move(s)};
  }
}

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "baton: invariant violated: %s (%s:%d)\n", expr, file, line);
  std::abort();
}

}  // namespace baton

/// Invariants abort in every build, as GGML_ASSERT does.
#define BATON_ASSERT(x)                                  \
  do {                                                   \
    if (!(x)) ::baton::assert_fail(#x, __FILE__, __LINE__); \
  } while (0)
