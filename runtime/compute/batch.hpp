// One forward step's input, shared by every stage: the tokens of many sequences at
// arbitrary positions, each sequence's KV block table, and which rows want logits. The
// router (or the engine) builds it; the CPU and CUDA stages read it. Its own file because
// everything in compute/ and the shard speak it while owning none of the others.
#pragma once

#include <cstdint>
#include <vector>

namespace baton {

struct batch {
  std::vector<int32_t> token;   ///< [n_tokens] ids (read by the first stage)
  std::vector<int32_t> pos;     ///< [n_tokens] position of each token in its sequence
  std::vector<int32_t> seq;     ///< [n_tokens] index into block_tables
  std::vector<uint8_t> logits;  ///< [n_tokens] 1 where the last stage computes logits
  std::vector<const std::vector<int32_t>*> block_tables;  ///< per sequence of the batch

  int64_t n_tokens() const { return static_cast<int64_t>(pos.size()); }
  /// Rows marked in `logits`.
  int64_t n_logits() const {
    int64_t n = 0;
    for (auto l : logits) {
      n += l ? 1 : 0;
    }
    return n;
  }
  /// Appends one token of sequence `seq_index`.
  void add(int32_t seq_index, int32_t token_id, int32_t position, bool want_logits) {
    seq.push_back(seq_index);
    token.push_back(token_id);
    pos.push_back(position);
    logits.push_back(want_logits ? 1 : 0);
  }
  void clear() {
    token.clear();
    pos.clear();
    seq.clear();
    logits.clear();
    block_tables.clear();
  }
};

}  // namespace baton
