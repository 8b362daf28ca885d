// `baton plan` end to end: a topology file with two "auto" stages planned on a small
// model (table and JSON), --write giving a file that plans the same, --model and --np
// overriding the file, and bad input exiting 2 with "baton: file:line: ...". Hostile
// files too: a FIFO or a directory as the model or the topology (exit 2 at once, never a
// hang), numbers past int32 and byte sizes past the host, and `baton info` on a model
// whose strings and path are not UTF-8.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/model/model_builder.hpp"
#include "tests/fixture_model.hpp"
#include "tests/test_util.hpp"

namespace baton {
namespace {

using test::run_result;
using test::slurp;

run_result baton(const std::string& args) {
  return test::run_shell(std::string(BATON_BINARY) + " " + args);
}

/// `baton args` killed after 20 s: a command that would block shows as status 124.
run_result baton_within_20s(const std::string& args) {
  return test::run_shell("timeout -s KILL 20 " + std::string(BATON_BINARY) + " " + args);
}

/// A 4-layer model file beside the topology files, and the folder they live in.
std::filesystem::path fixture_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = test::temp_dir("plan-cli-fixture");
    auto w = build_model(test::fixture_options(), nullptr);
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

TEST(plan_cli, against_the_running_topology_says_what_a_reshard_moves_and_shows_standby) {
  const auto old_t = write_file("old.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"0-1\"\n"
                                            "[[stage]]\nrank = 1\nlayers = \"2-3\"\n");
  const auto new_t = write_file("new.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"0\"\n"
                                            "[[stage]]\nrank = 1\nlayers = \"1-2\"\n"
                                            "[[stage]]\nrank = 2\nlayers = \"3\"\n");
  auto r = baton("plan --json --topology " + new_t + " --against " + old_t + " --world 4");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["standby_ranks"], nlohmann::json::array({3}));
  const auto& mv = doc["reshard_moves"];
  ASSERT_EQ(mv.size(), 4u);
  EXPECT_EQ(mv[0]["gained"], nlohmann::json::array());
  EXPECT_EQ(mv[0]["lost"], nlohmann::json::array({"1-1 on cpu"}));
  EXPECT_EQ(mv[1]["gained"], nlohmann::json::array({"1-1 on cpu"}));
  EXPECT_EQ(mv[1]["lost"], nlohmann::json::array({"3-3 on cpu"}));
  EXPECT_EQ(mv[2]["gained"], nlohmann::json::array({"3-3 on cpu"}));
  EXPECT_EQ(mv[3]["standby"], true);
  EXPECT_EQ(mv[0]["weight_bytes_to_load"], 0);
  // rank 2 loads layer 3 and, running the last stage now, the output norm and head: more
  // than rank 1, which loads one layer only
  EXPECT_GT(mv[2]["weight_bytes_to_load"].get<uint64_t>(),
            mv[1]["weight_bytes_to_load"].get<uint64_t>());
  EXPECT_GT(mv[1]["weight_bytes_to_load"].get<uint64_t>(), 0u);
  // one layer's KV at the new plan's capacity each
  const uint64_t capacity = doc["capacity_tokens"].get<uint64_t>();
  EXPECT_EQ(mv[1]["kv_bytes_in_at_capacity"].get<uint64_t>(), capacity * 1024 / 4);
  EXPECT_EQ(mv[2]["kv_bytes_in_at_capacity"], mv[1]["kv_bytes_in_at_capacity"]);
  auto text = baton("plan --topology " + new_t + " --against " + old_t + " --world 4");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("standby ranks (no stage; they can take stages in a reshard): 3"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("rank 2: gains 3-3 on cpu; loses nothing"), std::string::npos)
      << text.out;
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
  EXPECT_NE(missing.err.find("absent.toml: cannot open the topology file: No such file or directory"), std::string::npos) << missing.err;
}

TEST(plan_cli, a_fifo_or_a_folder_is_refused_at_once_never_read) {
  const auto dir = fixture_dir();
  const auto fifo_model = (dir / "model.fifo").string();
  const auto fifo_topology = (dir / "topology.fifo").string();
  for (const auto& f : {fifo_model, fifo_topology}) {
    std::filesystem::remove(f);
    ASSERT_EQ(::mkfifo(f.c_str(), 0600), 0) << f << ": " << std::strerror(errno);
  }
  // no writer ever opens the FIFOs: reading one would block until the timeout kills it
  const auto t = write_file("fifo-model.toml",
                            "model = \"model.fifo\"\n[[stage]]\nlayers = \"auto\"\n");
  auto model = baton_within_20s("plan --topology " + t);
  EXPECT_EQ(model.status, 2) << model.err;
  EXPECT_NE(model.err.find("baton: " + fifo_model + ": not a regular file (a FIFO)"),
            std::string::npos)
      << model.err;

  auto topology = baton_within_20s("plan --topology " + fifo_topology);
  EXPECT_EQ(topology.status, 2) << topology.err;
  EXPECT_NE(topology.err.find("baton: " + fifo_topology + ": not a regular file (a FIFO)"),
            std::string::npos)
      << topology.err;

  auto info = baton_within_20s("info " + fifo_model);
  EXPECT_EQ(info.status, 2) << info.err;
  EXPECT_NE(info.err.find(fifo_model + ": not a regular file (a FIFO)"), std::string::npos)
      << info.err;

  auto folder = baton_within_20s("plan --topology " + dir.string());
  EXPECT_EQ(folder.status, 2) << folder.err;
  EXPECT_NE(folder.err.find(dir.string() + ": not a regular file (a directory)"),
            std::string::npos)
      << folder.err;
}

TEST(plan_cli, numbers_past_int32_and_sizes_past_the_host_are_named) {
  // the world is the highest rank + 1 when --np is not given: it must not wrap to 0
  const auto rank = write_file("rank.toml", "model = \"small.gguf\"\n[[stage]]\n"
                                            "rank = 2147483647\nlayers = \"auto\"\n");
  auto r = baton("plan --topology " + rank);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(rank + ":3: stage 0 field 'rank': 2147483647 is out of range (expected "
                              "an MPI rank, 0 to 1048575)"),
            std::string::npos)
      << r.err;
  const auto far = write_file("far.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"0-1\"\n"
                                          "[[stage]]\nrank = 1048575\nlayers = \"2-3\"\n");
  auto np = baton("plan --topology " + far + " --np 2");
  EXPECT_EQ(np.status, 2);
  EXPECT_NE(np.err.find(far + ":5: stage 1 rank 1048575: the MPI world has 2 ranks (0-1)"),
            std::string::npos)
      << np.err;
  auto huge_np = baton("plan --topology " + far + " --np 2000000");
  EXPECT_EQ(huge_np.status, 2);
  EXPECT_NE(huge_np.err.find("--np (2000000) must be 1 to 1048576"), std::string::npos)
      << huge_np.err;

  // 2^63 - 1 bytes of KV on this host: named with both numbers, not planned
  const auto kv = write_file("kv.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"auto\"\n"
                                        "kv_cache_memory = 9223372036854775807\n");
  auto big = baton("plan --topology " + kv);
  EXPECT_EQ(big.status, 2);
  EXPECT_NE(big.err.find(kv + ":4: stage 0 field 'kv_cache_memory': 8589934592.00 GiB "
                              "(9223372036854775807 bytes) is more than the memory of cpu on "
                              "rank 0: "),
            std::string::npos)
      << big.err;
  const auto expo = write_file("expo.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"auto\"\n"
                                            "kv_cache_memory = \"1e3GiB\"\n");
  auto e = baton("plan --topology " + expo);
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.err.find(expo + ":4: stage 0 field 'kv_cache_memory': '1e3GiB': unknown unit"),
            std::string::npos)
      << e.err;
}

TEST(plan_cli, info_replaces_invalid_utf8_instead_of_aborting) {
  vocab_spec v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  for (int i = 0; i < 64; ++i) {
    v.tokens.push_back("t" + std::to_string(i));
    v.token_types.push_back(1);
  }
  v.tokens[1] = "\xff\xfe";  // eos: not UTF-8
  v.bos_id = 0;
  v.eos_id = 1;
  build_options o;  // the smallest model: only its name and vocabulary matter here
  o.shape.n_vocab = 64;
  o.shape.n_embd = 32;
  o.shape.n_ff = 32;
  o.shape.n_layer = 1;
  o.shape.n_head = 2;
  o.shape.n_head_kv = 1;
  o.shape.name = "bad \xc3\x28 name";  // an invalid two-byte sequence
  auto w = build_model(o, &v);
  ASSERT_TRUE(w.ok()) << w.err().message;
  const auto path = (test::temp_dir("info-utf8") / "m\xff.gguf").string();  // path too
  ASSERT_TRUE(w->write(path).ok());

  auto j = baton("info --json '" + path + "'");
  ASSERT_EQ(j.status, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);  // valid JSON, so valid UTF-8
  EXPECT_EQ(doc["name"], "bad \xef\xbf\xbd( name");  // U+FFFD for the bad byte
  EXPECT_EQ(doc["vocab"]["eos"], "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_NE(doc["file"].get<std::string>().find("m\xef\xbf\xbd.gguf"), std::string::npos);

  auto text = baton("info '" + path + "'");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("name bad \xef\xbf\xbd( name"), std::string::npos) << text.out;
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(plan_cli, calibrate_writes_a_profile_whose_speeds_fit_its_own_steps) {
  const auto out = fixture_dir() / "cpu.json";
  auto r = baton("bench calibrate -q -t 1 -r 2 -m " + (fixture_dir() / "small.gguf").string() +
                 " -o " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("worst fit error"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(slurp(out), nullptr, false);
  ASSERT_TRUE(j.is_object()) << slurp(out);
  for (const char* key : {"weight_bytes_per_s", "flops_per_s", "kv_bytes_per_s"}) {
    EXPECT_GT(j.value(key, 0.0), 0.0) << key;
  }
  EXPECT_GE(j.value("fixed_s", -1.0), 0.0);
  ASSERT_TRUE(j["runs"].is_array());
  EXPECT_EQ(j["runs"].size(), 8u * 3u);  // 8 step shapes at 3 depths
  for (const auto& run : j["runs"]) {
    EXPECT_GT(run.value("seconds", 0.0), 0.0);
    EXPECT_GT(run.value("predicted_s", 0.0), 0.0);
  }
  // and a file that is not a profile is refused by name (read_profile)
  auto bad = baton("bench calibrate -q -o /nonexistent/dir/p.json -m " +
                   (fixture_dir() / "small.gguf").string());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("/nonexistent/dir/p.json"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(plan_cli, simulate_predicts_each_stream_count_from_a_profile_and_needs_one) {
  const auto t = write_file("sim.toml", "model = \"small.gguf\"\n[[stage]]\nlayers = \"0-1\"\n"
                                        "[[stage]]\nrank = 1\nlayers = \"2-3\"\n");
  const auto profile = write_file(
      "sim-profile.json",
      R"({"device": "cpu", "fixed_s": 0.001, "weight_bytes_per_s": 1e10, "flops_per_s": 1e11,)"
      R"( "kv_bytes_per_s": 1e10, "link": {"latency_s": 0.0001, "bytes_per_s": 1e9}})");
  auto r = baton("plan --topology " + t + " --simulate --profile " + profile +
                 " --streams 1,8 -p 16 -n 8 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  ASSERT_EQ(j["simulated"].size(), 2u);
  const auto& one = j["simulated"][0];
  const auto& eight = j["simulated"][1];
  EXPECT_EQ(one["streams"], 1);
  EXPECT_GT(one["output_tokens_per_s"].get<double>(), 0.0);
  EXPECT_EQ(one["stage_busy"].size(), 2u);
  // eight streams share the steps: more tokens a second, each later
  EXPECT_GT(eight["output_tokens_per_s"].get<double>(), one["output_tokens_per_s"].get<double>());
  EXPECT_GE(eight["ttft_mean_s"].get<double>(), one["ttft_mean_s"].get<double>());
  EXPECT_EQ(j["micro_batches"], 4);
  // the table names its assumptions
  auto table = baton("plan --topology " + t + " --simulate --profile " + profile);
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_NE(table.out.find("control free (no 'control' in the profile)"), std::string::npos)
      << table.out;
  // no profile, a broken one, bad stream counts: refused by name
  auto none = baton("plan --topology " + t + " --simulate");
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.err.find("--profile"), std::string::npos) << none.err;
  const auto broken = write_file("broken.json", R"({"fixed_s": "fast"})");
  auto bad = baton("plan --topology " + t + " --simulate --profile " + broken);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("'fixed_s'"), std::string::npos) << bad.err;
  auto streams = baton("plan --topology " + t + " --simulate --profile " + profile +
                       " --streams 1,x");
  EXPECT_NE(streams.status, 0);
  EXPECT_NE(streams.err.find("--streams"), std::string::npos) << streams.err;
}

}  // namespace
}  // namespace baton
