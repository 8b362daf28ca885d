// GGUF reader and writer of gguf.hpp. The reader trusts nothing: every length,
// count, type id and offset is checked against the bytes that remain before use,
// and each error says where (key or tensor, byte offset) and what was expected.
#include "runtime/model/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>

namespace baton {

namespace {

constexpr uint32_t gguf_magic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t max_dims = 4;
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

// -- mapped_file -----------------------------------------------------------------

namespace {

/// "a FIFO", "a directory": what a path that is not a regular file is, for messages.
const char* file_kind(mode_t mode) {
  if (S_ISFIFO(mode)) {
    return "a FIFO";
  }
  if (S_ISDIR(mode)) {
    return "a directory";
  }
  if (S_ISCHR(mode)) {
    return "a character device";
  }
  if (S_ISBLK(mode)) {
    return "a block device";
  }
  if (S_ISSOCK(mode)) {
    return "a socket";
  }
  return "not a file";
}

}  // namespace

result<int> open_regular_file(const std::string& path, const char* what) {
  const std::string the = what ? std::string(" the ") + what : std::string();
  // stat first, so a device is never opened (opening some has effects); then open without
  // blocking (a FIFO swapped in meanwhile must not wait for a writer) and check the
  // descriptor itself, which is what will be read
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return make_error("%s: cannot open%s: %s", path.c_str(), the.c_str(), std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error("%s: not a regular file (%s)", path.c_str(), file_kind(st.st_mode));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return make_error("%s: cannot open%s: %s", path.c_str(), the.c_str(), std::strerror(errno));
  }
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return make_error("%s: cannot stat: %s", path.c_str(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error("%s: not a regular file (%s)", path.c_str(), file_kind(st.st_mode));
  }
  return fd;
}

result<std::string> read_regular_file(const std::string& path, uint64_t max_bytes,
                                      const char* what) {
  auto fd = open_regular_file(path, what);
  if (!fd) {
    return fd.err();
  }
  struct stat st {};
  if (::fstat(*fd, &st) != 0) {
    const int e = errno;
    ::close(*fd);
    return make_error("%s: cannot stat the %s: %s", path.c_str(), what, std::strerror(e));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(*fd);
    return make_error("%s: the %s is %llu bytes, more than the %llu a %s may have",
                      path.c_str(), what, static_cast<unsigned long long>(st.st_size),
                      static_cast<unsigned long long>(max_bytes), what);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(*fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int e = errno;
      ::close(*fd);
      return make_error("%s: cannot read the %s: %s", path.c_str(), what, std::strerror(e));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {  // grew while being read
      ::close(*fd);
      return make_error("%s: the %s grew past the %llu bytes a %s may have", path.c_str(), what,
                        static_cast<unsigned long long>(max_bytes), what);
    }
  }
  ::close(*fd);
  return out;
}

result<std::shared_ptr<mapped_file>> mapped_file::open(const std::string& path) {
  auto opened = open_regular_file(path);
  if (!opened) {
    return opened.err();
  }
  const int fd = *opened;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return make_error("%s: cannot stat: %s", path.c_str(), std::strerror(e));
  }
  std::shared_ptr<mapped_file> m(new mapped_file());
  m->path_ = path;
  m->size_ = static_cast<uint64_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return make_error("%s: cannot map %llu bytes: %s", path.c_str(),
                        static_cast<unsigned long long>(m->size_), std::strerror(e));
    }
    m->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return m;
}

mapped_file::~mapped_file() {
  if (data_) {
    ::munmap(const_cast<std::byte*>(data_), size_);
  }
}

void mapped_file::release_pages(const std::byte* p, uint64_t n) const {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p);
  const auto end = begin + n;
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = end / page * page;
  const auto base = reinterpret_cast<uintptr_t>(data_);
  if (first >= last || begin < base || end > base + size_) {
    return;
  }
  // MADV_DONTNEED on a shared read-only file mapping only drops the page references
  ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
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

result<gguf_file> gguf_file::parse(const std::byte* data, uint64_t size, std::string name,
                                   const gguf_limits& limits) {
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
    if (*n_dims == 0 || *n_dims > max_dims) {
      return make_error("%s: %s: %u dimensions, expected 1 to %u", fn.c_str(), what.c_str(),
                        *n_dims, max_dims);
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

// -- gguf_writer -----------------------------------------------------------------

namespace {

class byte_sink {
 public:
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  void put_value(const gguf_value& v) {
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            put_string(x);
          } else if constexpr (std::is_same_v<T, gguf_array>) {
            put<uint32_t>(static_cast<uint32_t>(x.type));
            put<uint64_t>(x.items.size());
            for (const auto& item : x.items) {
              BATON_ASSERT(item.type() == x.type);
              put_value(item);
            }
          } else if constexpr (std::is_same_v<T, bool>) {
            put<uint8_t>(x ? 1 : 0);
          } else {
            put<T>(x);
          }
        },
        v.v);
  }
  std::vector<std::byte>& bytes() { return out_; }

 private:
  // -- member variables -------------------------------------------------------
  std::vector<std::byte> out_;
};

}  // namespace

void gguf_writer::set(const std::string& key, gguf_value value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void gguf_writer::set_alignment(uint32_t alignment) {
  BATON_ASSERT(alignment != 0 && (alignment & (alignment - 1)) == 0);
  BATON_ASSERT(tensors_.empty());
  alignment_ = alignment;
  set("general.alignment", gguf_value(alignment));
}

void gguf_writer::add_tensor(const std::string& name, ggml_type type, std::vector<int64_t> shape,
                             fill_fn fill) {
  BATON_ASSERT(!shape.empty() && shape.size() <= max_dims);
  uint64_t n = 1;
  for (auto d : shape) {
    BATON_ASSERT(d > 0);
    n *= static_cast<uint64_t>(d);
  }
  const auto& t = traits(type);
  BATON_ASSERT(shape[0] % t.block_size == 0);
  const uint64_t n_bytes = n / t.block_size * t.type_size;
  const uint64_t offset = (data_size_ + alignment_ - 1) / alignment_ * alignment_;
  tensors_.push_back({name, type, std::move(shape), n_bytes, offset, std::move(fill)});
  data_size_ = offset + n_bytes;
}

void gguf_writer::add_tensor_bytes(const std::string& name, ggml_type type,
                                   std::vector<int64_t> shape, std::span<const std::byte> bytes) {
  std::vector<std::byte> copy(bytes.begin(), bytes.end());
  add_tensor(name, type, std::move(shape), [copy = std::move(copy)](std::span<std::byte> out) {
    BATON_ASSERT(out.size() == copy.size());
    std::memcpy(out.data(), copy.data(), copy.size());
  });
  BATON_ASSERT(tensors_.back().n_bytes == bytes.size());
}

std::vector<std::byte> gguf_writer::header_bytes() const {
  byte_sink s;
  s.put<uint32_t>(gguf_magic);
  s.put<uint32_t>(version_);
  s.put<uint64_t>(tensors_.size());
  s.put<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    s.put_string(k);
    s.put<uint32_t>(static_cast<uint32_t>(v.type()));
    s.put_value(v);
  }
  for (const auto& t : tensors_) {
    s.put_string(t.name);
    s.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto d : t.shape) {
      s.put<int64_t>(d);
    }
    s.put<uint32_t>(static_cast<uint32_t>(t.type));
    s.put<uint64_t>(t.offset);
  }
  auto& b = s.bytes();
  b.resize((b.size() + alignment_ - 1) / alignment_ * alignment_, std::byte{0});
  return std::move(b);
}

std::vector<std::byte> gguf_writer::to_bytes() const {
  auto out = header_bytes();
  const size_t base = out.size();
  out.resize(base + data_size_, std::byte{0});
  for (const auto& t : tensors_) {
    if (t.fill) {
      t.fill(std::span<std::byte>(out.data() + base + t.offset, t.n_bytes));
    }
  }
  return out;
}

result<void> gguf_writer::write(const std::string& path) const {
  const auto header = header_bytes();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error("%s: cannot create: %s", path.c_str(), std::strerror(errno));
  }
  auto write_all = [fd](const std::byte* p, size_t n, uint64_t at) -> bool {
    while (n > 0) {
      ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(at));
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
      at += static_cast<uint64_t>(w);
    }
    return true;
  };
  auto fail = [&](const char* what) -> result<void> {
    int e = errno;
    ::close(fd);
    return make_error("%s: %s: %s", path.c_str(), what, std::strerror(e));
  };
  if (!write_all(header.data(), header.size(), 0)) {
    return fail("cannot write the header");
  }
  // Tensors without data stay holes; the final size makes the file whole.
  if (::ftruncate(fd, static_cast<off_t>(header.size() + data_size_)) != 0) {
    return fail("cannot size the file");
  }
  std::vector<std::byte> buf;
  for (const auto& t : tensors_) {
    if (!t.fill) {
      continue;
    }
    buf.assign(t.n_bytes, std::byte{0});
    t.fill(std::span<std::byte>(buf.data(), buf.size()));
    if (!write_all(buf.data(), buf.size(), header.size() + t.offset)) {
      return fail("cannot write tensor data");
    }
  }
  if (::close(fd) != 0) {
    return make_error("%s: cannot close: %s", path.c_str(), std::strerror(errno));
  }
  return {};
}

}  // namespace baton
