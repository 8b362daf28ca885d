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
             std::vector<token_trie::node>& out, token_trie::same_map& same, size_t& max_depth) {
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
  std::vector<int32_t> all_ids, special_ids, plain_ids;
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
    plain_ids.push_back(id);
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
  flatten(t->pieces, plain_ids, t->plain, t->same_bytes_plain, t->max_depth);
  t->eog = tok.eog_ids();
  return t;
}

// -- the cache ------------------------------------------------------------------------

mask_cache::entry* mask_cache::find(std::string_view key) {
  const auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

namespace {

size_t entry_bytes(const std::string& key, const mask_cache::entry& e) {
  return key.size() + e.ids.size() * sizeof(int32_t) + e.bits.size() * sizeof(uint64_t) + 64;
}

void add_entry(const mask_cache::entry& e, std::vector<uint64_t>& mask) {
  for (int32_t id : e.ids) {
    set_bit(mask, id);
  }
  for (size_t w = 0; w < e.bits.size(); ++w) {
    mask[w] |= e.bits[w];
  }
}

}  // namespace

void mask_cache::put(const std::string& key, const std::vector<int32_t>& allowed,
                     int64_t max_close, size_t words) {
  entry e;
  e.max_close = max_close;
  if (allowed.size() * sizeof(int32_t) <= words * sizeof(uint64_t)) {
    e.ids = allowed;
  } else {
    e.bits.assign(words, 0);
    for (int32_t id : allowed) {
      set_bit(e.bits, id);
    }
  }
  if (const auto it = entries_.find(key); it != entries_.end()) {
    bytes_ -= entry_bytes(key, it->second);
    entries_.erase(it);
  }
  const size_t size = entry_bytes(key, e);
  if (bytes_ + size > k_max_bytes) {
    entries_.clear();
    bytes_ = 0;
  }
  bytes_ += size;
  entries_.emplace(key, std::move(e));
}

// -- the masks ------------------------------------------------------------------------

json_constraint::json_constraint(std::shared_ptr<json_grammar> g,
                                 std::shared_ptr<const token_trie> trie)
    : matcher_(g), trie_(std::move(trie)) {
  if (!g->masks || !g->masks->over(trie_)) {
    g->masks = std::make_shared<mask_cache>(trie_);
  }
  cache_ = g->masks;
  state_ = matcher_.start();
  depth_states_.resize(trie_->max_depth + 1);
  depth_tops_.resize(trie_->max_depth + 1);
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
  if (matcher_.in_content(state_)) {
    plain_seen_.clear();
    uint32_t begin = 0;
    for (uint32_t end : state_.ends) {
      plain_tokens(state_.frames.data() + begin, end - begin, remaining, mask);
      begin = end;
    }
    walk_state(trie_->special, trie_->same_bytes_special, remaining, mask);
    return;
  }
  walk_state(trie_->all, trie_->same_bytes_all, remaining, mask);
}

void json_constraint::walk_state(const std::vector<token_trie::node>& nodes,
                                 const token_trie::same_map& same, int64_t remaining,
                                 std::vector<uint64_t>& mask) {
  key_.assign(1, &nodes == &trie_->all ? 'a' : 's');
  matcher_.state_key(state_, static_cast<int64_t>(trie_->max_depth), key_);
  const bool budget = remaining >= 0;
  if (const auto* e = cache_->find(key_);
      e != nullptr && (!budget || (e->max_close >= 0 && e->max_close <= remaining - 1))) {
    add_entry(*e, mask);
    return;
  }
  walk(nodes, same, budget);
  keep_found(remaining, 0, budget, mask);
}

void json_constraint::plain_tokens(const frame* st, size_t n, int64_t remaining,
                                   std::vector<uint64_t>& mask) {
  const frame& top = st[n - 1];
  const frame* parent = n >= 2 ? &st[n - 2] : nullptr;
  const bool budget = remaining >= 0;
  const int64_t below = budget ? matcher_.close_below(st, n) : 0;
  key_.assign(1, 'p');
  matcher_.plain_key(parent, top, static_cast<int64_t>(trie_->max_depth), key_);
  // threads alike at the top (and with a budget, in the cost under it) allow alike
  std::string done = key_;
  if (budget) {
    done.append(reinterpret_cast<const char*>(&below), sizeof below);
  }
  if (std::find(plain_seen_.begin(), plain_seen_.end(), done) != plain_seen_.end()) {
    return;
  }
  plain_seen_.push_back(std::move(done));
  const auto rule = matcher_.plain_rule_of(parent, top);
  const int64_t far = json_matcher::k_infinite;
  if (rule.free && (!budget || std::min(far, rule.close_bound + below) <= remaining - 1)) {
    const int32_t last = token_trie::k_char_buckets - 1;
    const int64_t more = rule.max_chars;
    const bool every = more < 0 || more >= trie_->max_plain_chars;
    const auto& upto =
        trie_->plain_upto[static_cast<size_t>(every ? last : std::min<int64_t>(more, last - 1))];
    for (size_t w = 0; w < upto.size(); ++w) {
      mask[w] |= upto[w];
    }
    if (every) {
      return;
    }
    for (size_t i = 0; more >= last && i < trie_->plain_long.size(); ++i) {
      if (trie_->plain_long_chars[i] <= more) {
        set_bit(mask, trie_->plain_long[i]);
      }
    }
    return;
  }
  if (const auto* e = cache_->find(key_);
      e != nullptr &&
      (!budget || (e->max_close >= 0 && std::min(far, e->max_close + below) <= remaining - 1))) {
    add_entry(*e, mask);
    return;
  }
  walk_plain(parent, top, budget);
  keep_found(remaining, below, budget, mask);
}

void json_constraint::walk(const std::vector<token_trie::node>& nodes,
                           const token_trie::same_map& same, bool budget) {
  found_.clear();
  found_close_.clear();
  matcher_.walk_root(state_);
  const size_t n = nodes.size();
  for (size_t i = 0; i < n;) {
    const auto& nd = nodes[i];
    const auto* parent = nd.depth == 1 ? nullptr : &depth_states_[nd.depth - 1];
    auto& here = depth_states_[nd.depth];
    if (!matcher_.walk_step(parent, nd.byte, here)) {
      i = nd.skip;
      continue;
    }
    if (nd.token >= 0) {
      const int64_t close = budget ? matcher_.min_close_bytes(here) : 0;
      found_.push_back(nd.token);
      if (nd.more) {
        const auto& others = same.at(static_cast<uint32_t>(i));
        found_.insert(found_.end(), others.begin(), others.end());
      }
      if (budget) {
        found_close_.resize(found_.size(), close);
      }
    }
    ++i;
  }
}

void json_constraint::walk_plain(const frame* parent, const frame& top, bool budget) {
  found_.clear();
  found_close_.clear();
  const auto& nodes = trie_->plain;
  depth_tops_[0] = top;
  const size_t n = nodes.size();
  for (size_t i = 0; i < n;) {
    const auto& nd = nodes[i];
    frame& here = depth_tops_[nd.depth];
    here = depth_tops_[nd.depth - 1];
    if (!matcher_.plain_byte(parent, here, nd.byte)) {
      i = nd.skip;
      continue;
    }
    if (nd.token >= 0) {
      const int64_t close = budget ? matcher_.close_top(parent, here) : 0;
      found_.push_back(nd.token);
      if (nd.more) {
        const auto& others = trie_->same_bytes_plain.at(static_cast<uint32_t>(i));
        found_.insert(found_.end(), others.begin(), others.end());
      }
      if (budget) {
        found_close_.resize(found_.size(), close);
      }
    }
    ++i;
  }
}

void json_constraint::keep_found(int64_t remaining, int64_t below, bool budget,
                                 std::vector<uint64_t>& mask) {
  int64_t max_close = -1;
  if (budget) {
    max_close = 0;
    for (int64_t c : found_close_) {
      max_close = std::max(max_close, c);
    }
  }
  cache_->put(key_, found_, max_close, mask.size());
  const int64_t far = json_matcher::k_infinite;
  for (size_t i = 0; i < found_.size(); ++i) {
    if (!budget || std::min(far, found_close_[i] + below) <= remaining - 1) {
      set_bit(mask, found_[i]);
    }
  }
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
