// The paged KV cache's memory: `kv_storage` is a stage's physical K/V for its own
// layers: per layer, K and V as [n_blocks][block_size][n_head_kv][head_dim] in f16
// (default, as llama.cpp) or f32. Which blocks a sequence holds is decided elsewhere,
// by runtime/serving/block_allocator (the engine's) or the router's prefix cache on top
// of one; their block tables, identical on every stage, index this storage.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kernels/cpu/ops.hpp"
#include "kernels/ggml_type.hpp"
#include "runtime/system/error.hpp"
#include "runtime/system/huge_pages.hpp"

namespace baton {

/// Physical K/V memory of layers [first, last).
class kv_storage {
 public:
  kv_storage(int64_t first_layer, int64_t last_layer, int32_t n_blocks, int32_t block_size,
             int64_t n_head_kv, int64_t head_dim, ggml_type type);


  ggml_type type() const { return type_; }
  int32_t block_size() const { return block_size_; }
  int64_t first_layer() const { return first_; }
  uint64_t bytes() const;

  /// Stores row[n_head_kv × head_dim] (floats, rounded to the cache type) as position
  /// `pos` of the sequence whose blocks are `table`.
  void store_k(int64_t il, const std::vector<int32_t>& table, int64_t pos, const float* row);
  void store_v(int64_t il, const std::vector<int32_t>& table, int64_t pos, const float* row);

  /// stage_compute::export_kv and import_kv over this storage.
  result<byte_buffer> export_rows(int64_t layer, std::span<const int32_t> blocks) const;
  result<void> import_rows(int64_t layer, std::span<const int32_t> blocks,
                           std::span<const uint8_t> rows);

  /// Pointers to the K (or V) blocks of `table` for layer il, in table order.
  void block_pointers(int64_t il, bool values, const std::vector<int32_t>& table,
                      std::vector<const void*>& out) const;
  cpu::kv_view view(const std::vector<const void*>& blocks) const;

 private:
  void store(std::vector<uint8_t>& buf, const std::vector<int32_t>& table, int64_t pos,
             const float* row);

  // -- member variables -------------------------------------------------------
  int64_t first_;
  int32_t n_blocks_;
  int32_t block_size_;
  int64_t n_head_kv_;
  int64_t head_dim_;
  ggml_type type_;
  size_t block_bytes_;
  std::vector<std::vector<uint8_t>> k_;  // [n_layers] each n_blocks × block_bytes_
  std::vector<std::vector<uint8_t>> v_;
};

/// Whether the KV rows of `blocks` of `layer` can leave or enter a stage that holds layers
/// [first, last) in `n_blocks` blocks of `block_bytes` (K or V, one layer), and, with
/// `rows_size`, whether the rows hold exactly them: the error names what does not fit.
/// Both backends check with it before touching memory.
result<void> check_kv_rows(int64_t layer, int64_t first, int64_t last,
                           std::span<const int32_t> blocks, int32_t n_blocks,
                           size_t block_bytes, std::optional<size_t> rows_size);

}  // namespace baton
