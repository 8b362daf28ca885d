// The pre-tokenizer of pre_tokenizer.hpp. Llama 3's regex is run as llama.cpp
// (c392e509, src/unicode.cpp) runs it: ASCII-only case folding for the contractions
// (llama.cpp's adaptation) and `\s` spelled as Unicode White_Space, the set llama.cpp
// uses (PCRE2's `\s` adds U+180E); letters and numbers are PCRE2's \p{L} and \p{N}.
#include "runtime/text/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "runtime/text/utf8.hpp"

namespace baton::tokenizer_detail {

namespace {

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

}  // namespace

result<const pre_tokenizer*> pre_tokenizer::llama3() {
  struct compiled {
    pre_tokenizer pt;
    std::string error;
  };
  static const compiled re = [] {
    compiled r;
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(k_llama3_pattern), PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
    if (!code) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      r.error = "pre-tokenizer regex does not compile at offset " + std::to_string(err_off) +
                ": " + reinterpret_cast<const char*>(buf);
      return r;
    }
    r.pt.code_ = code;
    r.pt.jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return r;
  }();
  if (!re.pt.code_) {
    return make_error("%s", re.error.c_str());
  }
  return &re.pt;
}

pre_tokenizer::word pre_tokenizer::next_word(std::string_view subject, size_t pos) const {
  match_state& ms = thread_match_state();
  BATON_ASSERT(ms.data != nullptr);
  const auto* code = static_cast<const pcre2_code*>(code_);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  const int rc = jit_ ? pcre2_jit_match(code, s, n, pos, 0, ms.data, ms.context)
                      : pcre2_match(code, s, n, pos, PCRE2_NO_UTF_CHECK, ms.data, ms.context);
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
    return {pos, pos + len};
  }
  return {begin, end};
}

}  // namespace baton::tokenizer_detail
