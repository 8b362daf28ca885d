// The AVX2 (+FMA, F16C) twin of matmul, and the SIMD activation conversions every
// non-scalar isa uses. The conversions reproduce the scalar references bit for bit:
// roundf is rebuilt from truncation (half away from zero), ggml's nearest_int from the
// same float add, f16 from F16C's round-to-nearest-even, bf16 from the same integer
// rounding. The dot products use vpmaddubsw (unsigned × signed bytes): Q4_0 and K-quant
// nibbles are unsigned as stored (Q4_0's −8 comes back as −8·Σy from the prepared
// activations), Q8_0 uses the sign trick. Each output element owns its 8-lane float
// accumulators (two for Q4_0, Q8_0 and the float types, alternating), whose update
// sequence does not depend on the tile it is computed in.
//
// The code lives in headers included by this file alone, so compiled with its AVX2 flags:
// avx2/convert.hpp (the activation conversions), avx2/blocks.hpp (Q4_0 and Q8_0),
// avx2/k_quants.hpp (Q4_K and Q6_K), avx2/floats.hpp (F16, BF16, F32) and what the dot
// products share, avx2/common.hpp (sums of lanes, prefetch, f16 scales). Here:
// quantize_activation_row_avx2, the kernel for each weight type (with_kernel) and the
// functions matmul_impl.hpp declares.

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/avx2/blocks.hpp"
#include "kernels/cpu/avx2/common.hpp"
#include "kernels/cpu/avx2/convert.hpp"
#include "kernels/cpu/avx2/floats.hpp"
#include "kernels/cpu/avx2/k_quants.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/matmul_impl.hpp"

namespace baton::cpu::detail {

void quantize_activation_row_avx2(ggml_type weight, const float* x, void* xq, int64_t n_in) {
  auto* out = static_cast<uint8_t*>(xq);
  switch (activation_type(weight)) {
    case ggml_type::q8_0:
      return quantize_q8_0(x, out, n_in);
    case ggml_type::q8_k:
      return quantize_q8_k(x, out, n_in);
    case ggml_type::f16:
      return convert_f16(x, out, n_in);
    case ggml_type::bf16:
      return convert_bf16(x, out, n_in);
    default:
      std::memcpy(xq, x, static_cast<size_t>(n_in) * sizeof(float));
      return;
  }
}

namespace {

/// f(the kernel for `weight` weights).
template <class F>
decltype(auto) with_kernel(ggml_type weight, F&& f) {
  switch (weight) {
    case ggml_type::q4_0:
      return f(kernel_q8_blocks<true>{});
    case ggml_type::q8_0:
      return f(kernel_q8_blocks<false>{});
    case ggml_type::q4_k:
      return f(kernel_k<false>{});
    case ggml_type::q6_k:
      return f(kernel_k<true>{});
    case ggml_type::f16:
      return f(kernel_float<fkind::f16>{});
    case ggml_type::bf16:
      return f(kernel_float<fkind::bf16>{});
    case ggml_type::f32:
      return f(kernel_float<fkind::f32>{});
    default:
      std::abort();
  }
}

}  // namespace

void matmul_avx2(ggml_type weight, const void* w, const void* xq, const void* prepared, float* y,
                 int64_t n_in, int64_t n_tokens, int64_t ldy, int64_t r0, int64_t r1) {
  const size_t xs = activation_row_bytes(weight, n_in);
  with_kernel(weight, [&](const auto& k) {
    run_matmul(k, weight, w, xq, prepared, y, n_in, n_tokens, ldy, r0, r1, xs);
  });
}

size_t prepared_row_bytes_avx2(ggml_type weight, int64_t n_in, int64_t n_tokens) {
  return with_kernel(weight, [&](const auto& k) { return prepared_row_bytes(k, n_in, n_tokens); });
}

void prepare_row_avx2(ggml_type weight, const void* xq, void* out, int64_t n_in) {
  with_kernel(weight, [&](const auto& k) {
    if (k.prep_bytes(n_in) > 0) {
      k.prep(static_cast<const uint8_t*>(xq), static_cast<uint8_t*>(out), n_in);
    }
  });
}

void block_dot_ints_avx2(ggml_type weight, const void* w_row, const void* x_row, int64_t n_in,
                         int32_t* out) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* x = static_cast<const uint8_t*>(x_row);
  switch (weight) {
    case ggml_type::q4_0:
      return kernel_q8_blocks<true>{}.block_ints(w, x, n_in, out);
    case ggml_type::q8_0:
      return kernel_q8_blocks<false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q4_k:
      return kernel_k<false>{}.block_ints(w, x, n_in, out);
    case ggml_type::q6_k:
      return kernel_k<true>{}.block_ints(w, x, n_in, out);
    default:
      std::abort();
  }
}

}  // namespace baton::cpu::detail
