// GGUF files (v2 and v3), the format of llama.cpp and Ollama: a reader that maps the
// file and checks every count, length and offset against its size before use, and a
// writer that tests and `baton mkmodel` use to make their own models.
//
// Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv × (string key,
// u32 value type, value); n_tensors × (string name, u32 n_dims, u64 ne[n_dims],
// u32 ggml type, u64 offset); padding to `general.alignment` (default 32); tensor data.
// Strings are u64 length + bytes (no terminator). All little-endian.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/ggml_type.hpp"
#include "runtime/system/error.hpp"
#include "runtime/system/files.hpp"

namespace baton {

inline constexpr uint32_t gguf_magic = 0x46554747;  ///< "GGUF" little-endian
inline constexpr uint32_t gguf_max_dims = 4;         ///< dimensions a tensor may have

/// GGUF metadata value types, as stored.
enum class gguf_type : uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

std::string_view gguf_type_name(gguf_type t);

struct gguf_value;

/// An array value: element type plus elements (arrays may nest).
struct gguf_array {
  gguf_type type = gguf_type::uint8;
  std::vector<gguf_value> items;
};

/// One metadata value.
struct gguf_value {
  using storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float,
                               bool, std::string, gguf_array, uint64_t, int64_t, double>;
  storage v;

  gguf_value() = default;
  template <class T>
  gguf_value(T x) : v(std::move(x)) {}  // NOLINT: implicit by design
  gguf_value(const char* s) : v(std::string(s)) {}  // NOLINT

  gguf_type type() const { return static_cast<gguf_type>(v.index()); }
  bool is_integer() const;
  /// Integer value of any integer type (booleans excluded).
  std::optional<int64_t> as_int() const;
  /// Float value of float32/float64 (integers converted too).
  std::optional<double> as_float() const;
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const gguf_array* as_array() const { return std::get_if<gguf_array>(&v); }
  /// Short text for display: arrays as "[string × 128256]".
  std::string to_display() const;
};

/// Up to 4 dimensions, ne[0] fastest-varying (ggml order: a weight [n_in, n_out]).
struct tensor_info {
  std::string name;
  ggml_type type = ggml_type::f32;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  uint64_t offset = 0;   ///< from the start of the data section
  uint64_t n_bytes = 0;  ///< derived from type and shape
  const std::byte* data = nullptr;  ///< view into the mapping

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  /// "[256, 128256]"
  std::string shape_string() const;
};

/// Absolute caps on what a GGUF header may make the reader hold in memory, whatever the
/// file's size: a sparse file of a few GiB can "hold" 4e8 empty strings or zero-byte
/// arrays, so counts are checked against these as well as against the bytes that remain.
/// Llama 3's header, the largest known, has a 128,256-token vocabulary and ~280,000 merges.
/// Tests lower them to reach a cap with a small file.
struct gguf_limits {
  uint64_t max_array_items = uint64_t{1} << 24;      ///< per array (16 Mi)
  uint64_t max_string_bytes = uint64_t{256} << 20;   ///< per string (256 MiB)
  uint64_t max_metadata_count = uint64_t{1} << 20;   ///< key-value pairs (1 Mi)
  /// What the parsed keys and values may take in memory, all together (1 GiB): charged
  /// before anything is allocated for them.
  uint64_t max_metadata_bytes = uint64_t{1} << 30;
  uint64_t max_tensor_count = uint64_t{1} << 20;     ///< tensors (1 Mi)
};

/// A GGUF file opened for reading. Tensors are views into the mapping.
class gguf_file {
 public:
  /// Maps and parses `path`; the error names the file, the field and what was expected.
  static result<gguf_file> open(const std::string& path);

  /// Parses a buffer already in memory (which must outlive the result); `name` is
  /// used in messages. The fuzzer enters here.
  static result<gguf_file> parse(const std::byte* data, uint64_t size, std::string name,
                                 const gguf_limits& limits = {});

  /// Parses a header with no tensor data after it (gguf_writer::header_bytes of a model
  /// too large to write here): tensor sizes and offsets are read, `data` stays null. For
  /// planning and simulation only (`baton plan --shape`); nothing may compute with it.
  static result<gguf_file> parse_header(std::vector<std::byte> header, std::string name);

  /// Whether the file has no tensor data (parse_header).
  bool header_only() const { return header_ != nullptr; }

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }

  /// Metadata in file order.
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const { return kv_; }
  const gguf_value* find(std::string_view key) const;
  const std::vector<tensor_info>& tensors() const { return tensors_; }
  const tensor_info* find_tensor(std::string_view name) const;
  /// mapped_file::release_pages for a file that was mapped; nothing for a caller's buffer.
  void release_pages(const std::byte* p, uint64_t n) const;

  // Typed lookups: nothing when absent, an error naming the key when of the wrong type.
  result<std::optional<std::string>> get_string(std::string_view key) const;
  result<std::optional<int64_t>> get_int(std::string_view key) const;
  result<std::optional<double>> get_float(std::string_view key) const;
  result<std::optional<bool>> get_bool(std::string_view key) const;

 private:
  static result<gguf_file> parse_impl(const std::byte* data, uint64_t size, std::string name,
                                      const gguf_limits& limits, bool header_only);

  // -- member variables -------------------------------------------------------
  std::shared_ptr<mapped_file> map_;  // null when parsed from a caller's buffer
  std::shared_ptr<const std::vector<std::byte>> header_;  // parse_header's bytes
  std::string path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t size_ = 0;
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

/// Writes GGUF v3 (or v2) files. Tensor data comes from a callback that fills the
/// tensor's bytes when the file is written, so multi-GiB models stream to disk; a
/// tensor without one is left as a hole (zeros, sparse on disk).
class gguf_writer {
 public:
  using fill_fn = std::function<void(std::span<std::byte>)>;

  explicit gguf_writer(uint32_t version = 3) : version_(version) {}

  /// Sets (or replaces) a metadata value; keys keep their first insertion order.
  void set(const std::string& key, gguf_value value);
  void set_alignment(uint32_t alignment);

  /// Adds a tensor of `shape` (ne[0] first); its byte size follows from type and shape.
  void add_tensor(const std::string& name, ggml_type type, std::vector<int64_t> shape,
                  fill_fn fill = nullptr);
  /// Adds a tensor whose bytes are copied from `bytes` (must match the size).
  void add_tensor_bytes(const std::string& name, ggml_type type, std::vector<int64_t> shape,
                        std::span<const std::byte> bytes);

  /// Writes the whole file; the error names the path.
  result<void> write(const std::string& path) const;
  /// The whole file in memory (small fixtures for tests).
  std::vector<std::byte> to_bytes() const;
  /// The header alone (metadata and tensor infos, padded to the alignment).
  std::vector<std::byte> header_bytes() const;

 private:
  struct pending_tensor {
    std::string name;
    ggml_type type;
    std::vector<int64_t> shape;
    uint64_t n_bytes;
    uint64_t offset;
    fill_fn fill;
  };
  // -- member variables -------------------------------------------------------
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::vector<pending_tensor> tensors_;
  uint64_t data_size_ = 0;
};

}  // namespace baton
