// Ids back to bytes: each token's decoded piece (GPT-2 byte characters turned back into
// bytes, as llama.cpp's llama_decode_text, c392e509), llama_detokenize's clean-up of
// spaces, and (in token_decoding.cpp) `stream_decoder` and `utf8_complete_prefix`, whose
// declarations stay in tokenizer.hpp for their callers. Its own file because decoding
// shares nothing with encoding but the vocabulary.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::tokenizer_detail {

/// The bytes each token decodes to, back to back.
class token_pieces {
 public:
  token_pieces() = default;

  /// Pieces of `texts`/`types` (n_vocab each): normal tokens decode their GPT-2 byte
  /// characters, control, unknown and user-defined tokens are their text, byte and
  /// unused tokens nothing. An error when the pieces do not fit 32-bit offsets.
  static result<token_pieces> create(std::span<const std::string> texts,
                                     std::span<const token_type> types);

  /// `id` must be in [0, n_vocab).
  std::string_view piece(int32_t id) const {
    const auto i = static_cast<size_t>(id);
    return std::string_view(arena_).substr(off_[i], off_[i + 1] - off_[i]);
  }

 private:
  // -- member variables -------------------------------------------------------
  std::string arena_;          // decoded bytes of each token, back to back
  std::vector<uint32_t> off_;  // [n_vocab + 1]
};

/// llama_detokenize's three clean-up passes for BPE vocabularies, byte for byte
/// (" ," -> ",", " 's" -> "'s", ...). `out` is not empty.
std::string clean_spaces(const std::string& out);

}  // namespace baton::tokenizer_detail
