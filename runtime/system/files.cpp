// Regular files and read-only mappings of files.hpp.
#include "runtime/system/files.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace baton {

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

}  // namespace baton
