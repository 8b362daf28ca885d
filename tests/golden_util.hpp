// What the tests against ../shared/golden (llama.cpp's outputs on the shared tiny models)
// share: the model variants with their error bounds — the same for every backend — and
// reading and comparing logits.
#pragma once

#include <cmath>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "runtime/model/quantize.hpp"
#include "tests/test_util.hpp"

namespace baton::test {

struct golden_variant {
  const char* name;       ///< golden folder: tiny-<name>
  double bound_kv_f32;    ///< relative L2 bound on logits with f32 KV
  double bound_kv_f16;    ///< with f16 KV
};

/// How GoogleTest prints a variant in test names' parameters: its name, not its bytes.
inline void PrintTo(const golden_variant& v, std::ostream* os) { *os << v.name; }

inline constexpr golden_variant golden_variants[] = {
    {"q8_0-deq-f32", 1e-5, 5e-2}, {"q8_0-deq-f16", 2e-3, 5e-2}, {"q8_0", 5e-2, 5e-2},
    {"q4_0", 5e-2, 5e-2},         {"q4_k_m", 5e-2, 5e-2},
};

/// The shared model a variant comes from: tiny-q8_0 for its F32/F16 conversions.
inline std::string golden_source(const std::string& name) {
  return name.rfind("q8_0-deq-", 0) == 0 ? "q8_0" : name;
}

/// The model file for a variant: shared, or converted from tiny-q8_0 once per run by
/// baton's converter (weights then identical to llama.cpp's conversion).
inline std::string golden_model_path(const std::filesystem::path& shared, const std::string& name) {
  if (golden_source(name) == name) {
    return (shared / "models" / ("tiny-" + name + ".gguf")).string();
  }
  static const auto dir = temp_dir("golden-models");
  const auto out = (dir / ("tiny-" + name + ".gguf")).string();
  if (!std::filesystem::exists(out)) {
    quantize_options o;
    o.target = *parse_ftype(name.substr(9));  // f32 / f16
    auto r = quantize_model((shared / "models/tiny-q8_0.gguf").string(), out, o);
    if (!r) {
      std::fprintf(stderr, "converting tiny-q8_0 to %s: %s\n", name.c_str(), r.err().message.c_str());
    }
  }
  return out;
}

/// float32 little-endian logits.
inline std::vector<float> read_logits(const std::filesystem::path& p) {
  const std::string b = slurp(p);
  std::vector<float> v(b.size() / sizeof(float));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

/// ‖a − ref‖ / ‖ref‖
inline double rel_l2(std::span<const float> a, std::span<const float> ref) {
  double e = 0, n = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    n += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(e / n);
}

}  // namespace baton::test
