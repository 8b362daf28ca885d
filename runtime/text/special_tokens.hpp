// The vocabulary's special tokens: which ids are control, user-defined or unknown, how a
// text is cut at their occurrences before pre-tokenization (llama.cpp's
// `tokenizer_st_partition`, c392e509: for each special token, longest text first, every
// occurrence in every remaining text fragment is cut out), and which ids end generation.
// Its own file because this is the step that decides what the model sees of a chat
// template's markers, apart from how ordinary text is split and merged.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/text/token_tables.hpp"
#include "runtime/text/vocab.hpp"

namespace baton::tokenizer_detail {

/// Control and unknown tokens: written in a text they become ids only with
/// `parse_special`, and they decode to nothing unless rendered.
inline bool is_special_type(token_type t) {
  return t == token_type::control || t == token_type::unknown;
}

/// A piece of a partitioned text: a special token's id, or the text [off, off + len).
struct fragment {
  int32_t token;  // -1: text [off, off + len)
  size_t off;
  size_t len;
};

class special_tokens {
 public:
  special_tokens() = default;
  /// The control, user-defined and unknown tokens among `texts`/`types` (n_vocab each).
  special_tokens(std::span<const std::string> texts, std::span<const token_type> types);

  /// `text` cut at the occurrences of special tokens; control and unknown tokens count
  /// only with `parse_special`, user-defined ones always.
  std::vector<fragment> partition(std::string_view text, bool parse_special) const;

 private:
  struct special {
    int32_t id;
    bool needs_parse_special;  // control or unknown
    std::string text;
  };

  // -- member variables -------------------------------------------------------
  std::vector<special> specials_;  // longest text first, ties by id
  std::array<std::vector<int32_t>, 256> by_first_byte_{};  // indexes into `specials_`
};

/// End of generation, ascending: `eos` (when >= 0) and the ids of the end-of-turn texts
/// of llama.cpp's list, plus <|end_of_text|> (Llama 3's end of a document).
std::vector<int32_t> end_of_generation_ids(int32_t eos, const string_table& text_ids);

}  // namespace baton::tokenizer_detail
