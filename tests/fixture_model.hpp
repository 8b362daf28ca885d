// The tests' fixture model: one small Llama shape that every test building a model of its
// own starts from, and the one way to open such a model in memory. Its own header so that
// the shape is written once: n_embd 128 (four heads of 32, two KV heads: grouped-query
// attention as in Llama 3), n_ff 192, four layers (enough to cut into 2-3 stages), vocab
// 320, context 2048 and the Llama 3 rope scaling (model_shape's defaults). A test that
// needs another shape starts from this one and says why where it changes a field.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/model/gguf.hpp"
#include "runtime/model/model_builder.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/system/error.hpp"

namespace baton::test {

/// The fixture shape (see the file's opening paragraph).
inline model_shape fixture_shape() {
  model_shape s;
  s.n_vocab = 320;
  s.n_embd = 128;
  s.n_ff = 192;
  s.n_layer = 4;
  s.n_head = 4;
  s.n_head_kv = 2;
  return s;
}

/// build_options of the fixture shape with `type` 2-D weights (q8_0: build_options'
/// default) and the default seed.
inline build_options fixture_options(ggml_type type = ggml_type::q8_0) {
  build_options o;
  o.shape = fixture_shape();
  o.type = type;
  return o;
}

/// Builds `o` (with `vocab`'s tokenizer keys, or none) and opens it in memory. The model
/// owns the file's bytes: they live as long as the returned pointer. Aborts when the
/// fixture cannot be built, which is a bug of the test, not a result.
inline std::shared_ptr<const model> open_model(const build_options& o,
                                               const vocab_spec* vocab = nullptr) {
  struct held {
    std::vector<std::byte> bytes;
    std::shared_ptr<const model> m;
  };
  auto w = build_model(o, vocab);
  BATON_ASSERT(w.ok());
  auto h = std::make_shared<held>();
  h->bytes = w->to_bytes();
  auto f = gguf_file::parse(h->bytes.data(), h->bytes.size(), "fixture.gguf");
  BATON_ASSERT(f.ok());
  auto m = model::from_file(std::move(*f));
  BATON_ASSERT(m.ok());
  h->m = std::move(*m);
  const model* p = h->m.get();
  return std::shared_ptr<const model>(std::move(h), p);  // shares ownership of the bytes
}

}  // namespace baton::test
