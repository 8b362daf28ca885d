// Type table of ggml_type.hpp. Block layouts follow ggml-common.h: e.g. Q4_K is
// {f16 d, f16 dmin, u8 scales[12], u8 qs[128]} = 144 bytes per 256 elements.
#include "kernels/ggml_type.hpp"

#include <array>
#include <cctype>
#include <cstdlib>
#include <string>

namespace baton {

namespace {

struct entry {
  uint32_t id;
  ggml_type_traits traits;
};

// name, block elements, block bytes, quantized, dequantizable
constexpr std::array<entry, 32> table{{
    {0, {"f32", 1, 4, false, true}},
    {1, {"f16", 1, 2, false, true}},
    {2, {"q4_0", 32, 18, true, true}},
    {3, {"q4_1", 32, 20, true, false}},
    {6, {"q5_0", 32, 22, true, false}},
    {7, {"q5_1", 32, 24, true, false}},
    {8, {"q8_0", 32, 34, true, true}},
    {9, {"q8_1", 32, 36, true, false}},
    {10, {"q2_K", 256, 84, true, false}},
    {11, {"q3_K", 256, 110, true, false}},
    {12, {"q4_K", 256, 144, true, true}},
    {13, {"q5_K", 256, 176, true, false}},
    {14, {"q6_K", 256, 210, true, true}},
    {15, {"q8_K", 256, 292, true, false}},
    {16, {"iq2_xxs", 256, 66, true, false}},
    {17, {"iq2_xs", 256, 74, true, false}},
    {18, {"iq3_xxs", 256, 98, true, false}},
    {19, {"iq1_s", 256, 50, true, false}},
    {20, {"iq4_nl", 32, 18, true, false}},
    {21, {"iq3_s", 256, 110, true, false}},
    {22, {"iq2_s", 256, 82, true, false}},
    {23, {"iq4_xs", 256, 136, true, false}},
    {24, {"i8", 1, 1, false, false}},
    {25, {"i16", 1, 2, false, false}},
    {26, {"i32", 1, 4, false, false}},
    {27, {"i64", 1, 8, false, false}},
    {28, {"f64", 1, 8, false, false}},
    {29, {"iq1_m", 256, 56, true, false}},
    {30, {"bf16", 1, 2, false, true}},
    {34, {"tq1_0", 256, 54, true, false}},
    {35, {"tq2_0", 256, 66, true, false}},
    {39, {"mxfp4", 32, 17, true, false}},
}};

}  // namespace

std::optional<ggml_type_traits> type_traits(uint32_t id) {
  for (const auto& e : table) {
    if (e.id == id) {
      return e.traits;
    }
  }
  return std::nullopt;
}

const ggml_type_traits& traits(ggml_type type) {
  for (const auto& e : table) {
    if (e.id == static_cast<uint32_t>(type)) {
      return e.traits;
    }
  }
  std::abort();  // every enumerator is in the table
}

uint64_t row_bytes(ggml_type type, uint64_t n) {
  const auto& t = traits(type);
  return n / t.block_size * t.type_size;
}

std::optional<ggml_type> parse_type_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (const auto& e : table) {
    std::string t(e.traits.name);
    for (auto& c : t) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (t == lower) {
      return static_cast<ggml_type>(e.id);
    }
  }
  return std::nullopt;
}

}  // namespace baton
