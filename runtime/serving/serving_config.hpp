// The serving settings, defined once: how many sequences run at once, how many tokens
// one step takes, how many steps are in flight, the KV cache's block size, element type
// and size, the context, prefix caching and the admission limits. The flags (`baton
// serve`, `run`, `bench batch`) and a topology file's [pipeline] table fill one; the
// scheduler, the router, the admission actor and the local_server read it as it is, so
// no component keeps its own copy of a setting or its own default. Its own header so
// that runtime/serving (the scheduler) and actors/ both read it without depending on
// each other.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kernels/ggml_type.hpp"

namespace baton {

struct serving_config {
  int32_t max_num_seqs = 256;            ///< sequences computing at once (vLLM's name)
  int32_t max_num_batched_tokens = 2048; ///< tokens in one micro-batch (one step)
  /// Steps in flight over disjoint sequences; 0: default_micro_batches(n_stages).
  int32_t micro_batches = 0;
  int32_t block_size = 16;               ///< tokens per KV block
  /// KV blocks on every stage; the memory plan (topology/memory_plan.hpp) decides it,
  /// 0: one sequence of n_ctx tokens.
  int32_t n_blocks = 0;
  int64_t n_ctx = 4096;                  ///< most tokens of one sequence (vLLM's max_model_len)
  ggml_type kv_type = ggml_type::f16;    ///< the KV cache's element: f16 or f32
  bool enable_prefix_caching = true;     ///< reuse the KV blocks of shared prompt prefixes
  int32_t max_queue = 1024;              ///< requests waiting beyond max_num_seqs (then refused)
  int32_t max_per_key = 0;               ///< requests in flight per API key; 0: no quota

  /// Tokens the KV cache holds (what one sequence can ever use); 0 while n_blocks is 0.
  int64_t kv_capacity_tokens() const { return static_cast<int64_t>(n_blocks) * block_size; }
};

/// The KV cache's element type from its name ("f16" or "f32", either case as vLLM's
/// --kv-cache-dtype and llama.cpp's --cache-type-k write it); nothing for another name.
inline std::optional<ggml_type> parse_kv_type(std::string_view name) {
  if (name == "f16" || name == "F16") {
    return ggml_type::f16;
  }
  if (name == "f32" || name == "F32") {
    return ggml_type::f32;
  }
  return std::nullopt;
}

/// The name parse_kv_type reads back: "f32" or "f16".
constexpr const char* kv_type_name(ggml_type t) { return t == ggml_type::f32 ? "f32" : "f16"; }

/// Micro-batches in flight for a pipeline of `n_stages`: two per stage (one alone), not
/// one per stage (the number of stages) as GPipe and DESIGN.md have it. While a
/// micro-batch's result travels back to the router and its next step is scheduled, each
/// stage works on another one; with one per stage it idles for that round trip. Measured
/// on 2 stages (2 ranks x 1 thread, 16 streams, 1B Q4_0; bench/RESULTS.md): 130 tokens/s
/// with 2 micro-batches, 149 with 4.
constexpr int32_t default_micro_batches(int64_t n_stages) {
  return n_stages > 1 ? static_cast<int32_t>(2 * n_stages) : 1;
}

}  // namespace baton
