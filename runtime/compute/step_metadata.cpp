// step_metadata.hpp: build_step_metadata, which lays out the five per-token arrays and then the
// block tables in one vector, and refuses a token with no KV block or an id outside the vocabulary.
#include "runtime/compute/step_metadata.hpp"

namespace baton {

result<void> build_step_metadata(const batch& b, int32_t block_size, int64_t n_vocab,
                                 bool with_tokens, bool with_logits, step_metadata& m) {
  const auto n = static_cast<size_t>(b.n_tokens());
  m.n_tokens = b.n_tokens();
  m.n_logits = 0;
  // the tables go after the five per-token arrays, appended before any pointer into
  // the vector is taken (appending moves it)
  m.ints.assign(5 * n, 0);
  std::vector<int32_t> seq_offset(b.block_tables.size());
  for (size_t s = 0; s < b.block_tables.size(); ++s) {
    seq_offset[s] = static_cast<int32_t>(m.ints.size() - 5 * n);
    m.ints.insert(m.ints.end(), b.block_tables[s]->begin(), b.block_tables[s]->end());
  }
  int32_t* token = m.ints.data();
  int32_t* slot = token + n;
  int32_t* kv_len = slot + n;
  int32_t* table_offset = kv_len + n;
  int32_t* logit_rows = table_offset + n;
  for (size_t t = 0; t < n; ++t) {
    const auto& table = *b.block_tables[static_cast<size_t>(b.seq[t])];
    const int32_t pos = b.pos[t];
    const int64_t bi = pos >= 0 ? pos / block_size : -1;
    if (bi < 0 || bi >= static_cast<int64_t>(table.size())) {
      return make_error("token %zu at position %d has no KV block (table of %zu)", t, pos,
                        table.size());
    }
    if (with_tokens) {
      token[t] = b.token[t];
      if (token[t] < 0 || token[t] >= n_vocab) {
        return make_error("token id %d is outside the vocabulary (%lld)", token[t],
                          static_cast<long long>(n_vocab));
      }
    }
    slot[t] = table[static_cast<size_t>(bi)] * block_size + pos % block_size;
    kv_len[t] = pos + 1;
    table_offset[t] = seq_offset[static_cast<size_t>(b.seq[t])];
    if (with_logits && b.logits[t]) {
      logit_rows[m.n_logits++] = static_cast<int32_t>(t);
    }
  }
  return {};
}

}  // namespace baton
