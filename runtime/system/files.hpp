// Reading files that a user names (models, topology files, tokenizer files) without
// trusting them: only regular files are opened (a FIFO or a device could block or have
// effects), small text files are read whole up to a cap, and models are mapped read-only.
// Its own file because GGUF, topology files and tokenizer.json all read through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/system/error.hpp"

namespace baton {

/// Opens `path` read-only if it is a regular file; a FIFO, a directory, a device or a
/// socket is refused ("<path>: not a regular file (a FIFO)") before anything is read,
/// so such a path can never block the caller. The caller owns the descriptor. `what`
/// ("topology file") is named when it cannot be opened: "<path>: cannot open the
/// topology file: No such file or directory".
result<int> open_regular_file(const std::string& path, const char* what = nullptr);

/// The whole of a regular file of at most `max_bytes` (text formats such as topology
/// files); `what` names the file in messages ("topology file").
result<std::string> read_regular_file(const std::string& path, uint64_t max_bytes,
                                      const char* what);

/// A read-only memory mapping of a file.
class mapped_file {
 public:
  static result<std::shared_ptr<mapped_file>> open(const std::string& path);
  ~mapped_file();
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;

  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Drops the resident pages wholly inside [p, p + n) (they are re-read from the file
  /// if touched again): for data copied elsewhere, such as weights uploaded to a GPU.
  void release_pages(const std::byte* p, uint64_t n) const;

 private:
  mapped_file() = default;

  // -- member variables -------------------------------------------------------
  std::string path_;
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace baton
