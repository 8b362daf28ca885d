// Byte-pair encoding of one pre-token, as llama.cpp (c392e509, llm_tokenizer_bpe) does
// it: lowest merge rank first, leftmost on ties; a pre-token that is itself a token is
// emitted whole (`ignore_merges`); a piece left without a token falls back to the tokens
// of its single bytes. Its own file because it is the tokenizer's hot loop and holds the
// merge table; the tokenizer facade (tokenizer.cpp) feeds it the pre-tokenizer's words.
// Every token is keyed by the bytes it decodes to, and merges are pairs of such ids, so
// no GPT-2 unicode strings are built while encoding.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/system/error.hpp"
#include "runtime/text/token_tables.hpp"

namespace baton::tokenizer_detail {

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

class bpe_merges {
 public:
  /// The merge table of a vocabulary: `texts` are the n_vocab token texts (GPT-2
  /// byte-to-unicode form), `merges` the "left right" merges in rank order, `text_ids`
  /// the id of each exact token text (for the one-byte fallback).
  static result<bpe_merges> create(std::span<const std::string> texts,
                                   std::span<const std::string> merges,
                                   const string_table& text_ids);

  /// Appends the tokens of one pre-token `w` (its bytes) to `out`.
  void encode_word(std::string_view w, bpe_scratch& sc, std::vector<int32_t>& out) const;

 private:
  using merge = bpe_scratch::pair;

  merge find_merge(int32_t a, int32_t b) const {
    if (a < 0 || b < 0) {
      return {};
    }
    const auto* s = merges_.find(pair_table::key(a, b));
    return s ? merge{s->rank, s->merged} : merge{};
  }

  /// A final BPE symbol: its token, or llama.cpp's fallback to one-byte texts.
  void emit(int32_t id, std::string_view bytes, std::vector<int32_t>& out) const;
  /// Words longer than k_scan_max: llama.cpp's priority queue.
  void encode_word_heap(std::string_view w, bpe_scratch& sc, std::vector<int32_t>& out) const;

  // -- member variables -------------------------------------------------------
  int32_t n_vocab_ = 0;
  string_table raw_ids_;                 // bytes -> id; ids >= n_vocab are merge-only strings
  std::vector<std::string> extra_raw_;  // bytes of the ids >= n_vocab
  pair_table merges_;
  std::array<int32_t, 256> byte_sym_{};  // id of each single byte (-1: none)
  std::array<int32_t, 256> char_id_{};   // id of each one-byte text (fallback)
};

}  // namespace baton::tokenizer_detail
