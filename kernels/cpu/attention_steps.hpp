// Internal to ops_avx2.cpp and ops_avx512.cpp: the steps of attention for a group of query
// heads that share a KV head, each instruction set's twin supplying them (Simd):
//   static void round_to_f16(float* x, int64_t n);
//   template <int G> static void scores(const float* const (&qv)[G], const kv_view& k,
//       int64_t kv_head, int64_t n_kv, float scale, bool k16, float* scratch);
//   template <int G> static void softmaxes(float* scratch, int64_t n_kv);  // G heads' rows
//   template <int G> static void weighted_values(const float* w, const kv_view& v,
//       int64_t kv_head, int64_t n_kv, bool v16, float* const (&out)[G]);
// Simd is each file's own type (in its anonymous namespace), so each instantiation is the
// file's own, compiled with its instruction set.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.hpp"

namespace baton::cpu::detail {

/// out_j = attention of query head j of G (q: G heads one after another) over KV head
/// `kv_head`: q rounded to f16 against an f16 K, the scores, each head's softmax,
/// probabilities rounded to f16 against an f16 V, the weighted values.
template <class Simd, int G>
void attention_group_steps(const float* q, const kv_view& k, const kv_view& v, int64_t kv_head,
                           int64_t n_kv, float scale, float* scratch, float* out) {
  const int64_t d = k.head_dim;
  const bool k16 = k.type == ggml_type::f16;
  const bool v16 = v.type == ggml_type::f16;
  alignas(64) float qbuf[G][256];
  const float* qv[G];
  float* outs[G];
  for (int j = 0; j < G; ++j) {
    std::memcpy(qbuf[j], q + j * d, static_cast<size_t>(d) * sizeof(float));
    if (k16) {
      Simd::round_to_f16(qbuf[j], d);
    }
    qv[j] = qbuf[j];
    outs[j] = out + j * d;
  }
  Simd::template scores<G>(qv, k, kv_head, n_kv, scale, k16, scratch);
  Simd::template softmaxes<G>(scratch, n_kv);
  if (v16) {
    for (int j = 0; j < G; ++j) {
      Simd::round_to_f16(scratch + j * n_kv, n_kv);
    }
  }
  Simd::template weighted_values<G>(scratch, v, kv_head, n_kv, v16, outs);
}

/// attention_group_steps for n_q query heads sharing KV head `kv_head`: groups of 2 and 4,
/// 8 as two of 4 (sixteen accumulators of scores or values do not fit AVX2's registers);
/// other counts, heads whose dimensions are not a multiple of 16 or are more than 256,
/// through `alone` (attention_group_avx2's signature).
template <class Simd, class Alone>
void attention_group_of(const float* q, int64_t n_q, const kv_view& k, const kv_view& v,
                        int64_t kv_head, int64_t n_kv, float scale, float* scratch, float* out,
                        Alone alone) {
  const int64_t d = k.head_dim;
  if (d % 16 != 0 || d > 256 || v.head_dim != d || (n_q != 2 && n_q != 4 && n_q != 8)) {
    alone(q, n_q, k, v, kv_head, n_kv, scale, scratch, out);
    return;
  }
  switch (n_q) {
    case 2:
      return attention_group_steps<Simd, 2>(q, k, v, kv_head, n_kv, scale, scratch, out);
    case 4:
      return attention_group_steps<Simd, 4>(q, k, v, kv_head, n_kv, scale, scratch, out);
    default:
      attention_group_steps<Simd, 4>(q, k, v, kv_head, n_kv, scale, scratch, out);
      attention_group_steps<Simd, 4>(q + 4 * d, k, v, kv_head, n_kv, scale, scratch, out + 4 * d);
  }
}

}  // namespace baton::cpu::detail
