// kv_storage.hpp: the per-layer K and V buffers, a row stored at its position through a block
// table (converted to f16 unless the cache is f32), and the block pointers attention reads.
#include "runtime/compute/kv_storage.hpp"

#include <cstring>

#include "kernels/blocks.hpp"

namespace baton {

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

result<void> check_kv_rows(int64_t layer, int64_t first, int64_t last,
                           std::span<const int32_t> blocks, int32_t n_blocks,
                           size_t block_bytes, std::optional<size_t> rows_size) {
  if (layer < first || layer >= last) {
    return make_error("KV rows of layer %lld: this stage holds layers [%lld, %lld)",
                      static_cast<long long>(layer), static_cast<long long>(first),
                      static_cast<long long>(last));
  }
  for (const int32_t b : blocks) {
    if (b < 0 || b >= n_blocks) {
      return make_error("KV rows of layer %lld: block %d is not one of this stage's %d blocks",
                        static_cast<long long>(layer), b, n_blocks);
    }
  }
  const size_t want = 2 * blocks.size() * block_bytes;
  if (rows_size && *rows_size != want) {
    return make_error("KV rows of layer %lld: %zu bytes for %zu blocks; expected %zu (K and V "
                      "of %zu bytes a block: another cache type, block size or model?)",
                      static_cast<long long>(layer), *rows_size, blocks.size(), want,
                      block_bytes);
  }
  return {};
}

result<byte_buffer> kv_storage::export_rows(int64_t layer,
                                                     std::span<const int32_t> blocks) const {
  const auto last = first_ + static_cast<int64_t>(k_.size());
  if (auto ok = check_kv_rows(layer, first_, last, blocks, n_blocks_, block_bytes_, std::nullopt);
      !ok) {
    return ok.err();
  }
  byte_buffer rows(2 * blocks.size() * block_bytes_);
  uint8_t* out = rows.data();
  for (const auto* buf : {&k_[static_cast<size_t>(layer - first_)],
                          &v_[static_cast<size_t>(layer - first_)]}) {
    for (const int32_t b : blocks) {
      std::memcpy(out, buf->data() + static_cast<size_t>(b) * block_bytes_, block_bytes_);
      out += block_bytes_;
    }
  }
  return rows;
}

result<void> kv_storage::import_rows(int64_t layer, std::span<const int32_t> blocks,
                                     std::span<const uint8_t> rows) {
  const auto last = first_ + static_cast<int64_t>(k_.size());
  if (auto ok = check_kv_rows(layer, first_, last, blocks, n_blocks_, block_bytes_, rows.size());
      !ok) {
    return ok;
  }
  const uint8_t* in = rows.data();
  for (auto* buf : {&k_[static_cast<size_t>(layer - first_)],
                    &v_[static_cast<size_t>(layer - first_)]}) {
    for (const int32_t b : blocks) {
      std::memcpy(buf->data() + static_cast<size_t>(b) * block_bytes_, in, block_bytes_);
      in += block_bytes_;
    }
  }
  return {};
}

}  // namespace baton
