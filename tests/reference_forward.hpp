// A second oracle for the project's own fixture models: the Llama forward pass written
// plainly in double precision from dequantized weights, one position at a time with
// causal attention over all earlier positions. Matmul inputs are rounded to the format
// baton's kernels feed the weight type (f16 for F16 weights, bf16 for BF16; F32 takes
// floats), which is the arithmetic llama.cpp defines; nothing else is rounded.
#pragma once

#include <cmath>
#include <vector>

#include "kernels/blocks.hpp"
#include "kernels/cpu/dequantize.hpp"
#include "runtime/model/model_config.hpp"

namespace baton::test {

class reference_forward {
 public:
  explicit reference_forward(const model& m) : m_(m), c_(m.config()) {}

  /// Logits [n_vocab] after the last of `tokens`.
  std::vector<double> logits(const std::vector<int32_t>& tokens) {
    const auto& w = m_.weights();
    const int64_t n_embd = c_.n_embd, hd = c_.n_embd_head_k;
    std::vector<std::vector<std::vector<double>>> kc(c_.n_layer), vc(c_.n_layer);  // [il][pos]
    std::vector<double> x;
    for (size_t t = 0; t < tokens.size(); ++t) {
      x = row(*w.token_embd, tokens[t]);
      for (int64_t il = 0; il < c_.n_layer; ++il) {
        const auto& l = w.layers[static_cast<size_t>(il)];
        auto h = rms_norm(x, *l.attn_norm);
        auto q = matvec(*l.wq, h);
        auto k = matvec(*l.wk, h);
        auto v = matvec(*l.wv, h);
        for (int64_t hh = 0; hh < c_.n_head; ++hh) {
          rope(q.data() + hh * hd, static_cast<int64_t>(t));
        }
        for (int64_t hh = 0; hh < c_.n_head_kv; ++hh) {
          rope(k.data() + hh * hd, static_cast<int64_t>(t));
        }
        kc[il].push_back(k);
        vc[il].push_back(v);
        std::vector<double> att(static_cast<size_t>(c_.n_head * hd), 0.0);
        const int64_t group = c_.n_head / c_.n_head_kv;
        for (int64_t hh = 0; hh < c_.n_head; ++hh) {
          const int64_t kvh = hh / group;
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (size_t p = 0; p <= t; ++p) {
            double d = 0;
            for (int64_t i = 0; i < hd; ++i) {
              d += q[hh * hd + i] * kc[il][p][kvh * hd + i];
            }
            s[p] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[p]);
          }
          double sum = 0;
          for (auto& e : s) {
            e = std::exp(e - mx);
            sum += e;
          }
          for (size_t p = 0; p <= t; ++p) {
            for (int64_t i = 0; i < hd; ++i) {
              att[hh * hd + i] += s[p] / sum * vc[il][p][kvh * hd + i];
            }
          }
        }
        auto o = matvec(*l.wo, att);
        for (int64_t i = 0; i < n_embd; ++i) {
          x[i] += o[i];
        }
        auto f = rms_norm(x, *l.ffn_norm);
        auto g = matvec(*l.ffn_gate, f);
        auto u = matvec(*l.ffn_up, f);
        for (size_t i = 0; i < g.size(); ++i) {
          g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        }
        auto d = matvec(*l.ffn_down, g);
        for (int64_t i = 0; i < n_embd; ++i) {
          x[i] += d[i];
        }
      }
    }
    return matvec(*w.head(), rms_norm(x, *w.output_norm));
  }

 private:
  std::vector<double> row(const tensor_info& t, int64_t r) const {
    std::vector<float> f(static_cast<size_t>(t.ne[0]));
    cpu::dequantize_row(t.type, t.data + r * row_bytes(t.type, t.ne[0]), f.data(), t.ne[0]);
    return {f.begin(), f.end()};
  }

  std::vector<double> rms_norm(const std::vector<double>& x, const tensor_info& w) const {
    double ss = 0;
    for (double v : x) {
      ss += v * v;
    }
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + c_.rms_norm_eps);
    auto wr = row(w, 0);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      y[i] = x[i] * scale * wr[i];
    }
    return y;
  }

  /// y = W x, with x rounded as the kernels feed this weight type.
  std::vector<double> matvec(const tensor_info& w, std::vector<double> x) const {
    for (auto& v : x) {
      if (w.type == ggml_type::f16) {
        v = fp16_to_fp32(fp32_to_fp16(static_cast<float>(v)));
      } else if (w.type == ggml_type::bf16) {
        v = bf16_to_fp32(fp32_to_bf16(static_cast<float>(v)));
      }
    }
    std::vector<double> y(static_cast<size_t>(w.ne[1]));
    for (int64_t r = 0; r < w.ne[1]; ++r) {
      auto wr = row(w, r);
      double s = 0;
      for (size_t i = 0; i < wr.size(); ++i) {
        s += wr[i] * x[i];
      }
      y[static_cast<size_t>(r)] = s;
    }
    return y;
  }

  void rope(double* v, int64_t pos) const {
    const float* ff = m_.weights().rope_freqs
                          ? reinterpret_cast<const float*>(m_.weights().rope_freqs->data)
                          : nullptr;
    for (int64_t i = 0; i < c_.n_rot; i += 2) {
      const double theta = static_cast<double>(pos) *
                           std::pow(static_cast<double>(c_.rope_freq_base),
                                    -static_cast<double>(i) / static_cast<double>(c_.n_rot)) /
                           (ff ? ff[i / 2] : 1.0);
      const double c = std::cos(theta), s = std::sin(theta);
      const double x0 = v[i], x1 = v[i + 1];
      v[i] = x0 * c - x1 * s;
      v[i + 1] = x0 * s + x1 * c;
    }
  }

  // -- member variables -------------------------------------------------------
  const model& m_;
  const model_config& c_;
};

}  // namespace baton::test
