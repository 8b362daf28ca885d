// Decoding of token_decoding.hpp, and the `stream_decoder` and `utf8_complete_prefix`
// that tokenizer.hpp declares.
#include "runtime/text/token_decoding.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "runtime/text/tokenizer.hpp"
#include "runtime/text/utf8.hpp"

namespace baton {

namespace tokenizer_detail {

namespace {

/// llama.cpp's llama_decode_text: byte characters to bytes, anything else to
/// "[UNK_BYTE_0x<hex>" + text + "]".
std::string decode_normal_text(std::string_view text) {
  const auto& tab = byte_unicode();
  std::string out;
  size_t off = 0;
  while (off < text.size()) {
    uint32_t cpt;
    if (!lenient_cpt(text, off, cpt)) {
      off += 1;
      cpt = 0xFFFD;
    }
    if (cpt < tab.cpt_to_byte.size() && tab.cpt_to_byte[cpt] >= 0) {
      out.push_back(static_cast<char>(tab.cpt_to_byte[cpt]));
      continue;
    }
    std::string utf8;
    append_utf8(utf8, std::min<uint32_t>(cpt, 0x10FFFF));
    out += "[UNK_BYTE_0x";
    for (char c : utf8) {
      char hex[3];
      std::snprintf(hex, sizeof hex, "%02x", static_cast<uint8_t>(c));
      out += hex;
    }
    out.append(text);
    out += "]";
  }
  return out;
}

}  // namespace

result<token_pieces> token_pieces::create(std::span<const std::string> texts,
                                          std::span<const token_type> types) {
  token_pieces p;
  p.off_.reserve(texts.size() + 1);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = texts[i];
    const token_type t = types[i];
    p.off_.push_back(static_cast<uint32_t>(p.arena_.size()));
    if (t == token_type::normal) {
      p.arena_ += decode_normal_text(text);
    } else if (t == token_type::control || t == token_type::unknown ||
               t == token_type::user_defined) {
      p.arena_ += text;
    }
    if (p.arena_.size() > UINT32_MAX / 2) {
      return make_error("the vocabulary's token texts are too large");
    }
  }
  p.off_.push_back(static_cast<uint32_t>(p.arena_.size()));
  return p;
}

std::string clean_spaces(const std::string& out) {
  std::string a;
  a.push_back(out[0]);
  for (size_t i = 1; i < out.size(); ++i) {
    const char x = out[i];
    if (out[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) {
      a.pop_back();  // " ?", " !", " .", " ,"
    }
    a.push_back(x);
  }
  std::string b;
  b.push_back(a[0]);
  for (size_t i = 1; i < a.size(); ++i) {
    const char x = a[i];
    if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();    // " ' " -> "'"
      a[++i] = '\0';  // the next space goes too (and no longer counts as a space)
    }
    b.push_back(x);
  }
  std::string c;
  c.push_back(b[0]);
  for (size_t i = 1; i < b.size(); ++i) {
    const char x = b[i];
    if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      if (x1 == 's' || x1 == 'm') {
        c.pop_back();  // " 's", " 'm"
      } else if (x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
        const char x2 = b[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) {
          c.pop_back();  // " 're", " 've"
        }
      }
    }
    c.push_back(x);
  }
  return c;
}

}  // namespace tokenizer_detail

// -- stream_decoder ------------------------------------------------------------------

size_t utf8_complete_prefix(std::string_view bytes) {
  const size_t n = bytes.size();
  // An incomplete sequence is a lead byte followed by fewer continuation bytes than it
  // announces; look back at most 3 bytes for its lead.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(bytes[n - back]);
    if ((b & 0xC0) == 0x80) {
      continue;  // continuation byte: keep looking for the lead
    }
    if (b >= 0xC2 && b <= 0xF4 && tokenizer_detail::utf8_len(b) > back) {
      return n - back;
    }
    return n;
  }
  return n;
}

result<std::string> stream_decoder::push(int32_t id) {
  auto piece = tok_->token_piece(id, render_special_);
  if (!piece) {
    return piece.err();
  }
  pending_.append(*piece);
  const size_t n = utf8_complete_prefix(pending_);
  std::string out = pending_.substr(0, n);
  pending_.erase(0, n);
  return out;
}

std::string stream_decoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace baton
