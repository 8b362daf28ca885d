// ops.hpp. Compiled with -ffp-contract=off: every product and sum rounds where the
// code says, so the reference is reproducible across compilers.
#include "kernels/cpu/ops.hpp"

#include <cmath>
#include <cstring>

#include "kernels/blocks.hpp"
#include "kernels/ops_math.hpp"

namespace baton::cpu {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  const float scale = rms_inv_scale(rms_sum_sq(x, n), n, eps);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = rms_scaled(x[i], scale, w[i]);
  }
}

void rope_cache(int32_t pos, int64_t n_rot, float freq_base, const float* freq_factors,
                float* cs) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot; i += 2) {
    const float ff = freq_factors ? freq_factors[i / 2] : 1.0f;
    const float t = theta / ff;
    cs[i] = std::cos(t);
    cs[i + 1] = std::sin(t);
    theta *= theta_scale;
  }
}

void rope_apply(float* x, int64_t n_rot, const float* cs) {
  for (int64_t i = 0; i < n_rot; i += 2) {
    rope_rotate(x[i], x[i + 1], cs[i], cs[i + 1]);
  }
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = silu_times(gate[i], up[i]);
  }
}

void softmax(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    max = std::fmax(max, x[i]);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = softmax_exp(x[i], max);
    sum += x[i];
  }
  const float inv = softmax_inv(sum);
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= inv;
  }
}

void attention_head(const float* q, const kv_view& k, const kv_view& v, int64_t kv_head,
                    int64_t n_kv, float scale, float* scratch, float* out) {
  const int64_t d = k.head_dim;
  // scores
  if (k.type == ggml_type::f16) {
    float qh[1024];
    for (int64_t i = 0; i < d; ++i) {
      qh[i] = round_f16(q[i]);
    }
    for (int64_t p = 0; p < n_kv; ++p) {
      const auto* kr = reinterpret_cast<const uint16_t*>(kv_row(k, p, kv_head));
      float s = 0.0f;
      for (int64_t i = 0; i < d; ++i) {
        s += qh[i] * fp16_to_fp32(kr[i]);
      }
      scratch[p] = s * scale;
    }
  } else {
    for (int64_t p = 0; p < n_kv; ++p) {
      const auto* kr = reinterpret_cast<const float*>(kv_row(k, p, kv_head));
      float s = 0.0f;
      for (int64_t i = 0; i < d; ++i) {
        s += q[i] * kr[i];
      }
      scratch[p] = s * scale;
    }
  }
  softmax(scratch, n_kv);
  if (v.type == ggml_type::f16) {
    // llama.cpp multiplies the f16 V by the probabilities converted to f16 (the f16
    // matmul's activation format); rounding them the same way keeps f16-KV logits close
    for (int64_t p = 0; p < n_kv; ++p) {
      scratch[p] = round_f16(scratch[p]);
    }
  }
  for (int64_t i = 0; i < d; ++i) {
    out[i] = 0.0f;
  }
  for (int64_t p = 0; p < n_kv; ++p) {
    const float w = scratch[p];
    if (v.type == ggml_type::f16) {
      const auto* vr = reinterpret_cast<const uint16_t*>(kv_row(v, p, kv_head));
      for (int64_t i = 0; i < d; ++i) {
        out[i] += w * fp16_to_fp32(vr[i]);
      }
    } else {
      const auto* vr = reinterpret_cast<const float*>(kv_row(v, p, kv_head));
      for (int64_t i = 0; i < d; ++i) {
        out[i] += w * vr[i];
      }
    }
  }
}

}  // namespace baton::cpu
