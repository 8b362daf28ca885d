// Token tries and the mask walk (see token_mask.hpp).
#include "runtime/grammar/token_mask.hpp"

#include <algorithm>
#include <map>

#include "runtime/text/tokenizer.hpp"

namespace baton::grammar {

namespace {

/// Code points in `s` when it is plain string content (no quote, backslash or control
/// byte; whole, well-formed UTF-8 characters), else -1.
int32_t plain_chars(std::string_view s) {
  int32_t n = 0;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      if (b < 0x20 || b == '"' || b == '\\') {
        return -1;
      }
      ++i;
    } else {
      size_t len = 0;
      uint8_t lo = 0x80, hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
      } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        lo = b == 0xE0 ? 0xA0 : 0x80;
        hi = b == 0xED ? 0x9F : 0xBF;
      } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
      } else {
        return -1;
      }
      if (i + len > s.size()) {
        return -1;
      }
      for (size_t k = 1; k < len; ++k) {
        const auto c = static_cast<uint8_t>(s[i + k]);
        if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) {
          return -1;
        }
      }
      i += len;
    }
    ++n;
  }
  return n;
}

/// Depth-first nodes of the trie of `ids`' pieces.
void flatten(const std::vector<std::string>& pieces, std::vector<int32_t> ids,
             std::vector<token_trie::node>& out,
             std::unordered_map<uint32_t, std::vector<int32_t>>& same, size_t& max_depth) {
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    const auto& pa = pieces[static_cast<size_t>(a)];
    const auto& pb = pieces[static_cast<size_t>(b)];
    return pa != pb ? pa < pb : a < b;
  });
  // sorted pieces: each node is a prefix; a stack of open nodes gives the subtrees' ends
  std::vector<uint32_t> open;  // node index per depth - 1
  std::string_view prev;
  for (int32_t id : ids) {
    const std::string_view p = pieces[static_cast<size_t>(id)];
    size_t common = 0;
    while (common < p.size() && common < prev.size() && p[common] == prev[common] &&
           common < open.size()) {
      ++common;
    }
    while (open.size() > common) {
      out[open.back()].skip = static_cast<uint32_t>(out.size());
      open.pop_back();
    }
    if (common == p.size()) {
      // same bytes as the previous token
      const uint32_t at = open.back();
      out[at].more = true;
      same[at].push_back(id);
      prev = p;
      continue;
    }
    for (size_t d = common; d < p.size(); ++d) {
      token_trie::node nd{};
      nd.byte = static_cast<uint8_t>(p[d]);
      nd.depth = static_cast<uint16_t>(d + 1);
      nd.token = d + 1 == p.size() ? id : -1;
      open.push_back(static_cast<uint32_t>(out.size()));
      out.push_back(nd);
    }
    max_depth = std::max(max_depth, p.size());
    prev = p;
  }
  while (!open.empty()) {
    out[open.back()].skip = static_cast<uint32_t>(out.size());
    open.pop_back();
  }
}

void set_bit(std::vector<uint64_t>& mask, int32_t id) {
  mask[static_cast<size_t>(id) / 64] |= uint64_t{1} << (static_cast<size_t>(id) % 64);
}

}  // namespace

std::shared_ptr<const token_trie> token_trie::build(const tokenizer& tok) {
  auto t = std::make_shared<token_trie>();
  t->n_vocab = tok.n_vocab();
  const size_t words = (static_cast<size_t>(t->n_vocab) + 63) / 64;
  t->pieces.resize(static_cast<size_t>(t->n_vocab));
  t->plain_upto.assign(k_char_buckets, std::vector<uint64_t>(words, 0));
  std::vector<int32_t> all_ids, special_ids;
  for (int32_t id = 0; id < t->n_vocab; ++id) {
    const auto type = tok.type(id);
    if (type != token_type::normal && type != token_type::user_defined) {
      continue;
    }
    auto piece = tok.token_piece(id, true);
    if (!piece || piece->empty()) {
      continue;
    }
    t->pieces[static_cast<size_t>(id)] = std::string(*piece);
    all_ids.push_back(id);
    const int32_t chars = plain_chars(*piece);
    if (chars < 0) {
      special_ids.push_back(id);
      continue;
    }
    // bucket k < last: at most k code points; the last bucket: every plain token
    const int32_t last = k_char_buckets - 1;
    for (int32_t k = std::min(chars, last); k < k_char_buckets; ++k) {
      set_bit(t->plain_upto[static_cast<size_t>(k)], id);
    }
    if (chars >= last) {
      t->plain_long.push_back(id);
      t->plain_long_chars.push_back(chars);
    }
    t->max_plain_chars = std::max(t->max_plain_chars, chars);
  }
  flatten(t->pieces, all_ids, t->all, t->same_bytes_all, t->max_depth);
  flatten(t->pieces, special_ids, t->special, t->same_bytes_special, t->max_depth);
  t->eog = tok.eog_ids();
  return t;
}

json_constraint::json_constraint(std::shared_ptr<json_grammar> g,
                                 std::shared_ptr<const token_trie> trie)
    : matcher_(std::move(g)), trie_(std::move(trie)) {
  state_ = matcher_.start();
  depth_states_.resize(trie_->max_depth + 1);
}

void json_constraint::walk(const std::vector<token_trie::node>& nodes,
                           const std::unordered_map<uint32_t, std::vector<int32_t>>& same,
                           int64_t remaining, std::vector<uint64_t>& mask) {
  const size_t n = nodes.size();
  for (size_t i = 0; i < n;) {
    const auto& nd = nodes[i];
    const match_state& parent = nd.depth == 1 ? state_ : depth_states_[nd.depth - 1];
    match_state& here = depth_states_[nd.depth];
    if (!matcher_.step(parent, nd.byte, here)) {
      i = nd.skip;
      continue;
    }
    if (nd.token >= 0 && (remaining < 0 || matcher_.min_close_bytes(here) <= remaining - 1)) {
      set_bit(mask, nd.token);
      if (nd.more) {
        for (int32_t id : same.at(static_cast<uint32_t>(i))) {
          set_bit(mask, id);
        }
      }
    }
    ++i;
  }
}

void json_constraint::fill_mask(int64_t remaining, std::vector<uint64_t>& mask) {
  const size_t words = (static_cast<size_t>(trie_->n_vocab) + 63) / 64;
  mask.assign(words, 0);
  if (finished_ || state_.dead()) {
    return;
  }
  if (matcher_.accepting(state_)) {
    for (int32_t id : trie_->eog) {
      set_bit(mask, id);
    }
  }
  if (remaining == 0) {
    return;
  }
  int64_t more_chars = -1;
  const bool budget_ok = remaining < 0 || matcher_.min_close_bytes(state_) <= remaining - 1;
  if (budget_ok && matcher_.in_free_string(state_, more_chars)) {
    // plain tokens keep the string open and its closing cost unchanged or lower
    const int32_t last = token_trie::k_char_buckets - 1;
    if (more_chars < 0 || more_chars >= trie_->max_plain_chars) {
      const auto& every = trie_->plain_upto[static_cast<size_t>(last)];
      for (size_t w = 0; w < words; ++w) {
        mask[w] |= every[w];
      }
    } else {
      const auto k = static_cast<size_t>(std::min<int64_t>(more_chars, last - 1));
      const auto& upto = trie_->plain_upto[k];
      for (size_t w = 0; w < words; ++w) {
        mask[w] |= upto[w];
      }
      for (size_t i = 0; more_chars >= last && i < trie_->plain_long.size(); ++i) {
        if (trie_->plain_long_chars[i] <= more_chars) {
          set_bit(mask, trie_->plain_long[i]);
        }
      }
    }
    walk(trie_->special, trie_->same_bytes_special, remaining, mask);
    return;
  }
  walk(trie_->all, trie_->same_bytes_all, remaining, mask);
}

bool json_constraint::commit(int32_t id) {
  if (finished_ || id < 0 || id >= trie_->n_vocab) {
    return false;
  }
  if (std::find(trie_->eog.begin(), trie_->eog.end(), id) != trie_->eog.end()) {
    if (!matcher_.accepting(state_)) {
      return false;
    }
    finished_ = true;
    return true;
  }
  const std::string& piece = trie_->pieces[static_cast<size_t>(id)];
  if (piece.empty()) {
    return false;
  }
  match_state s = state_;
  if (!matcher_.feed(s, piece)) {
    return false;
  }
  state_ = std::move(s);
  return true;
}

}  // namespace baton::grammar
