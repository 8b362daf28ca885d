// Structured output end to end, checked by validators that are not baton's: `baton serve`
// on the demo model (random weights: the content is random, only its shape is held)
// answers 200 chat requests, each constrained by a different MaskBench JSON Schema from
// ../shared/jsonschema/data (strict:true, temperature 1), and every reply must parse and
// validate with npm ajv (where the grammar's formats are documented to be looser than
// ajv's, a reply that differs only so is printed as a known difference); under mpirun
// -np 2, the official OpenAI JS client's zodResponseFormat helper and
// beta.chat.completions.parse get an object zod accepts, and tool_choice "required" gets
// a call to one of the tools whose arguments ajv accepts. The client side is
// tests/structured_output_e2e.mjs; scripts/setup.sh installs its npm packages.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/grammar/json_schema.hpp"
#include "tests/serve_util.hpp"

namespace baton {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int k_n_schemas = 200;
constexpr int k_concurrency = 8;
/// Every reply's budget; a schema whose shortest document needs more is left out (the
/// server would refuse it with a 400 naming both numbers). Random weights never end a
/// free string by themselves, so nearly every reply runs to the budget and the grammar
/// closes the document in its last tokens, which this exercises on nearly every schema.
/// Measured on two cores shared with another job: 64 takes about 60 s for the 200 replies
/// (96: 110 s), keeping the file under three minutes.
constexpr int k_max_tokens = 64;

const char* const k_script = BATON_SOURCE_DIR "/tests/structured_output_e2e.mjs";

/// The npm folder of scripts/setup.sh when node and every package the script imports are
/// there.
std::optional<fs::path> npm_folder() {
  auto modules = openai_js();
  if (!modules) {
    return std::nullopt;
  }
  for (const char* p : {"ajv", "ajv-formats", "ajv-draft-04", "zod"}) {
    if (!fs::exists(*modules / p / "package.json")) {
      return std::nullopt;
    }
  }
  return modules->parent_path();
}

/// Binds `var` to the npm folder, or skips (fails in CI) when setup has not filled it.
#define REQUIRE_NPM(var)                                                                     \
  auto var##_opt = npm_folder();                                                             \
  if (!var##_opt) {                                                                          \
    if (test::in_ci()) {                                                                     \
      FAIL() << "CI=true but node or the npm packages openai, ajv, ajv-formats, "           \
                "ajv-draft-04, zod are missing (scripts/setup.sh installs them)";            \
    }                                                                                        \
    GTEST_SKIP() << "node or the npm packages openai, ajv, ajv-formats, ajv-draft-04, zod "  \
                    "are missing (scripts/setup.sh installs them)";                          \
  }                                                                                          \
  const fs::path var = *var##_opt

#define REQUIRE_FIXTURE() ASSERT_TRUE(fx().error.empty()) << fx().error

/// One compute thread: masks, not matmuls, bound the demo model's constrained decoding,
/// and on a two-core machine shared with other jobs two threads waiting on each other ran
/// this file's 200 replies half as fast as one.
const std::string k_one_thread = "-t 1 ";

const std::string k_mpirun2 =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 ";

/// What the script printed: its {"fail"} lines (each one a failed check, shown whole),
/// {"note"} lines printed, and its summary.
json read_script_output(const test::run_result& r) {
  json summary;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') {
      continue;
    }
    const json j = json::parse(line, nullptr, false);
    if (j.contains("fail")) {
      ADD_FAILURE() << j.dump(1);
    } else if (j.contains("note")) {
      std::printf("%s\n", j.dump().c_str());
    } else if (j.contains("summary")) {
      summary = j["summary"];
    }
  }
  return summary;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct candidate_set {
  json schemas = json::array();  ///< [{file, schema}], in file name order
  int n_files = 0;
  int n_refused = 0;   ///< by the grammar in strict mode
  int n_too_long = 0;  ///< shortest document longer than k_max_tokens
};

/// The files of `data` (sorted by name) whose schema compiles with the grammar in strict
/// mode and whose shortest document fits k_max_tokens.
candidate_set grammar_candidates(const fs::path& data) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(data)) {
    if (e.path().extension() == ".json") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  candidate_set out;
  out.n_files = static_cast<int>(files.size());
  grammar::schema_options so;
  so.strict = true;
  for (const auto& f : files) {
    const json doc = json::parse(test::slurp(f), nullptr, false);
    if (doc.is_discarded() || !doc.contains("schema")) {
      ADD_FAILURE() << f << " is not a MaskBench file ({\"schema\", \"tests\"})";
      continue;
    }
    auto g = grammar::compile_json_schema(doc["schema"].dump(), so);
    if (!g) {
      ++out.n_refused;
    } else if ((*g)->min_value_bytes((*g)->root) > k_max_tokens) {
      ++out.n_too_long;
    } else {
      out.schemas.push_back({{"file", f.filename().string()}, {"schema", doc["schema"]}});
    }
  }
  return out;
}

// The smallest case of the MaskBench run's commonest failure: a required property not
// written yet, where other keys are allowed too. With the budget nearly spent, a key
// begun as the required name ("a...") must not go on into another name that leaves no
// room for the required one; the reply must end as a whole document.
TEST(structured_output, a_required_key_after_free_keys_still_fits_the_budget) {
  REQUIRE_FIXTURE();
  server_process s(k_one_thread + "--max-num-seqs 8");
  ASSERT_GT(s.port(), 0) << s.log();
  const json schema = json::parse(
      R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})");
  std::vector<http_result> replies(8);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < replies.size(); ++i) {
    clients.emplace_back([&, i] {
      const json body = {
          {"messages", {{{"role", "user"}, {"content", "Reply with one JSON document."}}}},
          {"max_tokens", 64},
          {"temperature", 1},
          {"seed", i + 1},
          {"response_format",
           {{"type", "json_schema"},
            {"json_schema", {{"name", "a"}, {"schema", schema}, {"strict", true}}}}}};
      replies[i] = curl(s, "/v1/chat/completions", body.dump());
    });
  }
  for (auto& c : clients) {
    c.join();
  }
  for (size_t i = 0; i < replies.size(); ++i) {
    ASSERT_EQ(replies[i].status, 200) << replies[i].body;
    const json choice = json::parse(replies[i].body)["choices"][0];
    const std::string content = choice["message"]["content"];
    const json doc = json::parse(content, nullptr, false);
    EXPECT_TRUE(doc.is_object() && doc.contains("a") && doc["a"].is_number_integer())
        << "seed " << i + 1 << ", finish_reason " << choice["finish_reason"] << ": "
        << json(content).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

TEST(structured_output, two_hundred_maskbench_schemas_validate_with_ajv) {
  BATON_REQUIRE_SHARED(shared);
  const fs::path data = shared / "jsonschema" / "data";
  if (!fs::is_directory(data)) {
    if (test::in_ci()) {
      FAIL() << "CI=true but " << data << " is missing";
    }
    GTEST_SKIP() << data << " not found (../shared/jsonschema/data: MaskBench's schemas)";
  }
  REQUIRE_NPM(npm);
  REQUIRE_FIXTURE();
  const auto t0 = std::chrono::steady_clock::now();
  const candidate_set c = grammar_candidates(data);
  std::printf("%d schema files: %d refused by the grammar in strict mode, %d need more than "
              "%d tokens, %zu candidates (%.1f s)\n",
              c.n_files, c.n_refused, c.n_too_long, k_max_tokens, c.schemas.size(),
              seconds_since(t0));
  ASSERT_GE(static_cast<int>(c.schemas.size()), k_n_schemas);
  const auto file = dir() / "candidates.json";
  std::ofstream(file) << c.schemas.dump();

  server_process s(k_one_thread + "--served-model-name demo --max-num-seqs " +
                   std::to_string(k_concurrency));
  ASSERT_GT(s.port(), 0) << s.log();
  const auto t1 = std::chrono::steady_clock::now();
  auto r = shell("node " + std::string(k_script) + " schemas " + npm.string() + " " + s.url() +
                 " " + file.string() + " " + std::to_string(k_n_schemas) + " " +
                 std::to_string(k_concurrency) + " " + std::to_string(k_max_tokens));
  ASSERT_EQ(r.status, 0) << r.err << "\n" << r.out.substr(0, 4000);
  const json sum = read_script_output(r);
  ASSERT_TRUE(sum.is_object()) << r.out.substr(0, 4000);
  std::printf("%d of %d replies validated with ajv (%d invalid, %d HTTP errors); ajv could not "
              "compile %d candidates; drafts %s; finish reasons %s; %d tokens in %.1f s\n",
              sum["valid"].get<int>(), sum["sent"].get<int>(), sum["invalid"].get<int>(),
              sum["http_errors"].get<int>(), sum["ajv_refused"].get<int>(),
              sum["drafts"].dump().c_str(), sum["finish"].dump().c_str(),
              sum["tokens"].get<int>(), seconds_since(t1));
  std::printf("formats in the schemas sent (uses): %s\n", sum["formats"].dump().c_str());
  std::printf("known differences between the grammar's formats and ajv's: %d; slowest replies "
              "%s\n", sum["known_differences"].get<int>(), sum["slowest"].dump().c_str());
  EXPECT_EQ(sum["sent"], k_n_schemas);
  EXPECT_EQ(sum["valid"].get<int>() + sum["known_differences"].get<int>(), k_n_schemas);
  EXPECT_EQ(sum["invalid"], 0);
  EXPECT_EQ(s.stop(), 0) << s.log();
}

TEST(structured_output, the_openai_zod_helper_parses_under_mpirun) {
  REQUIRE_NPM(npm);
  if (!have_mpirun()) {
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
  }
  REQUIRE_FIXTURE();
  server_process s("--served-model-name demo", k_mpirun2);
  ASSERT_GT(s.port(), 0) << s.log();
  EXPECT_NE(s.log().find("2 rank(s)"), std::string::npos) << s.log();
  auto r = shell("node " + std::string(k_script) + " zod " + npm.string() + " " + s.url());
  ASSERT_EQ(r.status, 0) << r.err << "\n" << r.out;
  const json sum = read_script_output(r);
  ASSERT_TRUE(sum.is_object()) << r.out;
  std::printf("sent %s\nparsed %s\n", sum["sent_schema"].dump().c_str(),
              sum["parsed"].dump().c_str());
  EXPECT_EQ(sum["sent_schema"]["strict"], true);
  EXPECT_EQ(sum["parsed"].size(), 3u);
  for (const auto& p : sum["parsed"]) {
    EXPECT_EQ(p["finish_reason"], "stop") << p.dump();
    EXPECT_TRUE(p["parsed"].is_object()) << p.dump();
  }
}

TEST(structured_output, tool_choice_required_calls_a_tool_under_mpirun) {
  REQUIRE_NPM(npm);
  if (!have_mpirun()) {
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
  }
  REQUIRE_FIXTURE();
  server_process s("--served-model-name demo", k_mpirun2);
  ASSERT_GT(s.port(), 0) << s.log();
  EXPECT_NE(s.log().find("2 rank(s)"), std::string::npos) << s.log();
  auto r = shell("node " + std::string(k_script) + " tools " + npm.string() + " " + s.url());
  ASSERT_EQ(r.status, 0) << r.err << "\n" << r.out;
  const json sum = read_script_output(r);
  ASSERT_TRUE(sum.is_object()) << r.out;
  std::printf("calls %s\n", sum["calls"].dump().c_str());
  EXPECT_EQ(sum["calls"].size(), 3u);
}

}  // namespace
}  // namespace baton
