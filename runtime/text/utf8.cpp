// The UTF-8 and GPT-2 byte-level helpers of utf8.hpp, as llama.cpp (c392e509,
// src/unicode.cpp) defines them where behaviour could differ.
#include "runtime/text/utf8.hpp"

#include <cstring>

namespace baton::tokenizer_detail {

const byte_unicode_table& byte_unicode() {
  static const byte_unicode_table table = [] {
    byte_unicode_table t;
    t.cpt_to_byte.fill(-1);
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t.byte_to_cpt[b] = printable ? b : 256 + n++;
      t.cpt_to_byte[t.byte_to_cpt[b]] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

// -- UTF-8 --------------------------------------------------------------------

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

bool lenient_cpt(std::string_view s, size_t& off, uint32_t& cpt) {
  const auto at = [&](size_t i) { return static_cast<uint8_t>(s[off + i]); };
  const auto cont = [&](size_t i) { return off + i < s.size() && (at(i) & 0xC0) == 0x80; };
  const uint8_t b0 = at(0);
  if (!(b0 & 0x80)) {
    cpt = b0;
    off += 1;
    return true;
  }
  if (!(b0 & 0x40)) {
    return false;
  }
  if (!(b0 & 0x20)) {
    if (!cont(1)) {
      return false;
    }
    cpt = ((b0 & 0x1Fu) << 6) | (at(1) & 0x3Fu);
    off += 2;
    return true;
  }
  if (!(b0 & 0x10)) {
    if (!cont(1) || !cont(2)) {
      return false;
    }
    cpt = ((b0 & 0x0Fu) << 12) | ((at(1) & 0x3Fu) << 6) | (at(2) & 0x3Fu);
    off += 3;
    return true;
  }
  if (!(b0 & 0x08)) {
    if (!cont(1) || !cont(2) || !cont(3)) {
      return false;
    }
    cpt = ((b0 & 0x07u) << 18) | ((at(1) & 0x3Fu) << 12) | ((at(2) & 0x3Fu) << 6) |
          (at(3) & 0x3Fu);
    off += 4;
    return true;
  }
  return false;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      if ((v & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const uint8_t b = p[i];
    if (b < 0x80) {
      i += 1;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) {
        lo = 0xA0;
      } else if (b == 0xED) {
        hi = 0x9F;
      }
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) {
        lo = 0x90;
      } else if (b == 0xF4) {
        hi = 0x8F;
      }
    } else {
      return false;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) {
      return false;
    }
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        return false;
      }
    }
    i += len;
  }
  return true;
}

normalized_text normalize_invalid(std::string_view in) {
  normalized_text out;
  std::string& bytes = out.bytes;
  std::string& view = out.view;
  size_t off = 0;
  while (off < in.size()) {
    uint32_t cpt;
    if (!lenient_cpt(in, off, cpt)) {
      off += 1;
      cpt = 0xFFFD;
    }
    if (cpt > 0x10FFFF) {
      cpt = 0xFFFD;
    }
    append_utf8(bytes, cpt);
    append_utf8(view, (cpt >= 0xD800 && cpt <= 0xDFFF) ? 0xFFFD : cpt);
  }
  return out;
}

std::optional<std::string> byte_decode(std::string_view text) {
  const auto& tab = byte_unicode();
  std::string out;
  size_t off = 0;
  while (off < text.size()) {
    uint32_t cpt;
    if (!lenient_cpt(text, off, cpt) || cpt >= tab.cpt_to_byte.size() ||
        tab.cpt_to_byte[cpt] < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(tab.cpt_to_byte[cpt]));
  }
  return out;
}

}  // namespace baton::tokenizer_detail
