// The Llama 3 tokenizer of tokenizer.hpp. Everything follows llama.cpp (c392e509,
// src/llama-vocab.cpp and src/unicode.cpp) where behaviour could differ:
// - special tokens: `tokenizer_st_partition` — for each special token, longest text
//   first, every occurrence in every remaining text fragment is cut out;
// - pre-tokenizer: Llama 3's regex with ASCII-only case folding for the contractions
//   (llama.cpp's adaptation) and `\s` spelled as Unicode White_Space, the set llama.cpp
//   uses (PCRE2's `\s` adds U+180E); letters and numbers are PCRE2's \p{L} and \p{N};
// - invalid UTF-8: llama.cpp decodes leniently (overlong forms and surrogates pass),
//   turns each undecodable byte into U+FFFD and re-encodes, so the same happens here;
// - BPE: lowest merge rank first, leftmost on ties; a pre-token that is itself a token
//   is emitted whole (`ignore_merges`); a piece left without a token falls back to the
//   tokens of its single bytes, as llama.cpp does.
// The hot path works on raw bytes: every token is keyed by the bytes it decodes to, and
// merges are pairs of such ids, so no GPT-2 unicode strings are built while encoding.
#include "runtime/text/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <climits>
#include <optional>
#include <cstdio>
#include <cstring>

namespace baton {

namespace {

// -- GPT-2 byte <-> unicode mapping -------------------------------------------

struct byte_unicode_table {
  std::array<uint32_t, 256> byte_to_cpt{};
  std::array<int16_t, 324> cpt_to_byte{};  // -1 where the code point is no byte's
};

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

/// llama.cpp's unicode_cpt_from_utf8: checks the lead byte and that continuation bytes
/// are there, nothing more (overlong forms, surrogates and values up to 0x1FFFFF pass).
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

/// Strict UTF-8 (what PCRE2 accepts): no overlong forms, surrogates or values > 0x10FFFF.
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

/// Length of the UTF-8 sequence a lead byte announces (1 for stray bytes).
size_t utf8_len(uint8_t b) {
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

// -- hash tables ----------------------------------------------------------------

uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

/// Byte string -> int32, open addressing; keys live in one arena.
class string_table {
 public:
  static constexpr int32_t absent = INT32_MIN;

  void reserve(size_t n) {
    entries_.reserve(n);
    rehash(std::max<size_t>(16, n * 2));
  }

  /// Sets the value of `key`, inserting it when absent.
  void assign(std::string_view key, int32_t value) { slot_for(key, value, true); }

  /// The value of `key`, inserting `value` first when absent.
  int32_t get_or_insert(std::string_view key, int32_t value) {
    return slot_for(key, value, false);
  }

  int32_t find(std::string_view key) const {
    if (slots_.empty()) {
      return absent;
    }
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const int32_t e = slots_[i];
      if (e < 0) {
        return absent;
      }
      const entry& en = entries_[static_cast<size_t>(e)];
      if (en.hash == h && en.len == key.size() &&
          std::memcmp(arena_.data() + en.off, key.data(), key.size()) == 0) {
        return en.value;
      }
    }
  }

 private:
  struct entry {
    uint64_t hash;
    uint32_t off;
    uint32_t len;
    int32_t value;
  };

  int32_t slot_for(std::string_view key, int32_t value, bool overwrite) {
    if ((entries_.size() + 1) * 2 > slots_.size()) {
      rehash(std::max<size_t>(16, slots_.size() * 2));
    }
    const uint64_t h = hash_bytes(key.data(), key.size());
    size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      const int32_t e = slots_[i];
      if (e < 0) {
        break;
      }
      entry& en = entries_[static_cast<size_t>(e)];
      if (en.hash == h && en.len == key.size() &&
          std::memcmp(arena_.data() + en.off, key.data(), key.size()) == 0) {
        if (overwrite) {
          en.value = value;
        }
        return en.value;
      }
    }
    slots_[i] = static_cast<int32_t>(entries_.size());
    entries_.push_back({h, static_cast<uint32_t>(arena_.size()),
                        static_cast<uint32_t>(key.size()), value});
    arena_.append(key);
    return value;
  }

  void rehash(size_t n_slots) {
    size_t n = 16;
    while (n < n_slots) {
      n *= 2;
    }
    slots_.assign(n, -1);
    mask_ = n - 1;
    for (size_t e = 0; e < entries_.size(); ++e) {
      size_t i = entries_[e].hash & mask_;
      while (slots_[i] >= 0) {
        i = (i + 1) & mask_;
      }
      slots_[i] = static_cast<int32_t>(e);
    }
  }

  // -- member variables -------------------------------------------------------
  std::string arena_;
  std::vector<entry> entries_;
  std::vector<int32_t> slots_;  // entry index, -1 when free
  size_t mask_ = 0;
};

/// (left id, right id) -> (rank, merged id); the first merge listed for a pair wins,
/// as llama.cpp's `bpe_ranks.emplace`.
class pair_table {
 public:
  struct slot {
    uint64_t key;
    int32_t rank;
    int32_t merged;
  };

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void init(size_t n) {
    size_t size = 16;
    while (size < n * 2) {
      size *= 2;
    }
    slots_.assign(size, slot{empty, 0, 0});
    mask_ = size - 1;
    shift_ = 64;
    for (size_t s = size; s > 1; s >>= 1) {
      --shift_;
    }
  }

  void insert_first(uint64_t k, int32_t rank, int32_t merged) {
    for (size_t i = index(k);; i = (i + 1) & mask_) {
      if (slots_[i].key == k) {
        return;
      }
      if (slots_[i].key == empty) {
        slots_[i] = slot{k, rank, merged};
        return;
      }
    }
  }

  const slot* find(uint64_t k) const {
    for (size_t i = index(k);; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.key == k) {
        return &s;
      }
      if (s.key == empty) {
        return nullptr;
      }
    }
  }

 private:
  static constexpr uint64_t empty = ~0ull;  // ids are never both -1
  size_t index(uint64_t k) const { return (k * 0x9E3779B97F4A7C15ull) >> shift_; }

  // -- member variables -------------------------------------------------------
  std::vector<slot> slots_;
  size_t mask_ = 0;
  int shift_ = 60;
};

// -- the pre-tokenizer regex ----------------------------------------------------

// Unicode White_Space: llama.cpp's `unicode_set_whitespace` (gen-unicode-data.py).
#define BATON_WS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
                 "\\x{202F}\\x{205F}\\x{3000}"

// Llama 3's `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` as llama.cpp runs it.
constexpr const char* k_llama3_pattern =
    "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}"
    "| ?[^" BATON_WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" BATON_WS "]*[\\r\\n]+"
    "|[" BATON_WS "]+(?![^" BATON_WS "])"
    "|[" BATON_WS "]+";
#undef BATON_WS

struct compiled_regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string error;
};

const compiled_regex& llama3_regex() {
  static const compiled_regex re = [] {
    compiled_regex r;
    int err = 0;
    PCRE2_SIZE err_off = 0;
    r.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(k_llama3_pattern), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
    if (!r.code) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      r.error = "pre-tokenizer regex does not compile at offset " + std::to_string(err_off) +
                ": " + reinterpret_cast<const char*>(buf);
      return r;
    }
    r.jit = pcre2_jit_compile(r.code, PCRE2_JIT_COMPLETE) == 0;
    return r;
  }();
  return re;
}

/// Per-thread match state: PCRE2 match data is not shareable between threads.
struct match_state {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  match_state() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context && jit_stack) {
      pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
  }
  ~match_state() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  match_state(const match_state&) = delete;
  match_state& operator=(const match_state&) = delete;
};

match_state& thread_match_state() {
  thread_local match_state state;
  return state;
}

/// Calls `on_word(begin, end)` for each pre-token of `subject` (valid UTF-8).
template <class F>
void split_words(const compiled_regex& re, std::string_view subject, F&& on_word) {
  match_state& ms = thread_match_state();
  BATON_ASSERT(ms.data != nullptr);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  size_t pos = 0;
  while (pos < n) {
    const int rc = re.jit ? pcre2_jit_match(re.code, s, n, pos, 0, ms.data, ms.context)
                          : pcre2_match(re.code, s, n, pos, PCRE2_NO_UTF_CHECK, ms.data,
                                        ms.context);
    size_t begin = pos;
    size_t end = pos;
    if (rc >= 0) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ms.data);
      begin = ov[0];
      end = ov[1];
    }
    if (rc < 0 || end <= begin || begin > pos) {
      // The pattern matches at every position, so this is unreachable; llama.cpp's
      // splitter makes a one-code-point word when nothing matches, and so do we.
      const size_t len = std::min(n - pos, utf8_len(static_cast<uint8_t>(subject[pos])));
      on_word(pos, pos + len);
      pos += len;
      continue;
    }
    on_word(begin, end);
    pos = end;
  }
}

/// The bytes `text` stands for, when it consists of GPT-2 byte characters only.
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

bool is_special_type(token_type t) {
  return t == token_type::control || t == token_type::unknown;
}

struct fragment {
  int32_t token;  // -1: text [off, off + len)
  size_t off;
  size_t len;
};

/// Symbols of one word during BPE, reused from word to word.
struct bpe_scratch {
  struct pair {
    int32_t rank = INT32_MAX;  // INT32_MAX: the pair does not merge
    int32_t merged = -1;
  };
  std::vector<int32_t> ids;
  std::vector<int32_t> lens;
  std::vector<pair> pairs;
  // Heap path (long words): a linked list and a priority queue of candidate pairs.
  std::vector<int32_t> prev;
  std::vector<int32_t> next;
  struct bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t size;
    int32_t merged;
  };
  std::vector<bigram> heap;
};

// Words up to this many bytes merge by scanning for the best pair (fast for short
// words); longer ones use a heap, as llama.cpp does, to stay O(n log n).
constexpr size_t k_scan_max = 256;

}  // namespace

// -- tokenizer::impl ---------------------------------------------------------------

struct tokenizer::impl {
  int32_t n_vocab = 0;
  std::vector<std::string> texts;
  std::vector<token_type> types;
  std::string piece_arena;          // decoded bytes of each token, back to back
  std::vector<uint32_t> piece_off;  // [n_vocab + 1]
  string_table text_ids;            // exact text -> id (the last one, as llama.cpp)
  string_table raw_ids;             // bytes -> id; ids >= n_vocab are merge-only strings
  std::vector<std::string> extra_raw;  // bytes of the ids >= n_vocab
  pair_table merges;
  std::array<int32_t, 256> byte_sym{};  // id of each single byte (-1: none)
  std::array<int32_t, 256> char_id{};   // id of each one-byte text (fallback)
  std::vector<int32_t> specials;        // control/user-defined/unknown, longest first
  std::array<std::vector<int32_t>, 256> specials_by_first{};  // indexes into `specials`
  std::vector<uint8_t> eog_flags;
  std::vector<int32_t> eog;
  int32_t bos = -1;
  int32_t eos = -1;
  bool add_bos = true;
  std::optional<std::string> chat_template;
  const compiled_regex* re = nullptr;

  std::string_view piece(int32_t id) const {
    return std::string_view(piece_arena).substr(piece_off[static_cast<size_t>(id)],
                                                piece_off[static_cast<size_t>(id) + 1] -
                                                    piece_off[static_cast<size_t>(id)]);
  }

  using merge = bpe_scratch::pair;

  merge find_merge(int32_t a, int32_t b) const {
    if (a < 0 || b < 0) {
      return {};
    }
    const auto* s = merges.find(pair_table::key(a, b));
    return s ? merge{s->rank, s->merged} : merge{};
  }

  /// A final BPE symbol: its token, or llama.cpp's fallback to one-byte texts.
  void emit(int32_t id, std::string_view bytes, std::vector<int32_t>& out) const {
    if (id >= 0 && id < n_vocab) {
      out.push_back(id);
      return;
    }
    // llama.cpp looks up each byte of the symbol's GPT-2 unicode text on its own.
    const auto& tab = byte_unicode();
    std::string enc;
    for (char c : bytes) {
      append_utf8(enc, tab.byte_to_cpt[static_cast<uint8_t>(c)]);
    }
    for (char c : enc) {
      const int32_t t = char_id[static_cast<uint8_t>(c)];
      if (t >= 0) {
        out.push_back(t);
      }
    }
  }

  void bpe_word(std::string_view w, bpe_scratch& sc, std::vector<int32_t>& out) const {
    const size_t n = w.size();
    if (n == 0) {
      return;
    }
    // ignore_merges: a word that is a token is that token.
    const int32_t whole = raw_ids.find(w);
    if (whole >= 0 && whole < n_vocab) {
      out.push_back(whole);
      return;
    }
    if (n == 1) {
      emit(byte_sym[static_cast<uint8_t>(w[0])], w, out);
      return;
    }
    if (n > k_scan_max) {
      bpe_word_heap(w, sc, out);
      return;
    }
    sc.ids.resize(n);
    sc.lens.resize(n);
    sc.pairs.resize(n);
    int32_t* ids = sc.ids.data();
    int32_t* lens = sc.lens.data();
    merge* pairs = sc.pairs.data();  // pairs[i]: symbols i and i + 1
    for (size_t i = 0; i < n; ++i) {
      ids[i] = byte_sym[static_cast<uint8_t>(w[i])];
      lens[i] = 1;
    }
    size_t cnt = n;
    for (size_t i = 0; i + 1 < cnt; ++i) {
      pairs[i] = find_merge(ids[i], ids[i + 1]);
    }
    while (cnt > 1) {
      size_t best = 0;  // the lowest rank, the leftmost on ties
      for (size_t i = 1; i + 1 < cnt; ++i) {
        if (pairs[i].rank < pairs[best].rank) {
          best = i;
        }
      }
      if (pairs[best].rank == INT32_MAX) {
        break;
      }
      ids[best] = pairs[best].merged;
      lens[best] += lens[best + 1];
      const size_t tail = cnt - best - 2;  // symbols after best + 1
      std::memmove(ids + best + 1, ids + best + 2, tail * sizeof(int32_t));
      std::memmove(lens + best + 1, lens + best + 2, tail * sizeof(int32_t));
      std::memmove(pairs + best + 1, pairs + best + 2, tail * sizeof(merge));
      --cnt;
      if (best > 0) {
        pairs[best - 1] = find_merge(ids[best - 1], ids[best]);
      }
      pairs[best] = best + 1 < cnt ? find_merge(ids[best], ids[best + 1]) : merge{};
    }
    size_t off = 0;
    for (size_t i = 0; i < cnt; ++i) {
      emit(ids[i], w.substr(off, static_cast<size_t>(lens[i])), out);
      off += static_cast<size_t>(lens[i]);
    }
  }

  /// llama.cpp's algorithm proper: a priority queue of pairs (rank, then leftmost),
  /// stale entries skipped when popped.
  void bpe_word_heap(std::string_view w, bpe_scratch& sc, std::vector<int32_t>& out) const {
    const auto n = static_cast<int32_t>(w.size());
    sc.ids.resize(w.size());
    sc.lens.resize(w.size());
    sc.prev.resize(w.size());
    sc.next.resize(w.size());
    sc.heap.clear();
    for (int32_t i = 0; i < n; ++i) {
      sc.ids[i] = byte_sym[static_cast<uint8_t>(w[i])];
      sc.lens[i] = 1;
      sc.prev[i] = i - 1;
      sc.next[i] = i + 1 < n ? i + 1 : -1;
    }
    // A max-heap under this order pops the lowest rank, then the leftmost pair.
    const auto later = [](const bpe_scratch::bigram& a, const bpe_scratch::bigram& b) {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    };
    const auto add = [&](int32_t l, int32_t r) {
      if (l < 0 || r < 0) {
        return;
      }
      const merge m = find_merge(sc.ids[l], sc.ids[r]);
      if (m.rank == INT32_MAX) {
        return;
      }
      sc.heap.push_back({m.rank, l, r, sc.lens[l] + sc.lens[r], m.merged});
      std::push_heap(sc.heap.begin(), sc.heap.end(), later);
    };
    for (int32_t i = 0; i + 1 < n; ++i) {
      add(i, i + 1);
    }
    while (!sc.heap.empty()) {
      std::pop_heap(sc.heap.begin(), sc.heap.end(), later);
      const bpe_scratch::bigram bg = sc.heap.back();
      sc.heap.pop_back();
      const int32_t l = bg.left;
      const int32_t r = bg.right;
      if (sc.lens[l] == 0 || sc.lens[r] == 0 || sc.lens[l] + sc.lens[r] != bg.size) {
        continue;  // one side has changed since the pair was queued
      }
      sc.ids[l] = bg.merged;
      sc.lens[l] += sc.lens[r];
      sc.lens[r] = 0;
      sc.next[l] = sc.next[r];
      if (sc.next[r] >= 0) {
        sc.prev[sc.next[r]] = l;
      }
      add(sc.prev[l], l);
      add(l, sc.next[l]);
    }
    for (int32_t i = 0; i >= 0; i = sc.next[i]) {
      emit(sc.ids[i], w.substr(static_cast<size_t>(i), static_cast<size_t>(sc.lens[i])), out);
    }
  }

  /// Pre-tokenizes and merges one text fragment (no special tokens in it).
  void encode_text(std::string_view text, std::vector<int32_t>& out) const {
    bpe_scratch sc;
    if (valid_utf8(text)) {
      split_words(*re, text, [&](size_t b, size_t e) { bpe_word(text.substr(b, e - b), sc, out); });
      return;
    }
    const normalized_text norm = normalize_invalid(text);
    const std::string_view bytes(norm.bytes);
    split_words(*re, norm.view,
                [&](size_t b, size_t e) { bpe_word(bytes.substr(b, e - b), sc, out); });
  }

  /// llama.cpp's tokenizer_st_partition.
  std::vector<fragment> partition(std::string_view text, bool parse_special) const {
    std::vector<fragment> frags{{-1, 0, text.size()}};
    const auto eligible = [&](int32_t id) {
      return parse_special || !is_special_type(types[static_cast<size_t>(id)]);
    };
    // Which special tokens occur at all (most texts: none, and then no pass is made).
    std::vector<uint8_t> occurs(specials.size(), 0);
    bool any = false;
    for (size_t p = 0; p < text.size(); ++p) {
      const auto& cands = specials_by_first[static_cast<uint8_t>(text[p])];
      for (int32_t k : cands) {
        const std::string& t = texts[static_cast<size_t>(specials[static_cast<size_t>(k)])];
        if (!occurs[static_cast<size_t>(k)] && eligible(specials[static_cast<size_t>(k)]) &&
            text.compare(p, t.size(), t) == 0) {
          occurs[static_cast<size_t>(k)] = 1;
          any = true;
        }
      }
    }
    if (!any) {
      return frags;
    }
    std::vector<fragment> next;
    for (size_t k = 0; k < specials.size(); ++k) {
      if (!occurs[k]) {
        continue;
      }
      const int32_t id = specials[k];
      const std::string& t = texts[static_cast<size_t>(id)];
      next.clear();
      for (const fragment& f : frags) {
        if (f.token >= 0) {
          next.push_back(f);
          continue;
        }
        size_t base = f.off;
        const size_t end = f.off + f.len;
        while (true) {
          const size_t m = text.substr(0, end).find(t, base);
          if (m == std::string_view::npos) {
            next.push_back({-1, base, end - base});
            break;
          }
          if (m > base) {
            next.push_back({-1, base, m - base});
          }
          next.push_back({id, 0, 0});
          base = m + t.size();
          if (base >= end) {
            break;
          }
        }
      }
      frags.swap(next);
    }
    return frags;
  }
};

// -- tokenizer -----------------------------------------------------------------------

tokenizer::tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

result<tokenizer> tokenizer::create(vocab_spec spec) {
  if (spec.model != "gpt2") {
    return make_error("tokenizer model '%s' is not supported (expected 'gpt2', the byte-level "
                      "BPE of Llama 3)",
                      spec.model.c_str());
  }
  // The names llama.cpp maps to LLAMA_VOCAB_PRE_TYPE_LLAMA3.
  if (spec.pre != "llama-bpe" && spec.pre != "llama3" && spec.pre != "llama-v3") {
    return make_error("pre-tokenizer '%s' is not supported (expected 'llama-bpe', Llama 3's; "
                      "'default' is what converters write when they do not recognise the "
                      "tokenizer)",
                      spec.pre.c_str());
  }
  if (spec.tokens.empty()) {
    return make_error("the vocabulary has no tokens");
  }
  if (spec.tokens.size() >= static_cast<size_t>(INT32_MAX / 2)) {
    return make_error("the vocabulary has %zu tokens, more than supported", spec.tokens.size());
  }
  const auto n_vocab = static_cast<int32_t>(spec.tokens.size());
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size()) {
    return make_error("token_types has %zu entries, expected %d (one per token)",
                      spec.token_types.size(), n_vocab);
  }
  if (spec.bos_id < -1 || spec.bos_id >= n_vocab) {
    return make_error("bos_id %d is out of range [0, %d)", spec.bos_id, n_vocab);
  }
  if (spec.eos_id < -1 || spec.eos_id >= n_vocab) {
    return make_error("eos_id %d is out of range [0, %d)", spec.eos_id, n_vocab);
  }
  const compiled_regex& re = llama3_regex();
  if (!re.code) {
    return make_error("%s", re.error.c_str());
  }

  auto p = std::make_unique<impl>();
  p->n_vocab = n_vocab;
  p->re = &re;
  p->bos = spec.bos_id;
  p->eos = spec.eos_id;
  p->add_bos = spec.add_bos.value_or(true);  // llama-bpe adds BOS unless told otherwise
  if (p->add_bos && p->bos < 0) {
    return make_error("add_bos is true but the vocabulary has no bos_id");
  }
  p->chat_template = std::move(spec.chat_template);

  p->texts = std::move(spec.tokens);
  p->types.resize(static_cast<size_t>(n_vocab), token_type::normal);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (!spec.token_types.empty()) {
      const int32_t t = spec.token_types[static_cast<size_t>(i)];
      if (t < 0 || t > static_cast<int32_t>(token_type::byte)) {
        return make_error("token_types[%d] is %d, expected a llama.cpp token type (0..6)", i, t);
      }
      p->types[static_cast<size_t>(i)] = static_cast<token_type>(t);
    }
    std::string& text = p->texts[static_cast<size_t>(i)];
    if (text.empty()) {
      text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp names empty tokens
    }
  }

  // Decoded pieces, lookups by text and by bytes.
  p->piece_off.reserve(static_cast<size_t>(n_vocab) + 1);
  p->text_ids.reserve(static_cast<size_t>(n_vocab));
  p->raw_ids.reserve(static_cast<size_t>(n_vocab) + spec.merges.size() / 4);
  for (int32_t i = 0; i < n_vocab; ++i) {
    const std::string& text = p->texts[static_cast<size_t>(i)];
    const token_type t = p->types[static_cast<size_t>(i)];
    p->piece_off.push_back(static_cast<uint32_t>(p->piece_arena.size()));
    if (t == token_type::normal) {
      p->piece_arena += decode_normal_text(text);
    } else if (t == token_type::control || t == token_type::unknown ||
               t == token_type::user_defined) {
      p->piece_arena += text;
    }
    if (p->piece_arena.size() > UINT32_MAX / 2) {
      return make_error("the vocabulary's token texts are too large");
    }
    p->text_ids.assign(text, i);
    if (const auto raw = byte_decode(text)) {
      p->raw_ids.assign(*raw, i);
    }
  }
  p->piece_off.push_back(static_cast<uint32_t>(p->piece_arena.size()));

  // Merges: "left right", rank = index. Strings a merge makes that are no token get
  // ids from n_vocab up; they merge on, and fall back to bytes if left at the end.
  p->merges.init(spec.merges.size());
  int32_t next_extra = n_vocab;
  const auto intern = [&](const std::string& bytes) {
    const int32_t id = p->raw_ids.get_or_insert(bytes, next_extra);
    if (id == next_extra) {
      p->extra_raw.push_back(bytes);
      ++next_extra;
    }
    return id;
  };
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const std::string& m = spec.merges[r];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      continue;  // llama.cpp ranks it as ("", ""), a pair no symbols ever form
    }
    // A side with characters other than byte characters can never match a symbol.
    const auto raw_a = byte_decode(std::string_view(m).substr(0, sp));
    const auto raw_b = byte_decode(std::string_view(m).substr(sp + 1));
    if (!raw_a || !raw_b || raw_a->empty() || raw_b->empty()) {
      continue;
    }
    if (next_extra > INT32_MAX - 3) {
      return make_error("too many merges (%zu)", spec.merges.size());
    }
    const int32_t a = intern(*raw_a);
    const int32_t b = intern(*raw_b);
    const int32_t ab = intern(*raw_a + *raw_b);
    p->merges.insert_first(pair_table::key(a, b), static_cast<int32_t>(r), ab);
  }

  // Initial symbols: one per byte (after the merges, which may have named bytes that
  // are no token).
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const int32_t id = p->raw_ids.find(std::string_view(&c, 1));
    p->byte_sym[static_cast<size_t>(b)] = id == string_table::absent ? -1 : id;
    const int32_t cid = p->text_ids.find(std::string_view(&c, 1));
    p->char_id[static_cast<size_t>(b)] = cid == string_table::absent ? -1 : cid;
  }

  // Special tokens for the partition, longest text first (ties by id, for determinism).
  for (int32_t i = 0; i < n_vocab; ++i) {
    const token_type t = p->types[static_cast<size_t>(i)];
    if (t == token_type::control || t == token_type::user_defined || t == token_type::unknown) {
      p->specials.push_back(i);
    }
  }
  std::stable_sort(p->specials.begin(), p->specials.end(), [&](int32_t a, int32_t b) {
    return p->texts[static_cast<size_t>(a)].size() > p->texts[static_cast<size_t>(b)].size();
  });
  for (size_t k = 0; k < p->specials.size(); ++k) {
    const auto first = static_cast<uint8_t>(p->texts[static_cast<size_t>(p->specials[k])][0]);
    p->specials_by_first[first].push_back(static_cast<int32_t>(k));
  }

  // End of generation: eos and the end-of-turn texts of llama.cpp's list, plus
  // <|end_of_text|> (Llama 3's end of a document).
  p->eog_flags.assign(static_cast<size_t>(n_vocab), 0);
  if (p->eos >= 0) {
    p->eog_flags[static_cast<size_t>(p->eos)] = 1;
  }
  for (const char* t : {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|end|>",
                        "<end_of_turn>", "<|endoftext|>", "<EOT>"}) {
    const int32_t id = p->text_ids.find(t);
    if (id >= 0) {
      p->eog_flags[static_cast<size_t>(id)] = 1;
    }
  }
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (p->eog_flags[static_cast<size_t>(i)]) {
      p->eog.push_back(i);
    }
  }
  return tokenizer(std::move(p));
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && impl_->add_bos) {
    out.push_back(impl_->bos);
  }
  if (text.empty()) {
    return out;
  }
  for (const fragment& f : impl_->partition(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      impl_->encode_text(text.substr(f.off, f.len), out);
    }
  }
  return out;
}

result<std::string_view> tokenizer::token_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= impl_->n_vocab) {
    return make_error("token id %d is out of range [0, %d)", id, impl_->n_vocab);
  }
  if (!render_special && is_special_type(impl_->types[static_cast<size_t>(id)])) {
    return std::string_view();
  }
  return impl_->piece(id);
}

result<std::string> tokenizer::decode(std::span<const int32_t> ids, decode_options opts) const {
  if (opts.remove_bos && impl_->add_bos && !ids.empty() && ids.front() == impl_->bos) {
    ids = ids.subspan(1);
  }
  std::string out;
  for (int32_t id : ids) {
    auto piece = token_piece(id, opts.render_special);
    if (!piece) {
      return piece.err();
    }
    out.append(*piece);
  }
  if (!opts.clean_spaces || out.empty()) {
    return out;
  }
  // llama_detokenize's three clean-up passes, byte for byte.
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

int32_t tokenizer::n_vocab() const { return impl_->n_vocab; }
int32_t tokenizer::bos_id() const { return impl_->bos; }
int32_t tokenizer::eos_id() const { return impl_->eos; }
bool tokenizer::add_bos() const { return impl_->add_bos; }

const std::string& tokenizer::token_text(int32_t id) const {
  BATON_ASSERT(id >= 0 && id < impl_->n_vocab);
  return impl_->texts[static_cast<size_t>(id)];
}

token_type tokenizer::type(int32_t id) const {
  BATON_ASSERT(id >= 0 && id < impl_->n_vocab);
  return impl_->types[static_cast<size_t>(id)];
}

std::optional<int32_t> tokenizer::find_token(std::string_view text) const {
  const int32_t id = impl_->text_ids.find(text);
  if (id == string_table::absent) {
    return std::nullopt;
  }
  return id;
}

bool tokenizer::is_eog(int32_t id) const {
  return id >= 0 && id < impl_->n_vocab && impl_->eog_flags[static_cast<size_t>(id)] != 0;
}

const std::vector<int32_t>& tokenizer::eog_ids() const { return impl_->eog; }

const std::optional<std::string>& tokenizer::chat_template() const {
  return impl_->chat_template;
}

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
    if (b >= 0xC2 && b <= 0xF4 && utf8_len(b) > back) {
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
