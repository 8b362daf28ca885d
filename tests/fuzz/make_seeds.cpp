// Writes small, valid GGUF files as the fuzzer's seed corpus: a complete tiny llama
// model (64-token vocabulary), a file with every metadata type, a v2 file.
#include <cstdio>
#include <string>

#include "runtime/model/model_builder.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  baton::vocab_spec v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  for (int i = 0; i < 64; ++i) {
    v.tokens.push_back(std::string(1, static_cast<char>('A' + i % 26)) + std::to_string(i));
    v.token_types.push_back(i < 2 ? 3 : 1);
  }
  v.merges = {"A 0", "B 1"};
  v.bos_id = 0;
  v.eos_id = 1;
  v.chat_template = "<|start_header_id|>";
  baton::build_options o;
  o.shape.n_vocab = 64;
  o.shape.n_embd = 32;
  o.shape.n_ff = 32;
  o.shape.n_layer = 1;
  o.shape.n_head = 2;
  o.shape.n_head_kv = 1;
  int failures = 0;
  for (auto type : {baton::ggml_type::f32, baton::ggml_type::q8_0}) {
    o.type = type;
    auto w = baton::build_model(o, &v);
    failures += !(w && w->write(dir + "/model-" + std::string(baton::traits(type).name) + ".gguf"));
  }
  baton::gguf_writer all(2);
  all.set("u8", uint8_t{1});
  all.set("i16", int16_t{-2});
  all.set("f64", 1.5);
  all.set("b", true);
  baton::gguf_array arr;
  arr.type = baton::gguf_type::string;
  arr.items = {"x", "yz"};
  all.set("arr", arr);
  all.add_tensor("t", baton::ggml_type::q4_k, {256});
  failures += !all.write(dir + "/v2-values.gguf");
  return failures == 0 ? 0 : 1;
}
