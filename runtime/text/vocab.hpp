// The vocabulary a tokenizer is built from, as GGUF stores it (`tokenizer.ggml.*`):
// token strings in GPT-2 byte-to-unicode form, token types, BPE merges, special ids.
// It is read from a GGUF file (`load_vocab`) or from a Hugging Face tokenizer.json
// (`load_hf_tokenizer`), and written into GGUF files made by `baton mkmodel`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton {

class gguf_file;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
enum class token_type : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

struct vocab_spec {
  std::string model;                  ///< `tokenizer.ggml.model`, "gpt2" for Llama 3
  std::string pre;                    ///< `tokenizer.ggml.pre`, "llama-bpe" for Llama 3
  std::vector<std::string> tokens;    ///< [n_vocab] byte-level (GPT-2 unicode) strings
  std::vector<int32_t> token_types;   ///< [n_vocab] values of `token_type`
  std::vector<std::string> merges;    ///< "left right", highest priority first
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  std::optional<bool> add_bos;        ///< `tokenizer.ggml.add_bos_token` when present
  std::optional<std::string> chat_template;  ///< `tokenizer.chat_template`
};

/// Reads `tokenizer.ggml.*` and `tokenizer.chat_template` from an open GGUF file.
result<vocab_spec> load_vocab(const gguf_file& file);

/// Reads a Hugging Face tokenizer.json (BPE model, byte-level) and, when present
/// beside it, tokenizer_config.json (chat template, bos/eos tokens).
result<vocab_spec> load_hf_tokenizer(const std::string& tokenizer_json_path);

}  // namespace baton
