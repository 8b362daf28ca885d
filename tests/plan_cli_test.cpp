// `baton plan` end to end: a topology file with two "auto" stages planned on a small
// model (table and JSON), --write giving a file that plans the same, --model and --np
// overriding the file, and bad input exiting 2 with "baton: file:line: ...".
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/model_builder.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

using test::run_result;
using test::slurp;

run_result baton(const std::string& args) {
  return test::run_shell(std::string(BATON_BINARY) + " " + args);
}

/// A 4-layer model file beside the topology files, and the folder they live in.
std::filesystem::path fixture_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = test::temp_dir("plan-cli-fixture");
    build_options o;
    o.shape.n_vocab = 320;
    o.shape.n_embd = 128;
    o.shape.n_ff = 192;
    o.shape.n_layer = 4;
    o.shape.n_head = 4;
    o.shape.n_head_kv = 2;
    auto w = build_model(o, nullptr);
    BATON_ASSERT(w.ok());
    BATON_ASSERT(w->write((d / "small.gguf").string()).ok());
    return d;
  }();
  return dir;
}

std::string write_file(const std::string& name, const std::string& text) {
  const auto p = fixture_dir() / name;
  std::ofstream(p) << text;
  return p.string();
}

TEST(plan_cli, plans_two_auto_stages) {
  const auto t = write_file("two.toml",
                            "model = \"small.gguf\"\n[pipeline]\nmax_num_seqs = 4\n"
                            "[[stage]]\nlayers = \"auto\"\n[[stage]]\nlayers = \"auto\"\n");
  auto r = baton("plan --topology " + t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("pipeline capacity:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory_utilization 0.45 of"), std::string::npos) << r.out;

  auto j = baton("plan --json --topology " + t);
  ASSERT_EQ(j.status, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  ASSERT_EQ(doc["stages"].size(), 2u);
  EXPECT_EQ(doc["stages"][0]["first_layer"], 0);
  EXPECT_EQ(doc["stages"][0]["auto"], true);
  EXPECT_EQ(doc["world_size"], 1);
  EXPECT_EQ(doc["pipeline"]["micro_batches"], 4);  // two per stage
  int64_t layers = 0;
  int64_t capacity = std::numeric_limits<int64_t>::max();
  for (const auto& s : doc["stages"]) {
    layers += s["n_layers"].get<int64_t>();
    capacity = std::min(capacity, s["kv_capacity_tokens"].get<int64_t>());
    EXPECT_GT(s["kv_bytes"].get<uint64_t>(), 0u);
  }
  EXPECT_EQ(layers, 4);
  EXPECT_EQ(doc["capacity_tokens"].get<int64_t>(), capacity);

  // the resolved file (written elsewhere) plans the same
  const auto resolved = (test::temp_dir("plan-cli-out") / "resolved.toml").string();
  auto w = baton("plan --json --topology " + t + " --write " + resolved);
  ASSERT_EQ(w.status, 0) << w.err;
  const std::string text = slurp(resolved);
  EXPECT_EQ(text.find("auto"), std::string::npos) << text;
  auto again = baton("plan --json --topology " + resolved);
  ASSERT_EQ(again.status, 0) << again.err;
  const auto doc2 = nlohmann::json::parse(again.out);
  for (size_t i = 0; i < 2; ++i) {
    for (const char* k : {"layers", "weight_bytes", "budget_bytes", "kv_bytes", "n_blocks"}) {
      EXPECT_EQ(doc2["stages"][i][k], doc["stages"][i][k]) << k;
    }
  }
}

TEST(plan_cli, model_and_world_from_flags) {
  const auto t = write_file("nomodel.toml", "[[stage]]\nlayers = \"0-1\"\n[[stage]]\nrank = 1\n"
                                            "layers = \"2-3\"\n");
  auto none = baton("plan --topology " + t);
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("baton: " + t + ": no model"), std::string::npos) << none.err;
  const auto m = (fixture_dir() / "small.gguf").string();
  auto ok = baton("plan --json --topology " + t + " --model " + m);
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["world_size"], 2);
  auto small_world = baton("plan --topology " + t + " --model " + m + " --np 1");
  EXPECT_EQ(small_world.status, 2);
  EXPECT_NE(small_world.err.find(t + ":4: stage 1 rank 1: the MPI world has 1 rank (0-0)"),
            std::string::npos)
      << small_world.err;
}

TEST(plan_cli, bad_input_exits_2_with_file_and_line) {
  const auto typo = write_file("typo.toml", "model = \"small.gguf\"\n[[stage]]\nlayer = \"auto\"\n");
  auto r = baton("plan --topology " + typo);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("baton: " + typo + ":3: unknown key 'layer' in [[stage]] 0"),
            std::string::npos)
      << r.err;
  const auto gpu = write_file("gpu.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"auto\"\n"
                                          "device = \"cuda:99\"\n");
  auto g = baton("plan --topology " + gpu);
  EXPECT_EQ(g.status, 2);
  EXPECT_NE(g.err.find(gpu + ":4: stage 0 device 'cuda:99' (rank 0): no such device"),
            std::string::npos)
      << g.err;
  auto missing = baton("plan --topology " + (fixture_dir() / "absent.toml").string());
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("cannot read the topology file"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace baton
