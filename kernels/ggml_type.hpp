// The ggml tensor types a GGUF file can hold: their ids (as GGUF stores them), names,
// block sizes and bytes per block. Every type llama.cpp defines is known by size, so
// any file's tensor sizes can be checked even where baton cannot compute with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace baton {

/// ggml's type ids, as stored in GGUF tensor infos. Gaps are ids ggml removed.
enum class ggml_type : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  iq2_xxs = 16,
  iq2_xs = 17,
  iq3_xxs = 18,
  iq1_s = 19,
  iq4_nl = 20,
  iq3_s = 21,
  iq2_s = 22,
  iq4_xs = 23,
  i8 = 24,
  i16 = 25,
  i32 = 26,
  i64 = 27,
  f64 = 28,
  iq1_m = 29,
  bf16 = 30,
  tq1_0 = 34,
  tq2_0 = 35,
  mxfp4 = 39,
};

struct ggml_type_traits {
  std::string_view name;   ///< as llama.cpp prints it: "q4_K", "bf16"
  uint32_t block_size;     ///< elements per block
  uint32_t type_size;      ///< bytes per block
  bool quantized;
  bool can_dequantize;     ///< baton's kernels can turn it into floats
};

/// The traits of a type id, or nothing when the id is not a ggml type.
std::optional<ggml_type_traits> type_traits(uint32_t id);

/// The traits of a known type.
const ggml_type_traits& traits(ggml_type type);

/// Bytes of one row of `n` elements; `n` must be a multiple of the block size.
uint64_t row_bytes(ggml_type type, uint64_t n);

/// Parses a type name as `baton quantize` and `mkmodel --type` take it ("q8_0", "F16").
std::optional<ggml_type> parse_type_name(std::string_view name);

}  // namespace baton
