// The two hash tables the tokenizer looks tokens up in on its hot path: `string_table`
// (a token's bytes or text -> id) and `pair_table` (a pair of ids -> merge rank and
// merged id). Both are open-addressing tables over flat arrays; they are header-only so
// that the BPE loop inlines them, as it did when they sat in tokenizer.cpp. Internal to
// runtime/text/ (namespace `tokenizer_detail`).
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace baton::tokenizer_detail {

inline uint64_t hash_bytes(const char* p, size_t n) {
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

}  // namespace baton::tokenizer_detail
