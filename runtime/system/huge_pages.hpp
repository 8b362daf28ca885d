// Buffers of megabytes that come and go: a reshard's KV rows and the messages that carry
// them between ranks. Fresh memory costs a page fault per 4 KiB on first touch, and in a
// VM those are slow: a reshard moving 16 MB of KV between ranks spent 250-300 ms faulting
// its buffers in (export, message, receive, unpack). huge_page_allocator maps buffers of
// 2 MiB and more with MADV_HUGEPAGE (transparent huge pages: one fault per 2 MiB where
// the kernel allows; "madvise" is the common THP setting), the rest from the heap: the
// same KV phase took 96-135 ms (and 9-45 ms once expect() woke the transport at once).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

namespace baton {

template <class T>
struct huge_page_allocator {
  using value_type = T;
  static constexpr size_t huge_page = size_t{2} << 20;

  huge_page_allocator() = default;
  template <class U>
  huge_page_allocator(const huge_page_allocator<U>&) {}

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < huge_page) {
      if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) {
        return static_cast<T*>(p);
      }
      throw std::bad_alloc();
    }
    void* p = ::mmap(nullptr, rounded(bytes), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw std::bad_alloc();
    }
    (void)::madvise(p, rounded(bytes), MADV_HUGEPAGE);  // a hint: else 4 KiB pages
    return static_cast<T*>(p);
  }

  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < huge_page) {
      std::free(p);
    } else {
      ::munmap(p, rounded(bytes));
    }
  }

  static size_t rounded(size_t bytes) { return (bytes + huge_page - 1) / huge_page * huge_page; }

  template <class U>
  bool operator==(const huge_page_allocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const huge_page_allocator<U>&) const { return false; }
};

/// A unique_ptr deleter for what huge_page_allocator gave for `bytes` (an arena that is
/// filled before it is read, so not zeroed as a byte_buffer would be).
struct huge_page_free {
  size_t bytes = 0;
  void operator()(uint8_t* p) const { huge_page_allocator<uint8_t>().deallocate(p, bytes); }
};

/// Bytes of KV rows as they leave one stage and enter another.
using byte_buffer = std::vector<uint8_t, huge_page_allocator<uint8_t>>;
/// One message between ranks (activation_wire.hpp).
using wire_buffer = std::vector<char, huge_page_allocator<char>>;

}  // namespace baton
