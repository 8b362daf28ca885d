// UTF-8 as the Llama 3 tokenizer reads it, and GPT-2's byte-level alphabet. The
// tokenizer keeps every token as the bytes it stands for, but vocabularies store
// token texts in GPT-2's byte-to-unicode form, and invalid UTF-8 must be read exactly as
// llama.cpp (c392e509, src/unicode.cpp) reads it: leniently, one U+FFFD per bad byte.
// These helpers are shared by the pre-tokenizer, BPE and decoding files, so they live in
// their own file; they are internal to runtime/text/ (namespace `tokenizer_detail`).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace baton::tokenizer_detail {

/// GPT-2's mapping of the 256 bytes onto printable code points and back.
struct byte_unicode_table {
  std::array<uint32_t, 256> byte_to_cpt{};
  std::array<int16_t, 324> cpt_to_byte{};  // -1 where the code point is no byte's
};

const byte_unicode_table& byte_unicode();

void append_utf8(std::string& out, uint32_t cpt);

/// llama.cpp's unicode_cpt_from_utf8: checks the lead byte and that continuation bytes
/// are there, nothing more (overlong forms, surrogates and values up to 0x1FFFFF pass).
/// On success reads the code point at `off` into `cpt` and moves `off` past it.
bool lenient_cpt(std::string_view s, size_t& off, uint32_t& cpt);

/// Strict UTF-8 (what PCRE2 accepts): no overlong forms, surrogates or values > 0x10FFFF.
bool valid_utf8(std::string_view s);

/// Length of the UTF-8 sequence a lead byte announces (1 for stray bytes).
inline size_t utf8_len(uint8_t b) {
  if (b < 0xC0) {
    return 1;
  }
  if (b < 0xE0) {
    return 2;
  }
  if (b < 0xF0) {
    return 3;
  }
  return 4;
}

/// Invalid input rewritten as llama.cpp sees it (`unicode_cpts_from_utf8` then
/// `unicode_cpt_to_utf8`).
struct normalized_text {
  std::string bytes;  ///< what gets tokenized
  std::string view;   ///< the same with surrogates shown as U+FFFD, for PCRE2
};

/// Surrogates keep their bytes but show as U+FFFD to the regex (same length, same
/// class: neither letter, number nor space). Values above 0x10FFFF, on which llama.cpp
/// throws, become U+FFFD.
normalized_text normalize_invalid(std::string_view in);

/// The bytes `text` stands for, when it consists of GPT-2 byte characters only.
std::optional<std::string> byte_decode(std::string_view text);

}  // namespace baton::tokenizer_detail
