// GGUF values and the opened file of gguf.hpp: value accessors, and a gguf_file's
// lookups and typed getters. Parsing is in gguf_reader.cpp, writing in gguf_writer.cpp,
// the mapping of the file in runtime/system/files.cpp.
#include "runtime/model/gguf.hpp"

#include <limits>
#include <sstream>

namespace baton {

// -- gguf_value ------------------------------------------------------------------

std::string_view gguf_type_name(gguf_type t) {
  static constexpr std::string_view names[] = {"uint8", "int8",    "uint16", "int16", "uint32",
                                               "int32", "float32", "bool",   "string", "array",
                                               "uint64", "int64",  "float64"};
  auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "unknown";
}

bool gguf_value::is_integer() const {
  switch (type()) {
    case gguf_type::uint8:
    case gguf_type::int8:
    case gguf_type::uint16:
    case gguf_type::int16:
    case gguf_type::uint32:
    case gguf_type::int32:
    case gguf_type::uint64:
    case gguf_type::int64:
      return true;
    default:
      return false;
  }
}

std::optional<int64_t> gguf_value::as_int() const {
  return std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, uint64_t>) {
          if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return std::nullopt;
          }
          return static_cast<int64_t>(x);
        } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<int64_t>(x);
        } else {
          return std::nullopt;
        }
      },
      v);
}

std::optional<double> gguf_value::as_float() const {
  if (auto f = std::get_if<float>(&v)) {
    return *f;
  }
  if (auto d = std::get_if<double>(&v)) {
    return *d;
  }
  if (auto i = as_int()) {
    return static_cast<double>(*i);
  }
  return std::nullopt;
}

std::string gguf_value::to_display() const {
  std::ostringstream os;
  std::visit(
      [&os](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          os << x;
        } else if constexpr (std::is_same_v<T, gguf_array>) {
          os << "[" << gguf_type_name(x.type) << " x " << x.items.size() << "]";
        } else if constexpr (std::is_same_v<T, bool>) {
          os << (x ? "true" : "false");
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          os << static_cast<int>(x);
        } else {
          os << x;
        }
      },
      v);
  return os.str();
}

std::string tensor_info::shape_string() const {
  std::string s = "[";
  for (uint32_t i = 0; i < n_dims; ++i) {
    s += (i ? ", " : "") + std::to_string(ne[i]);
  }
  return s + "]";
}

// -- gguf_file -------------------------------------------------------------------

void gguf_file::release_pages(const std::byte* p, uint64_t n) const {
  if (map_) {
    map_->release_pages(p, n);
  }
}

result<gguf_file> gguf_file::open(const std::string& path) {
  auto m = mapped_file::open(path);
  if (!m) {
    return m.err();
  }
  auto f = parse((*m)->data(), (*m)->size(), path);
  if (!f) {
    return f.err();
  }
  f->map_ = std::move(*m);
  return f;
}

const gguf_value* gguf_file::find(std::string_view key) const {
  for (const auto& [k, v] : kv_) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

const tensor_info* gguf_file::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

error wrong_type(const std::string& file, std::string_view key, const gguf_value& v,
                 const char* expected) {
  return make_error("%s: metadata '%.*s' is %s, expected %s", file.c_str(),
                    static_cast<int>(key.size()), key.data(),
                    std::string(gguf_type_name(v.type())).c_str(), expected);
}

}  // namespace

result<std::optional<std::string>> gguf_file::get_string(std::string_view key) const {
  const auto* v = find(key);
  if (!v) {
    return std::optional<std::string>{};
  }
  if (const auto* s = v->as_string()) {
    return std::optional<std::string>{*s};
  }
  return wrong_type(path_, key, *v, "string");
}

result<std::optional<int64_t>> gguf_file::get_int(std::string_view key) const {
  const auto* v = find(key);
  if (!v) {
    return std::optional<int64_t>{};
  }
  if (auto i = v->as_int()) {
    return std::optional<int64_t>{*i};
  }
  return wrong_type(path_, key, *v, "an integer");
}

result<std::optional<double>> gguf_file::get_float(std::string_view key) const {
  const auto* v = find(key);
  if (!v) {
    return std::optional<double>{};
  }
  if (auto d = v->as_float()) {
    return std::optional<double>{*d};
  }
  return wrong_type(path_, key, *v, "a number");
}

result<std::optional<bool>> gguf_file::get_bool(std::string_view key) const {
  const auto* v = find(key);
  if (!v) {
    return std::optional<bool>{};
  }
  if (const auto* b = std::get_if<bool>(&v->v)) {
    return std::optional<bool>{*b};
  }
  return wrong_type(path_, key, *v, "bool");
}

}  // namespace baton
