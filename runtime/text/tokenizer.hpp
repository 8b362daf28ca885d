// Llama 3's byte-level BPE tokenizer, computing token for token what llama.cpp
// (c392e509) computes for `tokenizer.ggml.model = gpt2`, `tokenizer.ggml.pre = llama-bpe`:
// special tokens are split out of the text first (longest text first), the pieces
// between them are pre-tokenized by Llama 3's regex (PCRE2, JIT), and the bytes of each
// pre-token are merged by BPE rank. Ids decode back to bytes, and `stream_decoder` hands
// out generated text one whole UTF-8 character at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"
#include "runtime/text/vocab.hpp"

namespace baton {

/// How `tokenizer::decode` renders ids.
struct decode_options {
  /// Drop a leading BOS when the vocabulary adds one, as llama_detokenize(remove_special).
  bool remove_bos = false;
  /// Control tokens render as their text ("<|eot_id|>"); otherwise as nothing.
  bool render_special = false;
  /// llama_detokenize's clean-up for BPE vocabularies (" ," -> ",", " 's" -> "'s", ...).
  /// Off by default: with it, decode(encode(x)) != x for texts such as "a ,b".
  bool clean_spaces = false;
};

class tokenizer {
 public:
  /// Builds the tokenizer; the error names the field and value it cannot use
  /// (model other than "gpt2", an unsupported pre-tokenizer, bad ids or types).
  static result<tokenizer> create(vocab_spec spec);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  /// Text to ids. `add_bos` prepends BOS when the vocabulary asks for it
  /// (llama.cpp's add_special; true for llama-bpe unless add_bos_token says otherwise).
  /// `parse_special`: control tokens written in the text become their ids; user-defined
  /// tokens always do. Invalid UTF-8 is read as llama.cpp reads it (U+FFFD per bad byte).
  std::vector<int32_t> encode(std::string_view text, bool add_bos = true,
                              bool parse_special = true) const;

  /// Ids to bytes; an id outside [0, n_vocab) is an error naming it.
  result<std::string> decode(std::span<const int32_t> ids, decode_options opts = {}) const;

  /// The bytes one token decodes to (empty for a control token unless `render_special`).
  result<std::string_view> token_piece(int32_t id, bool render_special = false) const;

  int32_t n_vocab() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  /// Whether `encode(..., add_bos = true)` prepends BOS.
  bool add_bos() const;
  /// The token's text as the vocabulary stores it (GPT-2 byte-to-unicode form).
  /// `id` must be in [0, n_vocab).
  const std::string& token_text(int32_t id) const;
  token_type type(int32_t id) const;
  /// The id whose text is exactly `text` ("<|eot_id|>"), if any.
  std::optional<int32_t> find_token(std::string_view text) const;
  /// End of generation: eos, <|eot_id|>, <|eom_id|>, <|end_of_text|> and the other
  /// end-of-turn texts llama.cpp recognises. False for ids out of range.
  bool is_eog(int32_t id) const;
  /// Ids for which `is_eog` holds, ascending.
  const std::vector<int32_t>& eog_ids() const;
  /// `tokenizer.chat_template` of the vocabulary, when it has one.
  const std::optional<std::string>& chat_template() const;

 private:
  struct impl;
  explicit tokenizer(std::unique_ptr<impl> p);

  // -- member variables -------------------------------------------------------
  std::unique_ptr<impl> impl_;
};

/// Turns ids, one at a time, into text that never ends inside a UTF-8 character: the
/// bytes of an incomplete trailing sequence wait for the next token. Bytes that can
/// never become a valid character pass through unchanged (decode() returns them too).
/// The tokenizer must outlive the decoder; one decoder per sequence.
class stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& tok, bool render_special = false)
      : tok_(&tok), render_special_(render_special) {}

  /// The text completed by `id` (possibly empty); an error for an out-of-range id.
  result<std::string> push(int32_t id);
  /// Whatever is held back (an incomplete sequence at the end of generation).
  std::string flush();
  /// Bytes held back so far.
  size_t n_pending() const { return pending_.size(); }

 private:
  // -- member variables -------------------------------------------------------
  const tokenizer* tok_;
  bool render_special_;
  std::string pending_;
};

/// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence
/// that later bytes could still complete.
size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace baton
