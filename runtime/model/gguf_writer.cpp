// The GGUF writer of gguf.hpp: metadata and tensor infos serialised as the reader reads
// them, tensor data streamed from each tensor's fill callback. Apart from the reader
// because only tests, `baton mkmodel` and `baton quantize` write GGUF.
#include "runtime/model/gguf.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace baton {

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
  BATON_ASSERT(!shape.empty() && shape.size() <= gguf_max_dims);
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

