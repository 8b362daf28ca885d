// kv_cache.hpp.
#include "runtime/compute/kv_cache.hpp"

#include <cstring>

#include "kernels/blocks.hpp"

namespace baton {

block_manager::block_manager(int32_t n_blocks, int32_t block_size)
    : block_size_(block_size), ref_(static_cast<size_t>(n_blocks), 0) {
  BATON_ASSERT(n_blocks >= 0 && block_size > 0);
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int32_t b = n_blocks - 1; b >= 0; --b) {
    free_.push_back(b);  // block 0 comes out first
  }
}

int32_t block_manager::blocks_for(int64_t n_tokens) const {
  return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
}

alloc_status block_manager::can_allocate(int32_t n) const {
  if (n > n_blocks()) {
    return alloc_status::never;
  }
  return n <= n_free() ? alloc_status::ok : alloc_status::later;
}

std::optional<int32_t> block_manager::allocate() {
  if (free_.empty()) {
    return std::nullopt;
  }
  const int32_t b = free_.back();
  free_.pop_back();
  BATON_ASSERT(ref_[static_cast<size_t>(b)] == 0);
  ref_[static_cast<size_t>(b)] = 1;
  return b;
}

void block_manager::retain(int32_t block) {
  BATON_ASSERT(block >= 0 && block < n_blocks() && ref_[static_cast<size_t>(block)] > 0);
  ++ref_[static_cast<size_t>(block)];
}

void block_manager::release(int32_t block) {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  auto& r = ref_[static_cast<size_t>(block)];
  BATON_ASSERT(r > 0 && "double free of a KV block");
  if (--r == 0) {
    free_.push_back(block);
  }
}

int32_t block_manager::ref_count(int32_t block) const {
  BATON_ASSERT(block >= 0 && block < n_blocks());
  return ref_[static_cast<size_t>(block)];
}

kv_storage::kv_storage(int64_t first_layer, int64_t last_layer, int32_t n_blocks,
                       int32_t block_size, int64_t n_head_kv, int64_t head_dim, ggml_type type)
    : first_(first_layer),
      n_blocks_(n_blocks),
      block_size_(block_size),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      type_(type) {
  BATON_ASSERT(type == ggml_type::f16 || type == ggml_type::f32);
  block_bytes_ = static_cast<size_t>(block_size) * static_cast<size_t>(n_head_kv * head_dim) *
                 traits(type).type_size;
  const auto n_layers = static_cast<size_t>(last_layer - first_layer);
  k_.resize(n_layers);
  v_.resize(n_layers);
  for (size_t i = 0; i < n_layers; ++i) {
    k_[i].assign(block_bytes_ * static_cast<size_t>(n_blocks), 0);
    v_[i].assign(block_bytes_ * static_cast<size_t>(n_blocks), 0);
  }
}

uint64_t kv_storage::bytes() const {
  return 2ull * k_.size() * block_bytes_ * static_cast<uint64_t>(n_blocks_);
}

void kv_storage::store(std::vector<uint8_t>& buf, const std::vector<int32_t>& table, int64_t pos,
                       const float* row) {
  const int64_t bi = pos / block_size_;
  BATON_ASSERT(bi < static_cast<int64_t>(table.size()));
  const int32_t block = table[static_cast<size_t>(bi)];
  BATON_ASSERT(block >= 0 && block < n_blocks_);
  const int64_t n = n_head_kv_ * head_dim_;
  uint8_t* dst = buf.data() + static_cast<size_t>(block) * block_bytes_ +
                 static_cast<size_t>((pos % block_size_) * n) * traits(type_).type_size;
  if (type_ == ggml_type::f32) {
    std::memcpy(dst, row, static_cast<size_t>(n) * sizeof(float));
  } else {
    auto* h = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      h[i] = fp32_to_fp16(row[i]);
    }
  }
}

void kv_storage::store_k(int64_t il, const std::vector<int32_t>& table, int64_t pos,
                         const float* row) {
  store(k_[static_cast<size_t>(il - first_)], table, pos, row);
}

void kv_storage::store_v(int64_t il, const std::vector<int32_t>& table, int64_t pos,
                         const float* row) {
  store(v_[static_cast<size_t>(il - first_)], table, pos, row);
}

void kv_storage::block_pointers(int64_t il, bool values, const std::vector<int32_t>& table,
                                std::vector<const void*>& out) const {
  const auto& buf = (values ? v_ : k_)[static_cast<size_t>(il - first_)];
  out.clear();
  for (int32_t b : table) {
    out.push_back(buf.data() + static_cast<size_t>(b) * block_bytes_);
  }
}

cpu::kv_view kv_storage::view(const std::vector<const void*>& blocks) const {
  return cpu::kv_view{blocks.data(), block_size_, n_head_kv_, head_dim_, type_};
}

}  // namespace baton
