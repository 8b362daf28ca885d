// engine.hpp: the options checked once in create(), and feed(), which checks a batch's context,
// token ids and size, takes the blocks its new positions need, runs the one stage and hands back
// each requested row of logits; prefill feeds a prompt in chunks.
#include "runtime/compute/engine.hpp"

#include <algorithm>

#include "kernels/cpu/thread_pool.hpp"

namespace baton {

result<std::unique_ptr<engine>> engine::create(std::shared_ptr<const model> m,
                                               engine_options o) {
  const auto& c = m->config();
  if (o.n_threads < 1 || o.n_threads > cpu::k_max_threads) {
    return make_error("threads (%d) must be between 1 and %d", o.n_threads, cpu::k_max_threads);
  }
  if (o.kv_type != ggml_type::f16 && o.kv_type != ggml_type::f32) {
    return make_error("kv-type must be f16 or f32");
  }
  if (!cpu::isa_supported(o.kernels)) {
    return make_error("kernels '%s' are not supported by this CPU",
                      std::string(cpu::isa_name(o.kernels)).c_str());
  }
  if (o.n_ctx <= 0) {
    o.n_ctx = c.n_ctx_train;
  }
  if (o.n_ctx > c.n_ctx_train) {
    return make_error("context (%lld) is larger than the model's training context (%lld)",
                      static_cast<long long>(o.n_ctx), static_cast<long long>(c.n_ctx_train));
  }
  if (o.block_size <= 0 || o.max_batch_tokens <= 0 || o.n_seq_max <= 0) {
    return make_error("block size, batch size and sequence count must be > 0");
  }
  return std::unique_ptr<engine>(new engine(std::move(m), o));
}

engine::engine(std::shared_ptr<const model> m, engine_options opts)
    : model_(std::move(m)),
      opts_(opts),
      blocks_(static_cast<int32_t>((opts.n_ctx + opts.block_size - 1) / opts.block_size *
                                   opts.n_seq_max),
              opts.block_size),
      stage_(stage_compute_options{.m = model_,
                                   .first_layer = 0,
                                   .last_layer = model_->config().n_layer,
                                   .device = "cpu",
                                   .n_blocks = blocks_.n_blocks(),
                                   .block_size = opts.block_size,
                                   .kv_type = opts.kv_type,
                                   .n_threads = opts.n_threads,
                                   .kernels = opts.kernels,
                                   .repack = opts.repack}) {}

result<std::vector<std::vector<float>>> engine::feed(std::span<const feed_item> items) {
  batch_.clear();
  int64_t total = 0;
  for (const auto& it : items) {
    total += static_cast<int64_t>(it.tokens.size());
    const int64_t end = static_cast<int64_t>(it.seq->tokens.size() + it.tokens.size());
    if (end > opts_.n_ctx) {
      return make_error("sequence of %lld tokens is longer than the context (%lld)",
                        static_cast<long long>(end), static_cast<long long>(opts_.n_ctx));
    }
  }
  for (const auto& it : items) {
    for (int32_t t : it.tokens) {
      if (t < 0 || t >= config().n_vocab) {
        return make_error("token id %d is outside the vocabulary (%lld)", t,
                          static_cast<long long>(config().n_vocab));
      }
    }
  }
  if (total > opts_.max_batch_tokens) {
    return make_error("batch of %lld tokens exceeds max_batch_tokens (%lld)",
                      static_cast<long long>(total),
                      static_cast<long long>(opts_.max_batch_tokens));
  }
  // blocks for the new positions
  for (const auto& it : items) {
    sequence& s = *it.seq;
    const int32_t need =
        blocks_.blocks_for(static_cast<int64_t>(s.tokens.size() + it.tokens.size())) -
        static_cast<int32_t>(s.block_table.size());
    if (need > 0 && blocks_.can_allocate(need) != alloc_status::ok) {
      return make_error("KV cache full: %d more blocks needed, %d free", need,
                        blocks_.n_free());
    }
    for (int32_t i = 0; i < need; ++i) {
      s.block_table.push_back(blocks_.allocate());
    }
  }
  for (size_t si = 0; si < items.size(); ++si) {
    const auto& it = items[si];
    batch_.block_tables.push_back(&it.seq->block_table);
    const auto base = static_cast<int32_t>(it.seq->tokens.size());
    for (size_t i = 0; i < it.tokens.size(); ++i) {
      const bool last = i + 1 == it.tokens.size();
      batch_.add(static_cast<int32_t>(si), it.tokens[i], base + static_cast<int32_t>(i),
                 last && it.want_logits);
    }
  }
  stage_.run(batch_, hidden_, logits_);
  for (const auto& it : items) {
    it.seq->tokens.insert(it.seq->tokens.end(), it.tokens.begin(), it.tokens.end());
  }
  std::vector<std::vector<float>> out;
  const auto n_vocab = static_cast<size_t>(config().n_vocab);
  size_t row = 0;
  for (const auto& it : items) {
    if (it.want_logits && !it.tokens.empty()) {
      out.emplace_back(logits_.begin() + static_cast<std::ptrdiff_t>(row * n_vocab),
                       logits_.begin() + static_cast<std::ptrdiff_t>((row + 1) * n_vocab));
      ++row;
    }
  }
  return out;
}

result<std::vector<float>> engine::prefill(sequence& s, std::span<const int32_t> tokens,
                                           int64_t chunk) {
  if (chunk <= 0) {
    chunk = opts_.max_batch_tokens;
  }
  if (tokens.empty()) {
    return make_error("empty prompt");
  }
  std::vector<float> last;
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(chunk)) {
    const size_t n = std::min(tokens.size() - i, static_cast<size_t>(chunk));
    const bool final_chunk = i + n == tokens.size();
    feed_item item{&s, tokens.subspan(i, n), final_chunk};
    auto r = feed(std::span<const feed_item>(&item, 1));
    if (!r) {
      return r.err();
    }
    if (final_chunk) {
      last = std::move(r->front());
    }
  }
  return last;
}

void engine::release(sequence& s) {
  for (int32_t b : s.block_table) {
    blocks_.free(b);
  }
  s.block_table.clear();
  s.tokens.clear();
}

}  // namespace baton
