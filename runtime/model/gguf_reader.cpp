// The GGUF reader of gguf.hpp: `gguf_file::parse` and what it reads with. It trusts
// nothing: every length, count, type id and offset is checked against the bytes that
// remain before use (and against gguf_limits, so a sparse file cannot make it allocate
// without bound), and each error says where (key or tensor, byte offset) and what was
// expected. Apart from gguf.cpp because validation is most of the format's code, and the
// part the fuzzer (tests/fuzz/gguf_fuzz.cpp) exercises.
#include "runtime/model/gguf.hpp"

#include <cstring>
#include <limits>
#include <set>

namespace baton {

namespace {

constexpr uint32_t max_array_depth = 8;

/// Bounds-checked little-endian cursor over the file bytes.
class cursor {
 public:
  cursor(const std::byte* data, uint64_t size, const std::string& name, const gguf_limits& limits)
      : data_(data), size_(size), name_(name), limits_(limits) {}

  const gguf_limits& limits() const { return limits_; }

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  /// Reads a fixed-size value; `what` names the field for the error.
  template <class T>
  result<T> read(const std::string& what) {
    if (remaining() < sizeof(T)) {
      return make_error("%s: truncated file: %s at offset %llu needs %zu bytes, %llu remain",
                        name_.c_str(), what.c_str(), ull(pos_), sizeof(T), ull(remaining()));
    }
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  result<std::string> read_string(const std::string& what) {
    auto n = read<uint64_t>(what + " length");
    if (!n) {
      return n.err();
    }
    if (*n > remaining()) {
      return make_error("%s: %s: string length %llu at offset %llu runs past the end of the "
                        "file (%llu bytes remain)",
                        name_.c_str(), what.c_str(), ull(*n), ull(pos_ - 8), ull(remaining()));
    }
    if (*n > limits_.max_string_bytes) {
      return make_error("%s: %s: string length %llu at offset %llu is more than the %llu bytes "
                        "a GGUF string may have",
                        name_.c_str(), what.c_str(), ull(*n), ull(pos_ - 8),
                        ull(limits_.max_string_bytes));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(*n));
    pos_ += *n;
    return s;
  }

  static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

 private:
  // -- member variables -------------------------------------------------------
  const std::byte* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& name_;
  const gguf_limits& limits_;
};

/// What the parsed metadata takes in memory so far, against max_metadata_bytes: charged
/// before anything is allocated for it.
class memory_charge {
 public:
  memory_charge(const std::string& name, uint64_t cap) : name_(name), cap_(cap) {}

  /// Adds `n` bytes for `what` ("metadata 'tokenizer.ggml.tokens'"); errors past the cap.
  result<void> add(uint64_t n, const std::string& what) {
    if (n > cap_ - used_) {
      return make_error("%s: %s: the metadata would take more than %llu bytes in memory "
                        "(%llu so far, %llu more for this value)",
                        name_.c_str(), what.c_str(), cursor::ull(cap_), cursor::ull(used_),
                        cursor::ull(n));
    }
    used_ += n;
    return {};
  }

 private:
  // -- member variables -------------------------------------------------------
  const std::string& name_;
  uint64_t cap_;
  uint64_t used_ = 0;
};

/// Smallest encoded size of one value of `t` (for checking array counts up front).
uint64_t min_encoded_size(gguf_type t) {
  switch (t) {
    case gguf_type::uint8:
    case gguf_type::int8:
    case gguf_type::boolean:
      return 1;
    case gguf_type::uint16:
    case gguf_type::int16:
      return 2;
    case gguf_type::uint32:
    case gguf_type::int32:
    case gguf_type::float32:
      return 4;
    case gguf_type::uint64:
    case gguf_type::int64:
    case gguf_type::float64:
    case gguf_type::string:
      return 8;
    case gguf_type::array:
      return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(gguf_type::float64); }

result<gguf_value> read_value(cursor& c, gguf_type t, const std::string& what, uint32_t depth,
                              const std::string& name, memory_charge& charge) {
  switch (t) {
    case gguf_type::uint8: {
      auto v = c.read<uint8_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::int8: {
      auto v = c.read<int8_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::uint16: {
      auto v = c.read<uint16_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::int16: {
      auto v = c.read<int16_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::uint32: {
      auto v = c.read<uint32_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::int32: {
      auto v = c.read<int32_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::float32: {
      auto v = c.read<float>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::boolean: {
      auto v = c.read<uint8_t>(what);
      if (!v) {
        return v.err();
      }
      if (*v > 1) {
        return make_error("%s: %s: boolean byte is %u, expected 0 or 1", name.c_str(),
                          what.c_str(), unsigned{*v});
      }
      return gguf_value(*v == 1);
    }
    case gguf_type::uint64: {
      auto v = c.read<uint64_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::int64: {
      auto v = c.read<int64_t>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::float64: {
      auto v = c.read<double>(what);
      return v ? result<gguf_value>(gguf_value(*v)) : result<gguf_value>(v.err());
    }
    case gguf_type::string: {
      auto v = c.read_string(what);
      if (!v) {
        return v.err();
      }
      if (auto ok = charge.add(v->size(), what); !ok) {
        return ok.err();
      }
      return gguf_value(std::move(*v));
    }
    case gguf_type::array: {
      if (depth >= max_array_depth) {
        return make_error("%s: %s: arrays nested deeper than %u", name.c_str(), what.c_str(),
                          max_array_depth);
      }
      const uint64_t at = c.pos();
      auto et = c.read<uint32_t>(what + " element type");
      if (!et) {
        return et.err();
      }
      if (!valid_value_type(*et)) {
        return make_error("%s: %s: unknown array element type %u at offset %llu (expected 0..12)",
                          name.c_str(), what.c_str(), *et, cursor::ull(at));
      }
      auto n = c.read<uint64_t>(what + " count");
      if (!n) {
        return n.err();
      }
      const auto elem = static_cast<gguf_type>(*et);
      if (*n > c.remaining() / min_encoded_size(elem)) {
        return make_error("%s: %s: array count %llu at offset %llu runs past the end of the "
                          "file (%llu bytes remain)",
                          name.c_str(), what.c_str(), cursor::ull(*n), cursor::ull(at + 4),
                          cursor::ull(c.remaining()));
      }
      if (*n > c.limits().max_array_items) {
        return make_error("%s: %s: array count %llu at offset %llu is more than the %llu "
                          "elements a GGUF array may have",
                          name.c_str(), what.c_str(), cursor::ull(*n), cursor::ull(at + 4),
                          cursor::ull(c.limits().max_array_items));
      }
      // the count is now within the file's bytes, so the product cannot overflow
      if (auto ok = charge.add(*n * sizeof(gguf_value), what); !ok) {
        return ok.err();
      }
      gguf_array arr;
      arr.type = elem;
      arr.items.reserve(static_cast<size_t>(*n));
      for (uint64_t i = 0; i < *n; ++i) {
        auto item = read_value(c, elem, what, depth + 1, name, charge);
        if (!item) {
          return item.err();
        }
        arr.items.push_back(std::move(*item));
      }
      return gguf_value(std::move(arr));
    }
  }
  return make_error("%s: %s: unknown value type", name.c_str(), what.c_str());
}

}  // namespace

result<gguf_file> gguf_file::parse_header(std::vector<std::byte> header, std::string name) {
  auto bytes = std::make_shared<const std::vector<std::byte>>(std::move(header));
  auto f = parse_impl(bytes->data(), bytes->size(), std::move(name), {}, true);
  if (f) {
    f->header_ = std::move(bytes);
  }
  return f;
}

result<gguf_file> gguf_file::parse(const std::byte* data, uint64_t size, std::string name,
                                   const gguf_limits& limits) {
  return parse_impl(data, size, std::move(name), limits, false);
}

result<gguf_file> gguf_file::parse_impl(const std::byte* data, uint64_t size, std::string name,
                                        const gguf_limits& limits, bool header_only) {
  using u = unsigned long long;
  gguf_file f;
  f.path_ = std::move(name);
  f.size_ = size;
  const std::string& fn = f.path_;
  cursor c(data, size, fn, limits);

  if (size < 4) {
    return make_error("%s: truncated file: %llu bytes, a GGUF header needs at least 24",
                      fn.c_str(), u(size));
  }
  auto magic = c.read<uint32_t>("magic");
  if (*magic != gguf_magic) {
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      auto ch = static_cast<unsigned char>(data[i]);
      shown += (ch >= 32 && ch < 127) ? static_cast<char>(ch) : '?';
    }
    return make_error("%s: not a GGUF file: magic is '%s', expected 'GGUF'", fn.c_str(),
                      shown.c_str());
  }
  auto version = c.read<uint32_t>("version");
  if (!version) {
    return version.err();
  }
  if (*version != 2 && *version != 3) {
    return make_error("%s: unsupported GGUF version %u (baton reads versions 2 and 3)",
                      fn.c_str(), *version);
  }
  f.version_ = *version;
  auto n_tensors = c.read<uint64_t>("tensor count");
  if (!n_tensors) {
    return n_tensors.err();
  }
  auto n_kv = c.read<uint64_t>("metadata count");
  if (!n_kv) {
    return n_kv.err();
  }
  // Each key-value pair takes at least 8 + 4 + 1 bytes, each tensor info 8 + 4 + 4 + 8.
  if (*n_kv > c.remaining() / 13) {
    return make_error("%s: metadata count %llu at offset 16 is more than the file can hold "
                      "(%llu bytes remain)",
                      fn.c_str(), u(*n_kv), u(c.remaining()));
  }
  if (*n_tensors > c.remaining() / 24) {
    return make_error("%s: tensor count %llu at offset 8 is more than the file can hold "
                      "(%llu bytes remain)",
                      fn.c_str(), u(*n_tensors), u(c.remaining()));
  }
  // absolute caps too: a sparse file can hold any count of empty entries
  if (*n_kv > limits.max_metadata_count) {
    return make_error("%s: metadata count %llu at offset 16 is more than the %llu key-value "
                      "pairs a GGUF file may have",
                      fn.c_str(), u(*n_kv), u(limits.max_metadata_count));
  }
  if (*n_tensors > limits.max_tensor_count) {
    return make_error("%s: tensor count %llu at offset 8 is more than the %llu tensors a GGUF "
                      "file may have",
                      fn.c_str(), u(*n_tensors), u(limits.max_tensor_count));
  }
  memory_charge charge(fn, limits.max_metadata_bytes);
  using kv_pair = std::pair<std::string, gguf_value>;
  if (auto ok = charge.add(*n_kv * sizeof(kv_pair), "metadata count"); !ok) {
    return ok.err();
  }

  std::set<std::string, std::less<>> keys;
  f.kv_.reserve(static_cast<size_t>(*n_kv));
  for (uint64_t i = 0; i < *n_kv; ++i) {
    const uint64_t at = c.pos();
    auto key = c.read_string("metadata key #" + std::to_string(i));
    if (!key) {
      return key.err();
    }
    const std::string what = "metadata '" + *key + "'";
    if (auto ok = charge.add(key->size(), what + " key"); !ok) {
      return ok.err();
    }
    auto t = c.read<uint32_t>(what + " type");
    if (!t) {
      return t.err();
    }
    if (!valid_value_type(*t)) {
      return make_error("%s: %s: unknown value type %u at offset %llu (expected 0..12)",
                        fn.c_str(), what.c_str(), *t, u(c.pos() - 4));
    }
    auto value = read_value(c, static_cast<gguf_type>(*t), what, 0, fn, charge);
    if (!value) {
      return value.err();
    }
    if (!keys.insert(*key).second) {
      return make_error("%s: duplicate metadata key '%s' at offset %llu", fn.c_str(),
                        key->c_str(), u(at));
    }
    f.kv_.emplace_back(std::move(*key), std::move(*value));
  }

  if (const auto* a = f.find("general.alignment")) {
    if (a->type() != gguf_type::uint32) {
      return make_error("%s: metadata 'general.alignment' is %s, expected uint32", fn.c_str(),
                        std::string(gguf_type_name(a->type())).c_str());
    }
    const uint32_t al = std::get<uint32_t>(a->v);
    if (al == 0 || (al & (al - 1)) != 0) {
      return make_error("%s: metadata 'general.alignment' is %u, expected a power of two",
                        fn.c_str(), al);
    }
    f.alignment_ = al;
  }

  f.tensors_.reserve(static_cast<size_t>(*n_tensors));
  for (uint64_t i = 0; i < *n_tensors; ++i) {
    tensor_info ti;
    auto tname = c.read_string("tensor #" + std::to_string(i) + " name");
    if (!tname) {
      return tname.err();
    }
    ti.name = std::move(*tname);
    const std::string what = "tensor '" + ti.name + "'";
    auto n_dims = c.read<uint32_t>(what + " dimension count");
    if (!n_dims) {
      return n_dims.err();
    }
    if (*n_dims == 0 || *n_dims > gguf_max_dims) {
      return make_error("%s: %s: %u dimensions, expected 1 to %u", fn.c_str(), what.c_str(),
                        *n_dims, gguf_max_dims);
    }
    ti.n_dims = *n_dims;
    for (uint32_t d = 0; d < ti.n_dims; ++d) {
      auto ne = c.read<int64_t>(what + " dimension " + std::to_string(d));
      if (!ne) {
        return ne.err();
      }
      if (*ne <= 0) {
        return make_error("%s: %s: dimension %u is %lld, expected > 0", fn.c_str(),
                          what.c_str(), d, static_cast<long long>(*ne));
      }
      ti.ne[d] = *ne;
    }
    // Elements must fit in int64 (and so their bytes in uint64).
    int64_t n_el = 1;
    for (uint32_t d = 0; d < ti.n_dims; ++d) {
      if (__builtin_mul_overflow(n_el, ti.ne[d], &n_el) || n_el > (int64_t{1} << 50)) {
        return make_error("%s: %s: shape %s has too many elements", fn.c_str(), what.c_str(),
                          ti.shape_string().c_str());
      }
    }
    auto type_id = c.read<uint32_t>(what + " type");
    if (!type_id) {
      return type_id.err();
    }
    auto tt = type_traits(*type_id);
    if (!tt) {
      return make_error("%s: %s: unknown tensor type id %u", fn.c_str(), what.c_str(),
                        *type_id);
    }
    ti.type = static_cast<ggml_type>(*type_id);
    if (ti.ne[0] % tt->block_size != 0) {
      return make_error("%s: %s: first dimension %lld is not a multiple of the %s block "
                        "size %u",
                        fn.c_str(), what.c_str(), static_cast<long long>(ti.ne[0]),
                        std::string(tt->name).c_str(), tt->block_size);
    }
    ti.n_bytes = static_cast<uint64_t>(n_el) / tt->block_size * tt->type_size;
    auto off = c.read<uint64_t>(what + " offset");
    if (!off) {
      return off.err();
    }
    if (*off % f.alignment_ != 0) {
      return make_error("%s: %s: data offset %llu is not a multiple of the alignment %u",
                        fn.c_str(), what.c_str(), u(*off), f.alignment_);
    }
    ti.offset = *off;
    if (f.tensor_index_.count(ti.name) != 0) {
      return make_error("%s: duplicate tensor name '%s'", fn.c_str(), ti.name.c_str());
    }
    f.tensor_index_.emplace(ti.name, f.tensors_.size());
    f.tensors_.push_back(std::move(ti));
  }

  const uint64_t end_of_infos = c.pos();
  f.data_offset_ = (end_of_infos + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (!f.tensors_.empty() && f.data_offset_ > size) {
    return make_error("%s: truncated file: tensor data should start at offset %llu but the "
                      "file is %llu bytes",
                      fn.c_str(), u(f.data_offset_), u(size));
  }
  if (header_only) {
    return f;  // sizes and offsets as read; no data to check them against
  }
  const uint64_t data_size = size >= f.data_offset_ ? size - f.data_offset_ : 0;
  for (auto& ti : f.tensors_) {
    if (ti.offset > data_size || ti.n_bytes > data_size - ti.offset) {
      return make_error("%s: tensor '%s' (%s %s, %llu bytes at data offset %llu) runs past "
                        "the end of the file (the data section holds %llu bytes)",
                        fn.c_str(), ti.name.c_str(), std::string(traits(ti.type).name).c_str(),
                        ti.shape_string().c_str(), u(ti.n_bytes), u(ti.offset), u(data_size));
    }
    ti.data = data + f.data_offset_ + ti.offset;
  }
  return f;
}

}  // namespace baton
