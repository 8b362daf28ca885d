// Sizes in bytes as people write and read them: parse_bytes for flags and topology
// files ("2GiB", "512M"), format_bytes for messages and logs ("1.50 GiB"). Apart from
// budget.cpp because every layer that names a size uses them, not only the budget.
#include "runtime/system/units.hpp"

#include <cctype>
#include <cmath>
#include <stdexcept>
#include <cstdio>
#include <algorithm>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>

namespace baton {

std::string format_bytes(uint64_t n) {
  char buf[48];
  constexpr double kib = 1024.0;
  auto x = static_cast<double>(n);
  if (x >= kib * kib * kib) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", x / (kib * kib * kib));
  } else if (x >= kib * kib) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", x / (kib * kib));
  } else if (x >= kib) {
    std::snprintf(buf, sizeof(buf), "%.2f KiB", x / kib);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

result<uint64_t> parse_bytes(std::string_view text) {
  // Strictly "<digits>[.<digits>] [unit]": no sign, exponent, hex, inf or nan, so "1e3GiB"
  // is an error rather than a terabyte, and integers are exact to the last byte (a double
  // would round 2^53 + 1).
  constexpr const char* expected =
      "expected a size > 0 (bytes, or a number with K, M, G, T, KiB, MiB, GiB, TiB)";
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && text[i] == ' ') {
      ++i;
    }
  };
  auto is_digit = [&](size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  skip_spaces();
  const size_t int_begin = i;
  while (is_digit(i)) {
    ++i;
  }
  const std::string_view int_digits = text.substr(int_begin, i - int_begin);
  std::string_view frac_digits;
  if (i < text.size() && text[i] == '.') {
    const size_t frac_begin = ++i;
    while (is_digit(i)) {
      ++i;
    }
    frac_digits = text.substr(frac_begin, i - frac_begin);
  }
  if (int_digits.empty() && frac_digits.empty()) {
    return make_error("%s", expected);
  }
  skip_spaces();
  std::string unit(text.substr(i));
  while (!unit.empty() && unit.back() == ' ') {
    unit.pop_back();
  }
  for (auto& ch : unit) {
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  int shift = 0;  // the unit is 2^shift bytes
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    shift = 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    shift = 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    shift = 30;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    shift = 40;
  } else {
    return make_error("unknown unit '%s' (expected K, M, G, T, KiB, MiB, GiB, TiB)", unit.c_str());
  }
  const std::string shown(text);
  const auto too_large = [&] {
    return make_error("'%s' is more than 2^64 - 1 bytes", shown.c_str());
  };
  uint64_t whole = 0;
  for (char ch : int_digits) {
    if (__builtin_mul_overflow(whole, uint64_t{10}, &whole) ||
        __builtin_add_overflow(whole, static_cast<uint64_t>(ch - '0'), &whole)) {
      return too_large();
    }
  }
  if (whole > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return too_large();
  }
  // the fraction of the unit in whole bytes, floor(num / den x 2^shift), by long division
  // one bit at a time (exact: num < den <= 10^18, so 2 x the remainder fits); digits past
  // the 18th move the product by less than 2^40 x 10^-18 bytes, and are dropped
  uint64_t num = 0;
  uint64_t den = 1;
  for (size_t k = 0; k < frac_digits.size() && k < 18; ++k) {
    num = num * 10 + static_cast<uint64_t>(frac_digits[k] - '0');
    den *= 10;
  }
  uint64_t frac = 0;
  for (int bit = 0; bit < shift; ++bit) {
    num *= 2;
    frac = frac * 2 + (num >= den ? 1 : 0);
    num = num >= den ? num - den : num;
  }
  uint64_t bytes = 0;
  if (__builtin_add_overflow(whole << shift, frac, &bytes)) {
    return too_large();
  }
  if (bytes == 0) {
    return make_error("%s; '%s' is less than one byte", expected, shown.c_str());
  }
  return bytes;
}

result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  const std::string t(text);
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = used > 0 ? t.substr(used) : std::string();
  const double scale = unit == "ms" ? 1.0 : unit.empty() || unit == "s" ? 1000.0
                       : unit == "m"                                 ? 60000.0
                                                                     : -1.0;
  const double ms = x * scale;
  if (used == 0 || scale < 0 || !(ms >= 1.0) || ms > 86400000.0 ||
      !std::isdigit(static_cast<unsigned char>(t[0]))) {
    return make_error("'%s' is not a duration: expected a positive number with ms, s or m "
                      "(\"30s\", \"500ms\"), at least 1 ms and at most a day",
                      t.c_str());
  }
  return std::chrono::milliseconds(static_cast<int64_t>(ms + 0.5));
}

namespace {

/// "<number><unit>" with a plain decimal number (no sign, exponent, inf or nan) and the
/// unit's scale from `units`; nothing when it is not that.
std::optional<double> scaled(std::string_view text,
                             std::initializer_list<std::pair<std::string_view, double>> units) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  const std::string number(text.substr(0, i));
  if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1) {
    return std::nullopt;
  }
  std::string_view unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') {
    unit.remove_prefix(1);
  }
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      return std::stod(number) * scale;
    }
  }
  return std::nullopt;
}

}  // namespace

result<double> parse_seconds(std::string_view text) {
  const auto s = scaled(text, {{"", 1.0}, {"s", 1.0}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}});
  if (!s || *s > 3600.0) {
    return make_error("'%s' is not a latency: expected a number >= 0 with us, ms or s "
                      "(\"8us\", \"1.5ms\"), at most an hour",
                      std::string(text).c_str());
  }
  return *s;
}

result<double> parse_rate(std::string_view text) {
  const auto r = scaled(text, {{"B/s", 1.0}, {"KB/s", 1e3}, {"MB/s", 1e6}, {"GB/s", 1e9},
                               {"TB/s", 1e12}, {"bit/s", 0.125}, {"Kbit/s", 125.0},
                               {"Mbit/s", 1.25e5}, {"Gbit/s", 1.25e8}, {"Tbit/s", 1.25e11}});
  if (!r || !(*r > 0) || !std::isfinite(*r)) {
    return make_error("'%s' is not a bandwidth: expected a number > 0 with B/s, KB/s, MB/s, "
                      "GB/s, TB/s or bit/s, Kbit/s, Mbit/s, Gbit/s, Tbit/s (\"100Gbit/s\", "
                      "\"450GB/s\")",
                      std::string(text).c_str());
  }
  return *r;
}

}  // namespace baton
