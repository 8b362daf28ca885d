// Special tokens of special_tokens.hpp: the partition of a text at their occurrences and
// the end-of-generation ids, as llama.cpp (c392e509, src/llama-vocab.cpp) computes them.
#include "runtime/text/special_tokens.hpp"

#include <algorithm>

namespace baton::tokenizer_detail {

special_tokens::special_tokens(std::span<const std::string> texts,
                               std::span<const token_type> types) {
  for (size_t i = 0; i < texts.size(); ++i) {
    const token_type t = types[i];
    if (t == token_type::control || t == token_type::user_defined || t == token_type::unknown) {
      specials_.push_back({static_cast<int32_t>(i), is_special_type(t), texts[i]});
    }
  }
  // Longest text first (ties by id, for determinism).
  std::stable_sort(specials_.begin(), specials_.end(), [](const special& a, const special& b) {
    return a.text.size() > b.text.size();
  });
  for (size_t k = 0; k < specials_.size(); ++k) {
    const auto first = static_cast<uint8_t>(specials_[k].text[0]);
    by_first_byte_[first].push_back(static_cast<int32_t>(k));
  }
}

std::vector<fragment> special_tokens::partition(std::string_view text, bool parse_special) const {
  std::vector<fragment> frags{{-1, 0, text.size()}};
  // Which special tokens occur at all (most texts: none, and then no pass is made).
  std::vector<uint8_t> occurs(specials_.size(), 0);
  bool any = false;
  for (size_t p = 0; p < text.size(); ++p) {
    for (int32_t k : by_first_byte_[static_cast<uint8_t>(text[p])]) {
      const special& s = specials_[static_cast<size_t>(k)];
      if (!occurs[static_cast<size_t>(k)] && (parse_special || !s.needs_parse_special) &&
          text.compare(p, s.text.size(), s.text) == 0) {
        occurs[static_cast<size_t>(k)] = 1;
        any = true;
      }
    }
  }
  if (!any) {
    return frags;
  }
  std::vector<fragment> next;
  for (size_t k = 0; k < specials_.size(); ++k) {
    if (!occurs[k]) {
      continue;
    }
    const int32_t id = specials_[k].id;
    const std::string& t = specials_[k].text;
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

std::vector<int32_t> end_of_generation_ids(int32_t eos, const string_table& text_ids) {
  std::vector<int32_t> ids;
  if (eos >= 0) {
    ids.push_back(eos);
  }
  for (const char* t : {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|end|>",
                        "<end_of_turn>", "<|endoftext|>", "<EOT>"}) {
    const int32_t id = text_ids.find(t);
    if (id >= 0) {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace baton::tokenizer_detail
