// The fixture model with a byte-level vocabulary (256 byte tokens, BOS, <|eot_id|>):
// what the actor tests and the constrained-output tests serve, so that any byte string
// is a token string and outputs can be checked as text.
#pragma once

#include <memory>
#include <string>

#include "runtime/model/model_builder.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/fixture_model.hpp"

namespace baton::test {

/// 256 byte tokens in GPT-2's byte-to-unicode form, then BOS and <|eot_id|>.
inline vocab_spec byte_vocab() {
  vocab_spec v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    const uint32_t cpt = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    std::string s;
    if (cpt < 0x80) {
      s.push_back(static_cast<char>(cpt));
    } else {
      s.push_back(static_cast<char>(0xc0 | (cpt >> 6)));
      s.push_back(static_cast<char>(0x80 | (cpt & 0x3f)));
    }
    v.tokens.push_back(s);
    v.token_types.push_back(1);
  }
  v.tokens.push_back("<|begin_of_text|>");
  v.token_types.push_back(3);
  v.tokens.push_back("<|eot_id|>");
  v.token_types.push_back(3);
  v.bos_id = 256;
  v.eos_id = 257;
  return v;
}

struct fixture_model {
  std::shared_ptr<const model> m;
  std::shared_ptr<const tokenizer> tok;
};

inline const fixture_model& fixture() {
  static const fixture_model f = [] {
    fixture_model out;
    const auto v = byte_vocab();
    build_options o = fixture_options(ggml_type::q8_0);
    o.shape.n_vocab = static_cast<int64_t>(v.tokens.size());  // 258: the byte vocabulary's
    out.m = open_model(o, &v);
    out.tok = std::make_shared<tokenizer>(std::move(*tokenizer::create(v)));
    return out;
  }();
  return f;
}

}  // namespace baton::test
