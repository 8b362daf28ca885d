// cpu_stage.hpp. Shapes follow ggml's naming in comments: a weight is
// [n_in, n_out] (n_out rows of n_in), activations are [n_tokens, n].
#include "runtime/compute/cpu_stage.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>

#include "kernels/cpu/dequantize.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"

namespace baton {

namespace {

/// Pieces a thread's range of rows is taken in (row_claims). On an idle Zen 4 pieces of
/// 1, 1/8 and 1/16 of a range ran as fast (Q4_0 pp128 and tg64 medians within 1 %); with a
/// busy loop on one of the two cores, pp128 medians 110.5 (whole ranges) against 121.3
/// (eighths), 3 rounds interleaved.
constexpr int64_t piece_parts = 8;

}  // namespace

cpu_stage::cpu_stage(const stage_compute_options& o)
    : model_(o.m),
      first_(o.first_layer),
      last_(o.last_layer),
      pool_(o.n_threads),
      kv_(o.first_layer, o.last_layer, o.n_blocks, o.block_size, o.m->config().n_head_kv,
          o.m->config().n_embd_head_k, o.kv_type),
      isa_(o.kernels) {
  const auto& c = model_->config();
  BATON_ASSERT(0 <= first_ && first_ < last_ && last_ <= c.n_layer);
  BATON_ASSERT(c.n_embd_head_k <= 1024 && c.n_embd_head_k == c.n_embd_head_v);
  if (const auto* rf = model_->weights().rope_freqs) {
    rope_freqs_.resize(static_cast<size_t>(rf->n_elements()));
    std::memcpy(rope_freqs_.data(), rf->data, rf->n_bytes);
  }
  if (o.repack) {
    copy_weights();
  }
}

std::vector<const tensor_info*> cpu_stage::owned_tensors(const model& m, int64_t first,
                                                         int64_t last) {
  const auto& w = m.weights();
  std::vector<const tensor_info*> mine;
  for (int64_t il = first; il < last; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    mine.insert(mine.end(), {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down});
  }
  if (last == m.config().n_layer) {
    mine.push_back(w.head());
  }
  std::sort(mine.begin(), mine.end());
  mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
  return mine;
}

// Decode reads every weight once per token: from 2 MiB pages it reads faster than from the
// file mapping's 4 KiB ones (Zen 4, tg48 of 6 alternating pairs: Q4_K_M 6 of 6 faster,
// +10 % on average; F16 6 of 6, +7 %; Q4_0, whose Q6_K head alone was mapped, 4 of 6).
void cpu_stage::copy_weights() {
  const std::vector<const tensor_info*> mine = owned_tensors(*model_, first_, last_);
  auto at = [](size_t offset) { return (offset + 63) / 64 * 64; };
  size_t total = 0;
  for (const tensor_info* t : mine) {
    total = at(total) + t->n_bytes;
  }
  if (total == 0) {
    return;
  }
  // not zeroed: every byte is written by pack_rows or the copy before it is read
  weights_arena_ = {huge_page_allocator<uint8_t>().allocate(total), huge_page_free{total}};
  size_t offset = 0;
  for (const tensor_info* t : mine) {
    offset = at(offset);
    uint8_t* copy = weights_arena_.get() + offset;
    offset += t->n_bytes;
    const int64_t n_in = t->ne[0];
    const int64_t n_rows = t->n_elements() / n_in;
    const size_t row = row_bytes(t->type, static_cast<uint64_t>(n_in));
    const cpu::weight_layout layout = layout_for(*t);
    const bool pack = layout != cpu::weight_layout::ggml;
    pool_.run([&](int ith, int nth) {
      // parts of whole blocks: pack_rows lays rows out in blocks of packed_block
      auto [r0, r1] = cpu::thread_pool::split(n_rows, ith, nth, cpu::packed_block);
      if (pack) {
        cpu::pack_rows(isa_, t->type, t->data + r0 * row, copy + r0 * row, n_in, r1 - r0,
                       layout);
      } else {
        std::memcpy(copy + r0 * row, t->data + r0 * row, static_cast<size_t>(r1 - r0) * row);
      }
    });
    // the file mapping's pages of this tensor are not read again (but embedding rows of a
    // tied head, which fault back in one by one): out of this process's resident memory,
    // as a GPU stage does with what it uploads (nothing for a model in a caller's buffer)
    model_->file().release_pages(t->data, t->n_bytes);
    weights_.emplace(t, owned_weight{copy, layout});
  }
}

cpu::weight_layout cpu_stage::layout_for(const tensor_info& t) const {
  return cpu::preferred_layout(isa_, t.type, &t == model_->weights().head());
}

cpu_stage::conversion_plan cpu_stage::plan_conversions(std::initializer_list<product> ps,
                                                       int64_t n_tokens) const {
  const int64_t n_in = ps.begin()->w->ne[0];
  conversion_plan plan;
  for (size_t i = 0; i < ps.size(); ++i) {
    const tensor_info& w = *ps.begin()[i].w;
    BATON_ASSERT(w.ne[0] == n_in);
    int c = 0;
    while (c < plan.n_conv && plan.conv[static_cast<size_t>(c)].type != w.type) {
      ++c;
    }
    if (c == plan.n_conv) {
      const size_t xs = cpu::activation_row_bytes(w.type, n_in);
      const size_t pb = cpu::prepared_row_bytes(isa_, w.type, n_in, n_tokens);
      plan.conv[static_cast<size_t>(plan.n_conv++)] = {w.type, plan.xq_bytes, xs,
                                                       plan.prep_bytes, pb};
      plan.xq_bytes += xs * static_cast<size_t>(n_tokens);
      plan.prep_bytes += pb * static_cast<size_t>(n_tokens);
    }
    plan.conv_of[i] = c;
  }
  return plan;
}

void cpu_stage::convert_rows(const conversion_plan& plan, const float* x, int64_t n_in,
                             int64_t n_tokens, const std::function<void(int64_t t)>& make_row,
                             uint8_t* prep) {
  // a token at a time to whichever thread is free: a static split made the caller wait
  // for the other thread 21 % of these jobs' time (16-token decode steps)
  each_token(n_tokens, [&](int64_t t) {
    if (make_row) {
      make_row(t);
    }
    for (int c = 0; c < plan.n_conv; ++c) {
      const converted& v = plan.conv[static_cast<size_t>(c)];
      uint8_t* xq = xq_.data() + v.xq_at + t * v.xs;
      cpu::quantize_activation_row(isa_, v.type, x + t * n_in, xq, n_in);
      cpu::prepare_row(isa_, v.type, xq, prep + v.prep_at + t * v.pb, n_in, n_tokens);
    }
  });
}

void cpu_stage::share_rows(std::initializer_list<product> ps) {
  // ranges of output rows, multiples of 16 (a y row's 64-byte lines stay one thread's),
  // a thread's share of all the products' rows at most, so that each thread reads long
  // sequential streams: with 2, 4 or 8 ranges a thread Q4_0 decode read slower (tg32
  // medians of 4 interleaved rounds, Zen 4: 37.2, 35.9, 33.4, 34.4 t/s). A thread done
  // with its ranges helps with the others' from their back (row_claims). An element does
  // not depend on the rows computed with it.
  int64_t total_rows = 0;
  for (const product& p : ps) {
    total_rows += p.w->ne[1];
  }
  const int64_t per = std::max<int64_t>(16, (total_rows / pool_.n_threads() + 15) / 16 * 16);
  chunks_.clear();
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t n_out = ps.begin()[i].w->ne[1];
    for (int64_t r = 0; r < n_out; r += per) {
      chunks_.push_back({static_cast<int32_t>(i), r, std::min(n_out, r + per)});
    }
  }
  claims_.reset(chunks_, std::max<int64_t>(16, per / piece_parts / 16 * 16), 16);
}

void cpu_stage::matmuls(std::initializer_list<product> ps, const float* x, int64_t n_tokens,
                        const std::function<void(int64_t t)>& make_row) {
  BATON_ASSERT(ps.size() > 0 && ps.size() <= 4);
  const int64_t n_in = ps.begin()->w->ne[0];
  // one conversion of x per weight type: its rows in xq_, prepared in prepared_
  const conversion_plan plan = plan_conversions(ps, n_tokens);
  if (xq_.size() < plan.xq_bytes) {
    xq_.resize(plan.xq_bytes);
  }
  if (prepared_.size() < plan.prep_bytes + 64) {
    prepared_.resize(plan.prep_bytes + 64);
  }
  uint8_t* prep = prepared_.data() + (64 - reinterpret_cast<uintptr_t>(prepared_.data()) % 64) % 64;
  convert_rows(plan, x, n_in, n_tokens, make_row, prep);
  share_rows(ps);
  auto compute = [&](int32_t i, int64_t r0, int64_t r1) {
    const product& p = ps.begin()[i];
    const converted& v = plan.conv[static_cast<size_t>(plan.conv_of[static_cast<size_t>(i)])];
    const auto owned = weights_.find(p.w);
    const owned_weight w = owned != weights_.end()
                               ? owned->second
                               : owned_weight{reinterpret_cast<const uint8_t*>(p.w->data),
                                              cpu::weight_layout::ggml};
    cpu::matmul(isa_, p.w->type, w.data, xq_.data() + v.xq_at, p.y, n_in, n_tokens, p.w->ne[1],
                r0, r1, w.layout, p.w->ne[1], v.pb > 0 ? prep + v.prep_at : nullptr);
  };
  pool_.run([&](int, int) { claims_.work(compute); });
}

void cpu_stage::attention(const batch& b, int64_t il, const float* q, float* out) {
  const auto& c = model_->config();
  const int64_t n_tokens = b.n_tokens();
  const int64_t head_dim = c.n_embd_head_k;
  const int64_t group = c.n_head / c.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // work items: (token, head), each depending only on its own data, taken by whichever
  // thread is free a KV head's group of query heads at a time (they read the same keys
  // and values): a split of equal cost made the caller wait for the other thread 18 % of
  // these jobs' time (16-token decode steps), and a causal prefill's items differ in cost
  const int64_t n_items = n_tokens * c.n_head;
  std::atomic<int64_t> next{0};
  pool_.run([&](int, int) {
    std::vector<const void*> kb, vb;
    std::vector<float> scratch;
    int64_t cached_token = -1;
    for (int64_t i0 = next.fetch_add(group, std::memory_order_relaxed); i0 < n_items;
         i0 = next.fetch_add(group, std::memory_order_relaxed)) {
      // query heads h0 .. h0 + group − 1 of token t: KV head h0 / group's
      const int64_t t = i0 / c.n_head;
      const int64_t h0 = i0 % c.n_head;
      const auto& table = *b.block_tables[static_cast<size_t>(b.seq[static_cast<size_t>(t)])];
      if (t != cached_token) {
        kv_.block_pointers(il, false, table, kb);
        kv_.block_pointers(il, true, table, vb);
        cached_token = t;
      }
      const int64_t n_kv = b.pos[static_cast<size_t>(t)] + 1;
      scratch.resize(static_cast<size_t>(group * n_kv));
      const float* qt = q + (t * c.n_head + h0) * head_dim;
      float* ot = out + (t * c.n_head + h0) * head_dim;
      if (isa_ == cpu::isa::scalar) {
        for (int64_t j = 0; j < group; ++j) {
          cpu::attention_head(qt + j * head_dim, kv_.view(kb), kv_.view(vb), h0 / group, n_kv,
                              scale, scratch.data(), ot + j * head_dim);
        }
      } else {
        // each key's and value's row converted once for the group (the same bits as a
        // head at a time)
        const auto attend =
            isa_ == cpu::isa::avx512 ? cpu::attention_group_avx512 : cpu::attention_group_avx2;
        attend(qt, group, kv_.view(kb), kv_.view(vb), h0 / group, n_kv, scale, scratch.data(), ot);
      }
    }
  });
}

void cpu_stage::each_token(int64_t n_tokens, const std::function<void(int64_t t)>& f) {
  // a few tokens (decode) on this thread: waking the pool would cost more
  if (n_tokens < 4 || pool_.n_threads() == 1) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      f(t);
    }
    return;
  }
  std::atomic<int64_t> next{0};
  pool_.run([&](int, int) {
    for (int64_t t = next.fetch_add(1, std::memory_order_relaxed); t < n_tokens;
         t = next.fetch_add(1, std::memory_order_relaxed)) {
      f(t);
    }
  });
}

void cpu_stage::run(const batch& b, std::vector<float>& hidden, std::vector<float>& logits) {
  const auto& c = model_->config();
  const auto& w = model_->weights();
  const int64_t n_tokens = b.n_tokens();
  const int64_t n_embd = c.n_embd;
  const int64_t head_dim = c.n_embd_head_k;
  const int64_t n_q = c.n_head * head_dim;
  const int64_t n_kv = c.n_embd_k_gqa();
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (v.size() < static_cast<size_t>(n)) {
      v.resize(static_cast<size_t>(n));
    }
  };
  grow(cur_, n_tokens * n_embd);
  grow(q_, n_tokens * n_q);
  grow(k_, n_tokens * n_kv);
  grow(v_, n_tokens * n_kv);
  grow(attn_, n_tokens * n_q);
  grow(gate_, n_tokens * c.n_ff);
  grow(up_, n_tokens * c.n_ff);
  grow(rope_cs_, n_tokens * c.n_rot);

  if (first_stage()) {
    // hidden [n_tokens, n_embd] = token_embd rows
    hidden.resize(static_cast<size_t>(n_tokens * n_embd));
    const tensor_info& e = *w.token_embd;
    const uint64_t row = row_bytes(e.type, static_cast<uint64_t>(n_embd));
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int32_t id = b.token[static_cast<size_t>(t)];
      BATON_ASSERT(id >= 0 && id < c.n_vocab);
      cpu::dequantize_row(e.type, e.data + static_cast<uint64_t>(id) * row,
                          hidden.data() + t * n_embd, n_embd);
    }
  }
  BATON_ASSERT(hidden.size() >= static_cast<size_t>(n_tokens * n_embd));
  float* x = hidden.data();
  const float* freq = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
  for (int64_t t = 0; t < n_tokens; ++t) {
    cpu::rope_cache(b.pos[static_cast<size_t>(t)], c.n_rot, c.rope_freq_base, freq,
                    rope_cs_.data() + t * c.n_rot);
  }
  auto f32 = [](const tensor_info* t) { return reinterpret_cast<const float*>(t->data); };

  // x[t] += cur[t] (n_embd floats): each layer's two residual adds, done by whichever
  // thread next reads token t's x (the norm before the next matmul), not by the caller
  // alone while the pool waits
  const auto add_residual = [&](int64_t t) {
    float* xt = x + t * n_embd;
    const float* ct = cur_.data() + t * n_embd;
    for (int64_t i = 0; i < n_embd; ++i) {
      xt[i] += ct[i];
    }
  };
  bool residual_pending = false;  // the last down projection's, in cur_
  for (int64_t il = first_; il < last_; ++il) {
    const layer_weights& l = w.layers[static_cast<size_t>(il)];
    // q [n_tokens, n_head × head_dim], k and v [n_tokens, n_head_kv × head_dim] of
    // cur = rmsnorm(x) × attn_norm
    matmuls({{l.wq, q_.data()}, {l.wk, k_.data()}, {l.wv, v_.data()}}, cur_.data(), n_tokens,
            [&](int64_t t) {
              if (residual_pending) {
                add_residual(t);
              }
              cpu::rms_norm(x + t * n_embd, f32(l.attn_norm), cur_.data() + t * n_embd, n_embd,
                            c.rms_norm_eps);
            });
    residual_pending = false;
    // rope on q and k, k and v into the cache: a token's own rows and slots
    const auto rope_store = [&](int64_t t) {
      const float* cs = rope_cs_.data() + t * c.n_rot;
      for (int64_t h = 0; h < c.n_head; ++h) {
        cpu::rope_apply(q_.data() + t * n_q + h * head_dim, c.n_rot, cs);
      }
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        cpu::rope_apply(k_.data() + t * n_kv + h * head_dim, c.n_rot, cs);
      }
      const auto& table = *b.block_tables[static_cast<size_t>(b.seq[static_cast<size_t>(t)])];
      kv_.store_k(il, table, b.pos[static_cast<size_t>(t)], k_.data() + t * n_kv);
      kv_.store_v(il, table, b.pos[static_cast<size_t>(t)], v_.data() + t * n_kv);
    };
    each_token(n_tokens, rope_store);
    attention(b, il, q_.data(), attn_.data());          // attn [n_tokens, n_head × head_dim]
    matmuls({{l.wo, cur_.data()}}, attn_.data(), n_tokens);  // cur [n_tokens, n_embd]
    // feed-forward: down(silu(gate(cur)) × up(cur)), cur = rmsnorm(x) × ffn_norm with x
    // the residual plus attention's output (in cur until the norm replaces it);
    // gate, up [n_tokens, n_ff]
    matmuls({{l.ffn_gate, gate_.data()}, {l.ffn_up, up_.data()}}, cur_.data(), n_tokens,
            [&](int64_t t) {
              add_residual(t);
              cpu::rms_norm(x + t * n_embd, f32(l.ffn_norm), cur_.data() + t * n_embd, n_embd,
                            c.rms_norm_eps);
            });
    // cur [n_tokens, n_embd]
    const auto silu_mul = isa_ == cpu::isa::scalar   ? cpu::silu_mul
                          : isa_ == cpu::isa::avx512 ? cpu::silu_mul_avx512
                                                     : cpu::silu_mul_avx2;
    matmuls({{l.ffn_down, cur_.data()}}, gate_.data(), n_tokens, [&](int64_t t) {
      silu_mul(gate_.data() + t * c.n_ff, up_.data() + t * c.n_ff, gate_.data() + t * c.n_ff,
               c.n_ff);
    });
    residual_pending = true;
  }
  if (residual_pending) {
    each_token(n_tokens, add_residual);
  }

  if (last_stage()) {
    const int64_t n_out = b.n_logits();
    // rows needing logits, normed: cur [n_out, n_embd]
    int64_t r = 0;
    for (int64_t t = 0; t < n_tokens; ++t) {
      if (b.logits[static_cast<size_t>(t)]) {
        cpu::rms_norm(x + t * n_embd, f32(w.output_norm), cur_.data() + r * n_embd, n_embd,
                      c.rms_norm_eps);
        ++r;
      }
    }
    logits.resize(static_cast<size_t>(n_out * c.n_vocab));
    if (n_out > 0) {
      matmuls({{w.head(), logits.data()}}, cur_.data(), n_out);  // logits [n_out, n_vocab]
    }
  }
}

result<void> cpu_stage::forward(const batch& b, stage_activations& io,
                                std::vector<float>& logits) {
  if (io.on_device) {
    // only a GPU stage that knows its successor is a GPU stage leaves them there
    return make_error("cpu stage: activations arrived in the memory of cuda:%d", io.device);
  }
  run(b, io.host, logits);
  return {};
}

}  // namespace baton
