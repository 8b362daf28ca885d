// The byte-pair encoder of bpe.hpp: building the merge table from a vocabulary, and
// merging one pre-token.
#include "runtime/text/bpe.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

#include "runtime/text/utf8.hpp"

namespace baton::tokenizer_detail {

namespace {

// Words up to this many bytes merge by scanning for the best pair (fast for short
// words); longer ones use a heap, as llama.cpp does, to stay O(n log n).
constexpr size_t k_scan_max = 256;

}  // namespace

result<bpe_merges> bpe_merges::create(std::span<const std::string> texts,
                                      std::span<const std::string> merges,
                                      const string_table& text_ids) {
  bpe_merges bpe;
  const auto n_vocab = static_cast<int32_t>(texts.size());
  bpe.n_vocab_ = n_vocab;
  bpe.raw_ids_.reserve(texts.size() + merges.size() / 4);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (const auto raw = byte_decode(texts[static_cast<size_t>(i)])) {
      bpe.raw_ids_.assign(*raw, i);
    }
  }

  // Merges: "left right", rank = index. Strings a merge makes that are no token get
  // ids from n_vocab up; they merge on, and fall back to bytes if left at the end.
  bpe.merges_.init(merges.size());
  int32_t next_extra = n_vocab;
  const auto intern = [&](const std::string& bytes) {
    const int32_t id = bpe.raw_ids_.get_or_insert(bytes, next_extra);
    if (id == next_extra) {
      bpe.extra_raw_.push_back(bytes);
      ++next_extra;
    }
    return id;
  };
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
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
      return make_error("too many merges (%zu)", merges.size());
    }
    const int32_t a = intern(*raw_a);
    const int32_t b = intern(*raw_b);
    const int32_t ab = intern(*raw_a + *raw_b);
    bpe.merges_.insert_first(pair_table::key(a, b), static_cast<int32_t>(r), ab);
  }

  // Initial symbols: one per byte (after the merges, which may have named bytes that
  // are no token).
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const int32_t id = bpe.raw_ids_.find(std::string_view(&c, 1));
    bpe.byte_sym_[static_cast<size_t>(b)] = id == string_table::absent ? -1 : id;
    const int32_t cid = text_ids.find(std::string_view(&c, 1));
    bpe.char_id_[static_cast<size_t>(b)] = cid == string_table::absent ? -1 : cid;
  }
  return bpe;
}

void bpe_merges::emit(int32_t id, std::string_view bytes, std::vector<int32_t>& out) const {
  if (id >= 0 && id < n_vocab_) {
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
    const int32_t t = char_id_[static_cast<uint8_t>(c)];
    if (t >= 0) {
      out.push_back(t);
    }
  }
}

void bpe_merges::encode_word(std::string_view w, bpe_scratch& sc,
                             std::vector<int32_t>& out) const {
  const size_t n = w.size();
  if (n == 0) {
    return;
  }
  // ignore_merges: a word that is a token is that token.
  const int32_t whole = raw_ids_.find(w);
  if (whole >= 0 && whole < n_vocab_) {
    out.push_back(whole);
    return;
  }
  if (n == 1) {
    emit(byte_sym_[static_cast<uint8_t>(w[0])], w, out);
    return;
  }
  if (n > k_scan_max) {
    encode_word_heap(w, sc, out);
    return;
  }
  sc.ids.resize(n);
  sc.lens.resize(n);
  sc.pairs.resize(n);
  int32_t* ids = sc.ids.data();
  int32_t* lens = sc.lens.data();
  merge* pairs = sc.pairs.data();  // pairs[i]: symbols i and i + 1
  for (size_t i = 0; i < n; ++i) {
    ids[i] = byte_sym_[static_cast<uint8_t>(w[i])];
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

void bpe_merges::encode_word_heap(std::string_view w, bpe_scratch& sc,
                                  std::vector<int32_t>& out) const {
  const auto n = static_cast<int32_t>(w.size());
  sc.ids.resize(w.size());
  sc.lens.resize(w.size());
  sc.prev.resize(w.size());
  sc.next.resize(w.size());
  sc.heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    sc.ids[i] = byte_sym_[static_cast<uint8_t>(w[i])];
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

}  // namespace baton::tokenizer_detail
