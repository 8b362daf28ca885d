// The grammar against ../shared/jsonschema (a MaskBench sample) with the real Llama 3
// vocabulary of ../shared/models/tiny-q8_0.gguf: every schema compiles or is refused with
// a named keyword; on every compiled one, every valid instance's tokens pass the mask
// at every step and the document is whole at the end, and every invalid instance is
// rejected at some step; the mask and commit never disagree. Every 4th file (sorted) to
// keep the suite short; `baton bench grammar` runs them all (bench/RESULTS.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/grammar/maskbench.hpp"
#include "runtime/model/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/test_util.hpp"

namespace baton::grammar {
namespace {

TEST(grammar_maskbench, the_sample_compiles_or_names_its_keyword_and_every_instance_is_judged_right) {
  BATON_REQUIRE_SHARED(shared);
  const auto data = shared / "jsonschema" / "data";
  if (!std::filesystem::is_directory(data)) {
    if (test::in_ci()) {
      FAIL() << data << " is missing";
    }
    GTEST_SKIP() << data << " not found";
  }
  auto f = gguf_file::open((shared / "models" / "tiny-q8_0.gguf").string());
  ASSERT_TRUE(f) << f.err().message;
  auto v = load_vocab(*f);
  ASSERT_TRUE(v) << v.err().message;
  auto tok = tokenizer::create(std::move(*v));
  ASSERT_TRUE(tok) << tok.err().message;
  const auto trie = token_trie::build(*tok);
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(data)) {
    if (e.path().extension() == ".json") {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_GT(files.size(), 1000u);
  int compiled = 0, refused = 0, tests = 0;
  for (size_t i = 0; i < files.size(); i += 4) {
    auto r = run_maskbench(files[i], *tok, trie, schema_options{});
    ASSERT_TRUE(r) << r.err().message;
    if (!r->compiled) {
      ++refused;
      EXPECT_FALSE(r->why.keyword.empty()) << files[i] << ": " << r->why.message;
      EXPECT_FALSE(r->why.pointer.empty()) << files[i];
      continue;
    }
    ++compiled;
    tests += r->n_tests;
    EXPECT_EQ(r->validation_errors, 0) << files[i] << "\n" << (r->notes.empty() ? "" : r->notes[0]);
    EXPECT_EQ(r->invalidation_errors, 0) << files[i] << "\n" << (r->notes.empty() ? "" : r->notes[0]);
    for (const auto& n : r->notes) {
      EXPECT_EQ(n.find("matcher bug"), std::string::npos) << files[i] << ": " << n;
    }
  }
  // the sample's pass rate, far above a refuse-everything grammar
  EXPECT_GT(compiled, 4 * refused) << compiled << " compiled, " << refused << " refused";
  EXPECT_GT(tests, 1000);
}

}  // namespace
}  // namespace baton::grammar
