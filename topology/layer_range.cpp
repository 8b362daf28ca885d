// layer_range.hpp: parsing and even splitting of layer ranges.
#include "topology/layer_range.hpp"

#include <charconv>

namespace baton {

namespace {

bool parse_index(std::string_view s, int64_t& out) {
  while (!s.empty() && s.front() == ' ') {
    s.remove_prefix(1);
  }
  while (!s.empty() && s.back() == ' ') {
    s.remove_suffix(1);
  }
  if (s.empty()) {
    return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && out >= 0;
}

}  // namespace

std::string layer_range::to_string() const {
  if (automatic) {
    return "auto";
  }
  return std::to_string(first) + "-" + std::to_string(last - 1);
}

result<layer_range> parse_layer_range(std::string_view text) {
  std::string quoted = "'";
  quoted.append(text).append("'");
  if (text == "auto") {
    return layer_range{0, 0, true};
  }
  int64_t a = 0;
  int64_t b = 0;
  const auto dash = text.find('-');
  const bool ok = dash == std::string_view::npos
                      ? parse_index(text, a) && (b = a, true)
                      : parse_index(text.substr(0, dash), a) && parse_index(text.substr(dash + 1), b);
  if (!ok) {
    return make_error("%s: expected \"A-B\" (inclusive layer indices), \"A\" or \"auto\"",
                      quoted.c_str());
  }
  if (a > b) {
    return make_error("%s: first layer %lld is after last layer %lld", quoted.c_str(),
                      static_cast<long long>(a), static_cast<long long>(b));
  }
  return layer_range{a, b + 1, false};
}

result<std::vector<layer_range>> split_layers(int64_t n_layer, int64_t n_stages) {
  if (n_stages < 1 || n_stages > n_layer) {
    return make_error("stages (%lld) must be between 1 and the model's layer count (%lld)",
                      static_cast<long long>(n_stages), static_cast<long long>(n_layer));
  }
  std::vector<layer_range> out;
  int64_t first = 0;
  for (int64_t s = 0; s < n_stages; ++s) {
    const int64_t n = n_layer / n_stages + (s < n_layer % n_stages ? 1 : 0);
    out.push_back({first, first + n, false});
    first += n;
  }
  return out;
}

}  // namespace baton
