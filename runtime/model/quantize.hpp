// Model-level conversion, as `llama-quantize --allow-requantize` does it: read a Llama
// GGUF, choose each tensor's new type by llama.cpp's rules (llama_tensor_get_type in
// src/llama-quant.cpp), and write a new GGUF with the same metadata (general.file_type
// set to the target's llama_ftype id, general.quantization_version 2) and the tensors
// converted. The targets are the file types of runtime/model/ftype.hpp.
//
// The rules, for the targets baton offers:
// - only 2-D+ tensors named *weight (not *_norm.weight) convert; 1-D tensors (norms,
//   rope_freqs) are copied as they are;
// - F32 / F16 / BF16: every such tensor becomes that type (dequantized, then rounded
//   to nearest even for F16/BF16);
// - quantized targets: output.weight, or token_embd.weight when the head is tied, gets
//   Q6_K (Q8_0 for a Q8_0 target); Q4_K_M gives attn_v and ffn_down Q6_K on the layers
//   where use_more_bits(i, n) (i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2), else Q4_K;
//   a row length that is not a multiple of the chosen type's block falls back (Q6_K →
//   Q8_0, Q4_K → Q5_0; F16 when not even a multiple of 32). Where the rules reach a
//   type baton cannot compute with (Q5_0 so, Q5_K for a 70B's attn_v) it refuses;
// - a tensor already of its target type is copied byte for byte; any other is
//   dequantized and quantized again with ggml's reference quantizers (no imatrix).
// Tensors are written in llama.cpp's order (non-layer tensors by name, then blk.N by
// N, by name within a layer), streaming one tensor at a time from the mapped source.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/ggml_type.hpp"
#include "runtime/model/ftype.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/system/error.hpp"

namespace baton {

struct quantize_options {
  ftype target = ftype::q8_0;  ///< what to convert to (its name, id and default type: ftype.hpp)
  /// llama-quantize --pure: every convertible tensor gets the default type (no Q6_K
  /// head, no Q4_K_M mixture); the block-size fallback still applies.
  bool pure = false;
  /// Threads converting one tensor (rows are split between them); 1 or more.
  int n_threads = 2;
  /// Only the types are wanted (sizing a model that is never computed, runtime/model/
  /// shape_model): a type baton cannot compute with (a 70B's Q5_K attn_v) is allowed.
  bool types_only = false;
};

/// One tensor of the output, in write order.
struct tensor_plan {
  std::string name;
  std::vector<int64_t> shape;  ///< ne[0] first
  ggml_type from = ggml_type::f32;
  ggml_type to = ggml_type::f32;
  bool fallback = false;  ///< the row length forced a type other than the rule's
};

/// Chooses every tensor's output type, in llama.cpp's tensor order. Errors when a
/// tensor would need a type baton cannot compute with (e.g. Q5_0 as Q4_K's fallback).
result<std::vector<tensor_plan>> plan_quantization(const model& m, const quantize_options& o);

struct quantize_summary {
  uint32_t file_type = 0;
  int64_t n_tensors = 0;
  int64_t n_converted = 0;  ///< tensors whose type changed
  int64_t n_fallback = 0;
  uint64_t bytes_in = 0;   ///< tensor data, before
  uint64_t bytes_out = 0;  ///< tensor data, after
  std::vector<tensor_plan> tensors;
};

/// Converts the model at `in` and writes `out` (replaced if present; removed again on
/// failure). The error names the file, tensor or value at fault.
result<quantize_summary> quantize_model(const std::string& in, const std::string& out,
                                        const quantize_options& o);

}  // namespace baton
