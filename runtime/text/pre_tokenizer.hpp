// Llama 3's pre-tokenizer: the regex that cuts text (with no special tokens in it) into
// the words BPE then merges one by one. It is its own file because it is the one part
// of the tokenizer that depends on PCRE2 (compiled once per process, JIT when the
// platform has it), and because its pattern is where baton and llama.cpp (c392e509)
// could most easily disagree: see the pattern's comment in pre_tokenizer.cpp.
#pragma once

#include <cstddef>
#include <string_view>

#include "runtime/system/error.hpp"

namespace baton::tokenizer_detail {

class pre_tokenizer {
 public:
  /// Llama 3's pre-tokenizer, compiled on first use; the error says why PCRE2 rejected
  /// the pattern.
  static result<const pre_tokenizer*> llama3();

  /// A pre-token: bytes [begin, end) of the subject.
  struct word {
    size_t begin;
    size_t end;
  };

  /// The pre-token of `subject` (valid UTF-8) that starts at `pos < subject.size()`.
  word next_word(std::string_view subject, size_t pos) const;

  /// Calls `on_word(begin, end)` for each pre-token of `subject` (valid UTF-8), in order.
  template <class F>
  void split(std::string_view subject, F&& on_word) const {
    size_t pos = 0;
    while (pos < subject.size()) {
      const word w = next_word(subject, pos);
      on_word(w.begin, w.end);
      pos = w.end;
    }
  }

 private:
  pre_tokenizer() = default;

  // -- member variables -------------------------------------------------------
  void* code_ = nullptr;  // pcre2_code*, kept out of this header
  bool jit_ = false;
};

}  // namespace baton::tokenizer_detail
