// A Llama-architecture model as a GGUF file describes it: hyperparameters from the
// `llama.*` keys, the tensor map (token_embd, blk.N.*, output_norm, optional output
// and rope_freqs), every tensor's shape checked against the hyperparameters, and the
// KV cache arithmetic (grouped-query attention: only n_head_kv heads are cached).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ggml_type.hpp"
#include "runtime/system/error.hpp"
#include "runtime/model/gguf.hpp"

namespace baton {

/// Hyperparameters of architecture `llama`.
struct model_config {
  std::string architecture;   ///< "llama"
  std::string name;           ///< general.name, may be empty
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;    ///< llama.context_length
  int64_t n_embd = 0;         ///< llama.embedding_length
  int64_t n_layer = 0;        ///< llama.block_count
  int64_t n_ff = 0;           ///< llama.feed_forward_length
  int64_t n_head = 0;         ///< llama.attention.head_count
  int64_t n_head_kv = 0;      ///< llama.attention.head_count_kv (default n_head)
  int64_t n_embd_head_k = 0;  ///< llama.attention.key_length (default n_embd / n_head)
  int64_t n_embd_head_v = 0;  ///< llama.attention.value_length (default n_embd / n_head)
  int64_t n_rot = 0;          ///< llama.rope.dimension_count (default n_embd_head_k)
  float rope_freq_base = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tied_output = true;    ///< no output.weight: the head is token_embd
  bool has_rope_freqs = false;

  int64_t n_embd_k_gqa() const { return n_embd_head_k * n_head_kv; }
  int64_t n_embd_v_gqa() const { return n_embd_head_v * n_head_kv; }

  /// Bytes of K and V for one token over all layers: n_layer × n_head_kv ×
  /// (head_dim_k + head_dim_v) × element size; `kv_type` is f16 or f32.
  uint64_t kv_bytes_per_token(ggml_type kv_type) const;
  /// The same for layers [first, last) only (one pipeline stage).
  uint64_t kv_bytes_per_token(ggml_type kv_type, int64_t first, int64_t last) const;
  /// Scratch bytes one token of a forward step holds on a stage, CPU or GPU alike:
  /// the incoming and normed activations, q, k, v, attention output, gate and up, the
  /// converted activations (at most one float per input) and rope angles.
  uint64_t step_bytes_per_token() const;
};

/// The weights of one transformer block; views into the mapped file.
struct layer_weights {
  const tensor_info* attn_norm = nullptr;  // [n_embd]
  const tensor_info* wq = nullptr;         // [n_embd, n_head * n_embd_head_k]
  const tensor_info* wk = nullptr;         // [n_embd, n_head_kv * n_embd_head_k]
  const tensor_info* wv = nullptr;         // [n_embd, n_head_kv * n_embd_head_v]
  const tensor_info* wo = nullptr;         // [n_head * n_embd_head_v, n_embd]
  const tensor_info* ffn_norm = nullptr;   // [n_embd]
  const tensor_info* ffn_gate = nullptr;   // [n_embd, n_ff]
  const tensor_info* ffn_up = nullptr;     // [n_embd, n_ff]
  const tensor_info* ffn_down = nullptr;   // [n_ff, n_embd]
};

struct model_weights {
  const tensor_info* token_embd = nullptr;   // [n_embd, n_vocab]
  const tensor_info* output_norm = nullptr;  // [n_embd]
  const tensor_info* output = nullptr;       // [n_embd, n_vocab]; null = tied to token_embd
  const tensor_info* rope_freqs = nullptr;   // [n_rot / 2]; null = no frequency scaling
  std::vector<layer_weights> layers;         // [n_layer]

  /// The output head: `output` when present, else token_embd.
  const tensor_info* head() const { return output ? output : token_embd; }
};

/// An opened model: the file (kept mapped), its config and the tensor map.
class model {
 public:
  /// Opens a GGUF file and checks it is a complete, consistent Llama model.
  static result<std::shared_ptr<const model>> open(const std::string& path);
  /// Checks an already parsed file.
  static result<std::shared_ptr<const model>> from_file(gguf_file file);

  const gguf_file& file() const { return file_; }
  const model_config& config() const { return config_; }
  const model_weights& weights() const { return weights_; }
  /// Bytes of all tensor data.
  uint64_t weight_bytes() const;

 private:
  explicit model(gguf_file file) : file_(std::move(file)) {}

  // -- member variables -------------------------------------------------------
  gguf_file file_;
  model_config config_;
  model_weights weights_;
};

/// Reads the hyperparameters alone (no tensor checks).
result<model_config> read_model_config(const gguf_file& file);

}  // namespace baton
