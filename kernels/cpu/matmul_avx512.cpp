// The AVX-512 (F, BW, VL, DQ, VNNI) twin of matmul: tile kernels for every weight type.
// Integer dot products use vpdpbusd (unsigned × signed bytes): Q4_0 nibbles are unsigned
// as stored and Q8_0 weights are made unsigned by +128; the activation-only correction
// (−8·Σy or −128·Σy per 4 bytes) starts the accumulator. K-quants use vpdpbusd too: Q4_K
// one sub-block of 32 per lane, Q6_K one 16-element piece of a super-block per lane,
// their scales (and Q4_K's mins) then applied in floats.
// Each output element owns one 16-lane float accumulator (Q4_0 and Q8_0 one block per
// lane, reduced exactly in integers first; Q4_K one sub-block, Q6_K one piece per lane;
// the float types 16 elements of k), whose update sequence does not depend on the tile
// it is computed in. A decode tile reads one sequential stream: from DRAM it reads faster
// on Zen 4 than several (and on Zen 5: rows taken from 2, 4 or 8 parts of a thread's range
// in turn read 0.9, 0.6, 0.6 times as fast) — one row with a software prefetch, or for
// packed Q4_0 and Q4_K a block of 8 rows laid out group by group (pack_rows), without.
//
// Every loop over a tile's rows or tokens is fully unrolled (#pragma GCC unroll 16):
// without it GCC 12 kept a 1 × 16 tile's accumulators in memory, a load and a store
// around every FMA (Q4_0 prefill, one thread, Zen 5: 240 -> 410 GFLOP/s). Unrolling
// changes no operation of any element.
//
// The kernels live in headers included by this file alone, so compiled with its AVX-512
// flags: avx512/lanes.hpp (the lane kernel), avx512/q8_0_groups.hpp (Q4_0 and Q8_0 in
// it), avx512/q4_k_groups.hpp (Q4_K in it), avx512/k_quants.hpp (Q6_K), avx512/floats.hpp
// (F16, BF16, F32) and what they share, avx512/common.hpp (sums of lanes, prefetch,
// cpuid). Here: the kernel for each
// weight type (with_kernel) and the functions matmul_impl.hpp declares.

#include <cstdint>
#include <cstdlib>

#include "kernels/cpu/avx512/common.hpp"
#include "kernels/cpu/avx512/floats.hpp"
#include "kernels/cpu/avx512/k_quants.hpp"
#include "kernels/cpu/avx512/lanes.hpp"
#include "kernels/cpu/avx512/q4_k_groups.hpp"
#include "kernels/cpu/avx512/q8_0_groups.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

namespace {

/// f(the kernel for `weight` weights in this layout).
template <class F>
decltype(auto) with_kernel(ggml_type weight, bool packed, F&& f) {
  switch (weight) {
    case ggml_type::q4_0:
      return with_lanes_kernel<q4_0_group>(packed, f);
    case ggml_type::q8_0:
      return with_lanes_kernel<q8_0_group>(packed, f);
    case ggml_type::q4_k:
      return with_lanes_kernel<q4_k_group>(packed, f);
    case ggml_type::q6_k:
      return packed ? f(kernel_k_lanes<q6_k_lanes_row, true>{})
                    : f(kernel_k_lanes<q6_k_lanes_row, false>{});
    case ggml_type::f16:
      return f(kernel_float_tiles<fkind::f16>{});
    case ggml_type::bf16:
      return f(kernel_float_tiles<fkind::bf16>{});
    case ggml_type::f32:
      return f(kernel_float_tiles<fkind::f32>{});
    default:
      std::abort();
  }
}

}  // namespace

void matmul_avx512(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                   int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1,
                   bool packed, int64_t block_rows) {
  const size_t xs = activation_row_bytes(weight, n_in);
  with_kernel(weight, packed, [&](const auto& k) {
    run_matmul(k, weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1, xs, block_rows);
  });
}

size_t prepared_row_bytes_avx512(ggml_type weight, int64_t n_in, int64_t n_tokens) {
  return with_kernel(weight, false,
                     [&](const auto& k) { return prepared_row_bytes(k, n_in, n_tokens); });
}

void prepare_row_avx512(ggml_type weight, const void* xq, void* out, int64_t n_in) {
  with_kernel(weight, false, [&](const auto& k) {
    if (k.prep_bytes(n_in) > 0) {
      k.prep(static_cast<const uint8_t*>(xq), static_cast<uint8_t*>(out), n_in);
    }
  });
}

void block_dot_ints_avx512(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                           int32_t* out) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* x = static_cast<const uint8_t*>(x_row);
  switch (weight) {
    case ggml_type::q4_0:
      return kernel_lanes_wide<q4_0_group, false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q8_0:
      return kernel_lanes_wide<q8_0_group, false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q4_k:
      return kernel_lanes_wide<q4_k_group, false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q6_k:
      return kernel_k_lanes<q6_k_lanes_row, false>{}.block_ints(w, x, n_in, out);
    default:
      std::abort();
  }
}

}  // namespace baton::cpu::detail