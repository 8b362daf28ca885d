// The `baton` executable end to end: info on a Llama-3-8B-shaped file made with the
// writer (sparse, so it costs no disk), named errors with exit status 2, tokenize round
// trips, and mkmodel's demo model tokenizing exactly as the shared llama.cpp models.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/model/model_builder.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

using test::run_result;
using test::slurp;

/// Runs `baton <args>` through the shell, optionally feeding `stdin_text`.
run_result baton(const std::string& args, const std::string& stdin_text = "") {
  return test::run_shell(std::string(BATON_BINARY) + " " + args, stdin_text);
}

vocab_spec synthetic_vocab(int64_t n) {
  vocab_spec v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  for (int64_t i = 0; i < n; ++i) {
    v.tokens.push_back(std::string("t").append(std::to_string(i)));
    v.token_types.push_back(1);
  }
  v.bos_id = 0;
  v.eos_id = 1;
  return v;
}

TEST(cli, info_on_the_llama3_8b_shape) {
  const auto dir = test::temp_dir("cli-8b");
  const auto path = (dir / "llama3-8b-shape.gguf").string();
  build_options o;
  o.shape = *preset_shape("llama3-8b");
  o.type = ggml_type::q8_0;
  o.random_weights = false;  // holes: an 8.5 GB file that takes no disk
  const auto vocab = synthetic_vocab(o.shape.n_vocab);
  auto w = build_model(o, &vocab);
  ASSERT_TRUE(w) << w.err().message;
  ASSERT_TRUE(w->write(path));

  auto r = baton("info --json " + path);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["hparams"]["n_layer"], 32);
  EXPECT_EQ(j["hparams"]["n_head_kv"], 8);
  EXPECT_EQ(j["hparams"]["n_embd_head_k"], 128);
  EXPECT_EQ(j["hparams"]["tied_output"], false);
  // 2 × 32 layers × 8 KV heads × 128 × 2 bytes: 4 × 4096 tokens take 2 GiB, not 8
  EXPECT_EQ(j["kv_bytes_per_token"]["f16"], 131072);
  EXPECT_EQ(j["kv_bytes_per_token"]["f32"], 262144);
  EXPECT_EQ(j["tensor_types"]["q8_0"]["tensors"], 32 * 7 + 2);
  EXPECT_EQ(j["n_params"].get<uint64_t>(), 8030261248ull);  // Llama 3 8B's count

  auto human = baton("info -m " + path);
  ASSERT_EQ(human.status, 0) << human.err;
  EXPECT_NE(human.out.find("131072 bytes/token with f16 K/V (512.00 MiB per 4096 tokens)"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("32 query, 8 KV (grouped-query 4:1), head size 128"),
            std::string::npos)
      << human.out;
  std::filesystem::remove_all(dir);
}

TEST(cli, bad_files_and_flags_exit_2_with_a_named_error) {
  const auto dir = test::temp_dir("cli-bad");
  const auto bad = (dir / "corrupt.gguf").string();
  std::ofstream(bad, std::ios::binary) << "GGUF\x03\0\0\0garbage";
  auto r = baton("info " + bad);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(bad + ": truncated file"), std::string::npos) << r.err;

  auto missing = baton("info " + (dir / "nope.gguf").string());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("nope.gguf: cannot open: No such file or directory"),
            std::string::npos)
      << missing.err;

  auto flag = baton("info --no-such-flag x.gguf");
  EXPECT_EQ(flag.status, 2);
  EXPECT_NE(flag.err.find("--no-such-flag"), std::string::npos) << flag.err;

  auto preset = baton("mkmodel --preset gpt5 -o " + (dir / "x.gguf").string());
  EXPECT_EQ(preset.status, 2);
  EXPECT_NE(preset.err.find("unknown --preset 'gpt5'"), std::string::npos) << preset.err;

  auto tok = baton("tokenize -m " + bad, "hello");
  EXPECT_EQ(tok.status, 2);
  std::filesystem::remove_all(dir);
}

TEST(cli, tokenize_round_trips_on_the_shared_models) {
  BATON_REQUIRE_SHARED(shared);
  const std::string text = "Hello, world! <|eot_id|> naïve café 🦙\n  indented";
  for (const char* name : {"tiny-q8_0", "tiny-q4_0", "tiny-q4_k_m"}) {
    const auto model = (shared / "models" / (std::string(name) + ".gguf")).string();
    auto enc = baton("tokenize --json -m " + model, text);
    ASSERT_EQ(enc.status, 0) << enc.err;
    const auto ids = nlohmann::json::parse(enc.out);
    ASSERT_GT(ids.size(), 5u);
    EXPECT_EQ(ids[0], 128000);  // BOS
    auto dec = baton("tokenize --decode -m " + model, enc.out);
    ASSERT_EQ(dec.status, 0) << dec.err;
    EXPECT_EQ(dec.out, text);
    auto plain = baton("tokenize --no-bos --no-parse-special -m " + model, "<|eot_id|>");
    ASSERT_EQ(plain.status, 0) << plain.err;
    EXPECT_EQ(plain.out.find("128009"), std::string::npos) << plain.out;
    EXPECT_EQ(plain.out.find("128000"), std::string::npos) << plain.out;
  }
  auto bad_ids = baton("tokenize --decode -m " + (shared / "models/tiny-q8_0.gguf").string(),
                       "1 2 999999");
  EXPECT_EQ(bad_ids.status, 2);
  EXPECT_NE(bad_ids.err.find("999999"), std::string::npos) << bad_ids.err;
}

TEST(cli, mkmodel_demo_tokenizes_as_the_shared_models) {
  BATON_REQUIRE_SHARED(shared);
  BATON_REQUIRE_HF_TOKENIZER(tokenizer_json);
  const auto dir = test::temp_dir("cli-demo");
  const auto demo = (dir / "demo.gguf").string();
  auto mk = baton("mkmodel --preset demo --tokenizer-json " + tokenizer_json.string() + " -o " + demo);
  ASSERT_EQ(mk.status, 0) << mk.err;

  // same vocabulary, merges and specials as llama.cpp's own conversion
  auto ours = gguf_file::open(demo);
  auto theirs = gguf_file::open((shared / "models/tiny-q8_0.gguf").string());
  ASSERT_TRUE(ours && theirs);
  auto a = load_vocab(*ours);
  auto b = load_vocab(*theirs);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->token_types, b->token_types);
  EXPECT_EQ(a->merges, b->merges);
  EXPECT_EQ(a->bos_id, b->bos_id);
  EXPECT_EQ(a->eos_id, b->eos_id);
  EXPECT_EQ(a->pre, b->pre);

  // and so the same ids
  const std::string text = slurp(shared / "golden/prompts/chat.txt") + " 1234567 🚀 naïve";
  auto x = baton("tokenize -m " + demo, text);
  auto y = baton("tokenize -m " + (shared / "models/tiny-q8_0.gguf").string(), text);
  ASSERT_EQ(x.status, 0) << x.err;
  EXPECT_EQ(x.out, y.out);

  auto info = baton("info --json " + demo);
  ASSERT_EQ(info.status, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["hparams"]["n_embd"], 256);
  EXPECT_EQ(j["tensor_types"]["q8_0"]["tensors"], 4 * 7 + 1);
  EXPECT_EQ(j["chat_template"], true);

  // deterministic: the same seed writes the same bytes
  const auto demo2 = (dir / "demo2.gguf").string();
  ASSERT_EQ(baton("mkmodel --tokenizer-json " + tokenizer_json.string() + " -o " + demo2).status, 0);
  EXPECT_TRUE(slurp(demo) == slurp(demo2));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(cli_run, generates_deterministically_and_refuses_what_does_not_fit) {
  BATON_REQUIRE_SHARED(shared);
  const auto model = (shared / "models/tiny-q8_0.gguf").string();
  auto a = baton("run -m " + model + " -p \"The capital of France is\" -n 12 --temp 0.7 -s 42 -t 2");
  auto b = baton("run -m " + model + " -p \"The capital of France is\" -n 12 --temp 0.7 -s 42 -t 1");
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);  // same seed, same tokens, whatever the thread count
  // the weights read from the file's pages instead of a repacked copy: the same tokens
  auto unpacked = baton("run -m " + model +
                        " -p \"The capital of France is\" -n 12 --temp 0.7 -s 42 -t 2 --no-repack");
  ASSERT_EQ(unpacked.status, 0) << unpacked.err;
  EXPECT_EQ(a.out, unpacked.out);
  EXPECT_NE(a.err.find("generation:"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("tokens/s"), std::string::npos) << a.err;

  auto chat = baton("run --chat --system \"Be brief.\" -m " + model + " -p Hi -n 4 --temp 0");
  EXPECT_EQ(chat.status, 0) << chat.err;

  auto too_long = baton("run -m " + model + " -p \"a b c d e f\" -n 100 -c 64");
  EXPECT_EQ(too_long.status, 2);
  EXPECT_NE(too_long.err.find("prompt (7 tokens) + -n (100) exceeds the context size (64"),
            std::string::npos)
      << too_long.err;
  auto bad_kv = baton("run -m " + model + " -p x --kv-type q8");
  EXPECT_EQ(bad_kv.status, 2);
  EXPECT_NE(bad_kv.err.find("--kv-type 'q8': expected f16 or f32"), std::string::npos);
  auto bad_kernels = baton("run -m " + model + " -p x --kernels sse9");
  EXPECT_EQ(bad_kernels.status, 2);
  EXPECT_NE(bad_kernels.err.find("--kernels 'sse9'"), std::string::npos);
  // a thread count no machine has is refused before any thread starts (it aborted)
  auto many = baton("bench limits -t 100000");
  EXPECT_EQ(many.status, 2);
  EXPECT_NE(many.err.find("-t (100000) must be between 1 and 512"), std::string::npos) << many.err;
  auto bad_limits_kernels = baton("bench limits --kernels sse9");
  EXPECT_EQ(bad_limits_kernels.status, 2);
  EXPECT_NE(bad_limits_kernels.err.find("--kernels 'sse9'"), std::string::npos);
  auto bad_temp = baton("run -m " + model + " -p x --top-p 0");
  EXPECT_EQ(bad_temp.status, 2);
  EXPECT_NE(bad_temp.err.find("top_p (0) must be in (0, 1]"), std::string::npos) << bad_temp.err;
}

TEST(cli_logits, writes_llama_cpp_comparable_logits) {
  BATON_REQUIRE_SHARED(shared);
  const auto dir = test::temp_dir("cli-logits");
  const auto out = (dir / "logits.bin").string();
  auto r = baton("logits -m " + (shared / "models/tiny-q8_0.gguf").string() + " -f " +
                 (shared / "golden/prompts/capital.txt").string() + " --kv-type f32 -o " + out +
                 " --top 5");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("6 prompt tokens; top 5 next tokens"), std::string::npos) << r.out;
  const std::string ours = slurp(out);
  const std::string ref = slurp(shared / "golden/tiny-q8_0/capital.kv_f32.logits.bin");
  ASSERT_EQ(ours.size(), ref.size());
  std::vector<float> a(ours.size() / 4), b(ref.size() / 4);
  std::memcpy(a.data(), ours.data(), ours.size());
  std::memcpy(b.data(), ref.data(), ref.size());
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (a[i] - b[i]) * (a[i] - b[i]);
    n += b[i] * b[i];
  }
  EXPECT_LE(std::sqrt(e / n), 5e-2);
  auto missing = baton("logits -m " + (shared / "models/tiny-q8_0.gguf").string() + " -f /nonexistent");
  EXPECT_EQ(missing.status, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace baton
