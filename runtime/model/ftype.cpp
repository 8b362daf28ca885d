// The file type table: see ftype.hpp. Ids are llama.cpp's LLAMA_FTYPE_* (include/llama.h).
#include "runtime/model/ftype.hpp"

#include <array>
#include <cctype>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

namespace {

constexpr std::array<ftype_info, 7> table = {{
    {ftype::f32, "F32", "", 0, ggml_type::f32, false},        // LLAMA_FTYPE_ALL_F32
    {ftype::f16, "F16", "", 1, ggml_type::f16, false},        // LLAMA_FTYPE_MOSTLY_F16
    {ftype::bf16, "BF16", "", 32, ggml_type::bf16, false},    // LLAMA_FTYPE_MOSTLY_BF16
    {ftype::q8_0, "Q8_0", "", 7, ggml_type::q8_0, false},     // LLAMA_FTYPE_MOSTLY_Q8_0
    {ftype::q4_0, "Q4_0", "", 2, ggml_type::q4_0, false},     // LLAMA_FTYPE_MOSTLY_Q4_0
    {ftype::q4_k_m, "Q4_K_M", "Q4_K", 15, ggml_type::q4_k, true},  // LLAMA_FTYPE_MOSTLY_Q4_K_M
    {ftype::q6_k, "Q6_K", "", 18, ggml_type::q6_k, false},    // LLAMA_FTYPE_MOSTLY_Q6_K
}};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::span<const ftype_info> ftype_table() { return table; }

const ftype_info& info(ftype t) {
  const auto& row = table[static_cast<size_t>(t)];
  BATON_ASSERT(row.value == t);  // the table is in enum order
  return row;
}

std::optional<ftype> parse_ftype(std::string_view name) {
  for (const auto& row : table) {
    if (equal_ignoring_case(name, row.name) ||
        (!row.alias.empty() && equal_ignoring_case(name, row.alias))) {
      return row.value;
    }
  }
  return std::nullopt;
}

std::optional<ftype> ftype_of_weights(ggml_type weights) {
  for (const auto& row : table) {
    if (row.default_type == weights && !row.mixture) {
      return row.value;
    }
  }
  return std::nullopt;
}

std::string ftype_names(std::string_view last_sep, bool aliases, bool note_aliases) {
  std::vector<std::string> names;
  for (const auto& row : table) {
    if (aliases && !row.alias.empty()) {
      names.push_back(std::string(row.alias) +
                      (note_aliases ? " (= " + std::string(row.name) + ")" : ""));
    }
    names.emplace_back(row.name);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += i + 1 == names.size() ? last_sep : std::string_view(", ");
    }
    out += names[i];
  }
  return out;
}

}  // namespace baton
