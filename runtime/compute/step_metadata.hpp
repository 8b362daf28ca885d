// The per-step index arrays a GPU stage uploads in one copy, built on the host: what the
// CUDA kernels read to embed tokens, store K/V and attend (kernels/cuda/ops.cuh). Plain
// C++, so the layout is tested on every machine.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/system/error.hpp"
#include "runtime/compute/batch.hpp"

namespace baton {

/// ints = [token n][slot n][n_kv n][table_offset n][logit_rows n][tables ...], n = tokens:
/// token ids (0 where `with_tokens` is false), the KV slot (block × block_size + position
/// % block_size) each token's K/V goes to, its attention length (position + 1), where its
/// sequence's block table starts within `tables`, the batch rows that want logits (the
/// first n_logits entries), and every sequence's block table, in batch order.
struct step_metadata {
  std::vector<int32_t> ints;
  int64_t n_tokens = 0;
  int64_t n_logits = 0;

  const int32_t* token() const { return ints.data(); }
  const int32_t* slot() const { return ints.data() + n_tokens; }
  const int32_t* n_kv() const { return ints.data() + 2 * n_tokens; }
  const int32_t* table_offset() const { return ints.data() + 3 * n_tokens; }
  const int32_t* logit_rows() const { return ints.data() + 4 * n_tokens; }
  const int32_t* tables() const { return ints.data() + 5 * n_tokens; }
  /// Offsets of the arrays above within `ints`, for the device copy.
  static int64_t offset_of_tables(int64_t n_tokens) { return 5 * n_tokens; }
};

/// Fills `m` for batch `b`; `with_tokens`: the stage embeds (the first), `with_logits`: it
/// computes logits (the last). Errors name a token without a KV block or a token id
/// outside [0, n_vocab).
result<void> build_step_metadata(const batch& b, int32_t block_size, int64_t n_vocab,
                                 bool with_tokens, bool with_logits, step_metadata& m);

}  // namespace baton
