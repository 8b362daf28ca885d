// topology/topology_file: reading topology files (every key; every bad file names
// file:line and the field), planning them against fixture models and fake devices
// (layers, ranks, NCCL's rule, budgets), "auto" placement (the Llama-3.2-1B Q4_0 shape
// splits 11/5; a small budget hands layers on), the round trip through to_toml, and
// default_topology.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "runtime/system/budget.hpp"
#include "runtime/model/model_builder.hpp"
#include "tests/fixture_model.hpp"
#include "tests/test_util.hpp"
#include "topology/planner.hpp"
#include "topology/topology_file.hpp"

namespace baton {
namespace {

constexpr uint64_t GiB = 1024ull * 1024 * 1024;
constexpr uint64_t MiB = 1024ull * 1024;

/// The fixture model in memory (tests/fixture_model.hpp: 4 layers, n_embd 128, 4 heads, 2 KV
/// heads, vocab 320, context 2048).
std::shared_ptr<const model> small_model() {
  static std::shared_ptr<const model> m = test::open_model(test::fixture_options());
  return m;
}

/// Llama-3.2-1B's shape as llama-quantize's Q4_0 writes it (2-D weights Q4_0, the tied
/// token_embd Q6_K), written sparse: 770 MB that take no disk and no time.
std::shared_ptr<const model> llama32_1b_q4_0() {
  static std::shared_ptr<const model> m = [] {
    const model_shape s = *preset_shape("llama3.2-1b");
    const int64_t head_dim = s.n_embd / s.n_head;
    const int64_t n_kv = s.n_head_kv * head_dim;
    gguf_writer w;
    w.set("general.architecture", "llama");
    w.set("llama.block_count", static_cast<uint32_t>(s.n_layer));
    w.set("llama.context_length", static_cast<uint32_t>(s.n_ctx_train));
    w.set("llama.embedding_length", static_cast<uint32_t>(s.n_embd));
    w.set("llama.feed_forward_length", static_cast<uint32_t>(s.n_ff));
    w.set("llama.attention.head_count", static_cast<uint32_t>(s.n_head));
    w.set("llama.attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
    w.set("llama.rope.freq_base", s.rope_freq_base);
    w.set("llama.attention.layer_norm_rms_epsilon", s.rms_norm_eps);
    w.set("llama.vocab_size", static_cast<uint32_t>(s.n_vocab));
    const auto q = ggml_type::q4_0;
    const auto f32 = ggml_type::f32;
    w.add_tensor("output_norm.weight", f32, {s.n_embd});
    w.add_tensor("rope_freqs.weight", f32, {head_dim / 2});
    w.add_tensor("token_embd.weight", ggml_type::q6_k, {s.n_embd, s.n_vocab});
    for (int64_t il = 0; il < s.n_layer; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      w.add_tensor(b + "attn_k.weight", q, {s.n_embd, n_kv});
      w.add_tensor(b + "attn_norm.weight", f32, {s.n_embd});
      w.add_tensor(b + "attn_output.weight", q, {s.n_embd, s.n_embd});
      w.add_tensor(b + "attn_q.weight", q, {s.n_embd, s.n_embd});
      w.add_tensor(b + "attn_v.weight", q, {s.n_embd, n_kv});
      w.add_tensor(b + "ffn_down.weight", q, {s.n_ff, s.n_embd});
      w.add_tensor(b + "ffn_gate.weight", q, {s.n_embd, s.n_ff});
      w.add_tensor(b + "ffn_norm.weight", f32, {s.n_embd});
      w.add_tensor(b + "ffn_up.weight", q, {s.n_embd, s.n_ff});
    }
    const auto path = test::temp_dir("topology") / "llama3.2-1b-shape-q4_0.gguf";
    BATON_ASSERT(w.write(path.string()).ok());
    auto r = model::open(path.string());
    BATON_ASSERT(r.ok());
    std::filesystem::remove(path);  // the mapping keeps it
    return *r;
  }();
  return m;
}

/// Devices of a made-up host: cpu with `cpu_bytes` and 4 threads, cuda:0 and cuda:1
/// with 16 GiB each (or `gpu_bytes`), nothing else.
placement_env fake_env(int32_t world, uint64_t cpu_bytes = 8 * GiB, uint64_t gpu_bytes = 16 * GiB,
                       std::vector<std::string> hosts = {}) {
  placement_env env;
  env.world_size = world;
  env.rank_hosts = std::move(hosts);
  env.query_device = [=](int32_t, const std::string& d) {
    device_info i;
    if (d == "cpu") {
      i = {true, cpu_bytes, "fake RAM", 4};
    } else if (d == "cuda:0" || d == "cuda:1") {
      i = {true, gpu_bytes, "fake GPU", 1};
    } else {
      i.source = "the fake host has 2 CUDA devices";
    }
    return i;
  };
  return env;
}

topology parse_ok(const std::string& text) {
  auto t = parse_topology_text(text, "cluster.toml");
  EXPECT_TRUE(t) << t.err().message;
  return t ? *t : topology{};
}

// -- parsing --------------------------------------------------------------------------

TEST(topology_file, parses_every_key) {
  auto t = parse_ok(R"(model = "tiny.gguf"   # a comment
[pipeline]
micro_batches = 3
max_num_seqs = 64
max_num_batched_tokens = 512
block_size = 32
max_model_len = 1024
kv_cache_dtype = "f32"

[[stage]]
rank = 0
device = "cpu"
layers = "0-1"
memory_utilization = 0.45
threads = 2

[[stage]]
rank = 1
device = "cuda:1"
layers = "2"
kv_cache_memory = "1.5GiB"

[[stage]]
rank = 1
device = "cuda:1"
layers = "auto"
kv_cache_memory = 1000000
)");
  EXPECT_EQ(t.path, "cluster.toml");
  EXPECT_EQ(t.model, "tiny.gguf");
  EXPECT_EQ(t.model_line, 1);
  EXPECT_EQ(t.pipeline.micro_batches, 3);
  EXPECT_EQ(t.pipeline.max_num_seqs, 64);
  EXPECT_EQ(t.pipeline.max_num_batched_tokens, 512);
  EXPECT_EQ(t.pipeline.block_size, 32);
  EXPECT_EQ(t.pipeline.max_model_len, 1024);
  EXPECT_EQ(t.pipeline.kv_type, ggml_type::f32);
  EXPECT_EQ(t.pipeline.line, 2);
  ASSERT_EQ(t.stages.size(), 3u);
  const auto& s0 = t.stages[0];
  EXPECT_EQ(s0.rank, 0);
  EXPECT_EQ(s0.device, "cpu");
  EXPECT_EQ(s0.layers.first, 0);
  EXPECT_EQ(s0.layers.last, 2);
  EXPECT_EQ(s0.memory_utilization, 0.45);
  EXPECT_FALSE(s0.kv_cache_memory);
  EXPECT_EQ(s0.threads, 2);
  EXPECT_EQ(s0.line, 10);
  EXPECT_EQ(s0.layers_line, 13);
  const auto& s1 = t.stages[1];
  EXPECT_EQ(s1.rank, 1);
  EXPECT_EQ(s1.device, "cuda:1");
  EXPECT_EQ(s1.layers.first, 2);
  EXPECT_EQ(s1.layers.last, 3);
  EXPECT_EQ(s1.kv_cache_memory, 3 * GiB / 2);
  EXPECT_FALSE(s1.memory_utilization);
  EXPECT_TRUE(t.stages[2].layers.automatic);
  EXPECT_EQ(t.stages[2].kv_cache_memory, 1000000u);
}

TEST(topology_file, defaults) {
  auto t = parse_ok("[[stage]]\nlayers = \"auto\"\n");
  EXPECT_TRUE(t.model.empty());
  EXPECT_EQ(t.pipeline.micro_batches, 0);
  EXPECT_EQ(t.pipeline.max_num_seqs, 256);
  EXPECT_EQ(t.pipeline.max_num_batched_tokens, 2048);
  EXPECT_EQ(t.pipeline.block_size, 16);
  EXPECT_EQ(t.pipeline.max_model_len, 0);
  EXPECT_EQ(t.pipeline.kv_type, ggml_type::f16);
  ASSERT_EQ(t.stages.size(), 1u);
  EXPECT_EQ(t.stages[0].rank, 0);
  EXPECT_EQ(t.stages[0].device, "cpu");
  EXPECT_FALSE(t.stages[0].memory_utilization);
  EXPECT_EQ(t.stages[0].threads, 0);
}

TEST(topology_file, model_path_is_relative_to_the_file) {
  const auto dir = test::temp_dir("topology-path") / "conf";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "cluster.toml") << "model = \"../models/tiny.gguf\"\n[[stage]]\nlayers = \"auto\"\n";
  auto t = parse_topology_file((dir / "cluster.toml").string());
  ASSERT_TRUE(t) << t.err().message;
  EXPECT_EQ(t->model, (dir.parent_path() / "models/tiny.gguf").string());
  std::ofstream(dir / "abs.toml") << "model = \"/m/tiny.gguf\"\n[[stage]]\nlayers = \"auto\"\n";
  auto a = parse_topology_file((dir / "abs.toml").string());
  ASSERT_TRUE(a) << a.err().message;
  EXPECT_EQ(a->model, "/m/tiny.gguf");
  auto missing = parse_topology_file((dir / "nope.toml").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.err().message.find("nope.toml: cannot open the topology file"), std::string::npos);
}

TEST(topology_file, only_small_regular_files_are_read) {
  const auto dir = test::temp_dir("topology-kinds");
  const auto fifo = (dir / "cluster.fifo").string();
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto f = parse_topology_file(fifo);  // no writer: reading it would block forever
  ASSERT_FALSE(f);
  EXPECT_EQ(f.err().message, fifo + ": not a regular file (a FIFO)");

  auto d = parse_topology_file(dir.string());
  ASSERT_FALSE(d);
  EXPECT_EQ(d.err().message, dir.string() + ": not a regular file (a directory)");

  // 17 MiB of nothing (sparse): refused by its size before a byte is read
  const auto big = (dir / "big.toml").string();
  std::ofstream(big) << "";
  std::filesystem::resize_file(big, 17u << 20);
  auto b = parse_topology_file(big);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.err().message, big + ": the topology file is 17825792 bytes, more than the 16777216 "
                                   "a topology file may have");
}

// -- every bad file -------------------------------------------------------------------

struct bad_case {
  const char* name;
  std::string text;
  std::vector<std::string> expect;  ///< substrings of the message
  bool plan = false;                ///< the error comes from plan_pipeline (small_model)
  int32_t world = 2;
  uint64_t cpu_bytes = 8 * GiB;
  std::vector<std::string> hosts = {};
};

const char* const two = "[[stage]]\nlayers = \"0-1\"\n[[stage]]\nlayers = \"2-3\"\n";

std::vector<bad_case> bad_cases() {
  return {
      // -- read: syntax, keys, types, single values --
      {"syntax", "model = \"a\"\nrank = = 1\n", {"cluster.toml:2: TOML syntax error"}},
      {"duplicate key", "model = \"a\"\nmodel = \"b\"\n", {"cluster.toml:2: TOML syntax error", "model"}},
      {"unknown top-level key", "model = \"a\"\nstages = 2\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: unknown key 'stages' at the top level",
        "(expected one of model, pipeline, stage)"}},
      {"unknown pipeline key", "[pipeline]\nmax_num_seqs = 4\nmicro_batch = 2\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:3: unknown key 'micro_batch' in [pipeline]", "micro_batches, max_num_seqs"}},
      {"unknown stage key",
       "model = \"a\"\n\n[[stage]]\nrank = 0\nlayers = \"0-1\"\n[[stage]]\nlayer = \"2-3\"\n",
       {"cluster.toml:7: unknown key 'layer' in [[stage]] 1 (expected one of rank, device, layers, "
        "memory_utilization, kv_cache_memory, threads)"}},
      {"model not a string", "model = 3\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:1: field 'model': expected a string, got integer 3"}},
      {"model empty", "model = \"\"\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:1: field 'model': empty"}},
      {"pipeline not a table", "pipeline = 2\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:1: field 'pipeline': expected a table ([pipeline]), got integer 2"}},
      {"stage not an array of tables", "[stage]\nlayers = \"auto\"\n",
       {"cluster.toml:1: field 'stage': expected an array of tables ([[stage]]), got a table"}},
      {"stage array of numbers", "stage = [1]\n",
       {"cluster.toml:1: field 'stage': expected an array of tables ([[stage]]), got integer 1"}},
      {"no stages", "model = \"a\"\n", {"cluster.toml: no stages", "[[stage]]"}},
      {"empty stage array", "stage = []\n", {"cluster.toml:1: no stages"}},
      {"rank wrong type", "[[stage]]\nrank = \"0\"\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 field 'rank': expected an integer, got string \"0\""}},
      {"rank negative", "[[stage]]\nrank = -1\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 field 'rank': -1 is out of range (expected an MPI rank, 0 to "
        "1048575)"}},
      // integers are checked whole before they are narrowed: nothing wraps
      {"rank past int32", "[[stage]]\nrank = 2147483647\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 field 'rank': 2147483647 is out of range (expected an MPI rank, "
        "0 to 1048575)"}},
      {"rank past int64 wraps nothing", "[[stage]]\nrank = 9223372036854775807\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 field 'rank': 9223372036854775807 is out of range"}},
      {"micro_batches huge", "[pipeline]\nmicro_batches = 4294967297\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'micro_batches': 4294967297 is out of range (expected 0 "
        "to 4096"}},
      {"max_num_seqs huge", "[pipeline]\nmax_num_seqs = 2147483647\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'max_num_seqs': 2147483647 is out of range (expected 1 "
        "to 1048576)"}},
      {"max_num_batched_tokens zero", "[pipeline]\nmax_num_batched_tokens = 0\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'max_num_batched_tokens': 0 is out of range (expected 1 "
        "to 16777216 tokens)"}},
      {"max_model_len past int32", "[pipeline]\nmax_model_len = 4294967296\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'max_model_len': 4294967296 is out of range"}},
      {"threads huge", "[[stage]]\nlayers = \"auto\"\nthreads = 100000\n",
       {"cluster.toml:3: stage 0 field 'threads': 100000 is out of range (expected 0 to 4096"}},
      {"memory_utilization nan", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = nan\n",
       {"cluster.toml:3: stage 0 field 'memory_utilization': nan is out of range"}},
      {"memory_utilization zero", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = 0\n",
       {"cluster.toml:3: stage 0 field 'memory_utilization': 0 is out of range"}},
      // byte sizes are decimal numbers with a unit, nothing float-ish, nothing past 2^64
      {"kv_cache_memory with an exponent", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"1e3GiB\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': '1e3GiB': unknown unit 'E3GIB'"}},
      {"kv_cache_memory inf", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"inf\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': 'inf': expected a size > 0"}},
      {"kv_cache_memory hex", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"0x10\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': '0x10': unknown unit 'X10'"}},
      {"kv_cache_memory past 2^64", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"18446744073709551616\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': '18446744073709551616': "
        "'18446744073709551616' is more than 2^64 - 1 bytes"}},
      {"kv_cache_memory TiB past 2^64", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"16777216TiB\"\n",
       {"is more than 2^64 - 1 bytes"}},
      {"kv_cache_memory under a byte", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"0.1\"\n",
       {"'0.1' is less than one byte"}},
      {"device unknown", "[[stage]]\ndevice = \"gpu0\"\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 field 'device': 'gpu0': expected \"cpu\" or \"cuda:N\""}},
      {"device without index", "[[stage]]\ndevice = \"cuda:\"\nlayers = \"auto\"\n",
       {"stage 0 field 'device': 'cuda:'"}},
      {"device index not a number", "[[stage]]\ndevice = \"cuda:x\"\nlayers = \"auto\"\n",
       {"stage 0 field 'device': 'cuda:x'"}},
      {"layers missing", "[[stage]]\nrank = 0\n",
       {"cluster.toml:1: stage 0 has no 'layers'"}},
      {"layers wrong type", "[[stage]]\nlayers = 3\n",
       {"cluster.toml:2: stage 0 field 'layers': expected a string, got integer 3"}},
      {"layers bad text", "[[stage]]\nlayers = \"0..3\"\n",
       {"cluster.toml:2: stage 0 field 'layers': '0..3': expected \"A-B\""}},
      {"layers reversed", "[[stage]]\nlayers = \"5-2\"\n",
       {"cluster.toml:2: stage 0 field 'layers'", "first layer 5 is after last layer 2"}},
      {"memory_utilization zero", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = 0.0\n",
       {"cluster.toml:3: stage 0 field 'memory_utilization': 0.0 is out of range", "(0, 1]"}},
      {"memory_utilization above one", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = 1.5\n",
       {"cluster.toml:3: stage 0 field 'memory_utilization': 1.5 is out of range"}},
      {"memory_utilization wrong type", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = \"90%\"\n",
       {"cluster.toml:3: stage 0 field 'memory_utilization': expected a number in (0, 1], got "
        "string \"90%\""}},
      {"both budgets",
       "[[stage]]\nlayers = \"auto\"\nmemory_utilization = 0.5\nkv_cache_memory = \"1GiB\"\n",
       {"cluster.toml:4: stage 0 sets both memory_utilization and kv_cache_memory"}},
      {"kv_cache_memory unit", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"2XB\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': '2XB': unknown unit 'XB'"}},
      {"kv_cache_memory not a size", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"lots\"\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': 'lots': expected a size > 0"}},
      {"kv_cache_memory negative", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = -5\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': -5 is out of range (expected bytes > 0)"}},
      {"kv_cache_memory wrong type", "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = 1.5\n",
       {"stage 0 field 'kv_cache_memory': expected bytes", "got float 1.5"}},
      {"threads negative", "[[stage]]\nlayers = \"auto\"\nthreads = -1\n",
       {"cluster.toml:3: stage 0 field 'threads': -1 is out of range"}},
      {"kv_cache_dtype", "[pipeline]\nkv_cache_dtype = \"q8_0\"\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'kv_cache_dtype': 'q8_0': expected \"f16\" or \"f32\""}},
      {"block_size zero", "[pipeline]\nblock_size = 0\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'block_size': 0 is out of range (expected 1 to 65536"}},
      {"max_num_seqs zero", "[pipeline]\nmax_num_seqs = 0\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'max_num_seqs': 0 is out of range (expected 1 to 1048576)"}},
      {"max_num_batched_tokens type", "[pipeline]\nmax_num_batched_tokens = 2.5\n[[stage]]\nlayers = \"auto\"\n",
       {"[pipeline] field 'max_num_batched_tokens': expected an integer, got float 2.5"}},
      {"micro_batches negative", "[pipeline]\nmicro_batches = -1\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:2: [pipeline] field 'micro_batches': -1 is out of range"}},
      {"max_model_len negative", "[pipeline]\nmax_model_len = -1\n[[stage]]\nlayers = \"auto\"\n",
       {"[pipeline] field 'max_model_len': -1 is out of range"}},

      // -- plan: layers against the model (4 layers) --
      {"layers overlap", "[[stage]]\nlayers = \"0-2\"\n[[stage]]\nlayers = \"2-3\"\n",
       {"cluster.toml:4: stage 1 field 'layers': '2-3' overlaps stage 0's '0-2' (layer 2 would "
        "run twice)"},
       true},
      {"layers out of order", "[[stage]]\nlayers = \"2-3\"\n[[stage]]\nlayers = \"0-1\"\n",
       {"cluster.toml:4: stage 1 field 'layers': '0-1' is not in stage order: it comes before "
        "stage 0's '2-3'"},
       true},
      {"layers gap", "[[stage]]\nlayers = \"0\"\n[[stage]]\nlayers = \"2-3\"\n",
       {"cluster.toml:4: layer 1 is on no stage (stage 0 ends at layer 0, stage 1 starts at 2)"},
       true},
      {"layers gap at the start", "[[stage]]\nlayers = \"1-3\"\n",
       {"cluster.toml:2: layer 0 is on no stage (stage 0, the first, starts at layer 1)"}, true},
      {"layers gap at the end", "[[stage]]\nlayers = \"0-1\"\n",
       {"cluster.toml:2: layers 2-3 are on no stage (the last stage, 0, ends at layer 1; the "
        "model has 4 layers)"},
       true},
      {"layers past the model", "[[stage]]\nlayers = \"0-7\"\n",
       {"cluster.toml:2: stage 0 field 'layers': '0-7' is past the model's last layer (4 layers: "
        "0-3)"},
       true},
      {"auto squeezed out",
       "[[stage]]\nlayers = \"0-2\"\n[[stage]]\nlayers = \"auto\"\n[[stage]]\nlayers = \"3\"\n",
       {"cluster.toml:6: stage 1 is \"auto\" but the explicit stages around it leave no layers"},
       true},
      {"two autos, one layer",
       "[[stage]]\nlayers = \"0-2\"\n[[stage]]\nlayers = \"auto\"\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:6: stages 1-2 are \"auto\" but the explicit stages around them leave only "
        "layer 3"},
       true},
      {"more stages than layers", std::string(two) + two + "[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:9: 5 stages but the model has 4 layers"}, true, 1},
      {"max_model_len past the context", "[pipeline]\nmax_model_len = 4096\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:1: [pipeline] field 'max_model_len': 4096 is more than the model's training "
        "context (2048 tokens)"},
       true},
      // -- plan: ranks and devices --
      {"rank outside the world",
       std::string(two) + "[[stage]]\nrank = 1\nlayers = \"auto\"\n[[stage]]\nrank = 4\nlayers = \"auto\"\n",
       {"cluster.toml:9: stage 3 rank 4: the MPI world has 2 ranks (0-1)"}, true},
      {"a world of no ranks", two, {"cluster.toml: the MPI world size is 0 (expected 1 to 1048576 ranks)"},
       true, 0},
      {"a world past the cap", two,
       {"cluster.toml: the MPI world size is 2147483647 (expected 1 to 1048576 ranks)"}, true,
       2147483647},
      {"two ranks on one GPU",
       "[[stage]]\nrank = 0\ndevice = \"cuda:0\"\nlayers = \"0-1\"\n"
       "[[stage]]\nrank = 1\ndevice = \"cuda:0\"\nlayers = \"2-3\"\n",
       {"cluster.toml:7: stage 0 (rank 0) and stage 1 (rank 1) both use cuda:0 on one host: NCCL "
        "cannot place two ranks on one GPU"},
       true},
      {"two ranks on one GPU of one named host",
       "[[stage]]\nrank = 0\ndevice = \"cuda:1\"\nlayers = \"0-1\"\n"
       "[[stage]]\nrank = 1\ndevice = \"cuda:1\"\nlayers = \"2-3\"\n",
       {"both use cuda:1 on host 'a': NCCL cannot place two ranks on one GPU"}, true, 2, 8 * GiB,
       {"a", "a"}},
      {"device missing", "[[stage]]\ndevice = \"cuda:5\"\nlayers = \"auto\"\n",
       {"cluster.toml:2: stage 0 device 'cuda:5' (rank 0): no such device (the fake host has 2 "
        "CUDA devices)"},
       true},
      // -- plan: memory --
      {"budget too small", "[[stage]]\nlayers = \"auto\"\nmemory_utilization = 0.5\n",
       {"cluster.toml:3: stage 0 (rank 0, cpu, layers 0-3): memory_utilization 0.50 of 4.00 MiB "
        "= 2.00 MiB cannot hold the weights (",
        ") + buffers (", ") + one sequence of KV (", "max_model_len 2048 tokens x 1024 B/token (fake RAM)"},
       true, 1, 4 * MiB},
      {"kv_cache_memory past the host's memory",
       "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = 9223372036854775807\n",
       {"cluster.toml:3: stage 0 field 'kv_cache_memory': 8589934592.00 GiB (9223372036854775807 "
        "bytes) is more than the memory of cpu on rank 0: 8.00 GiB (8589934592 bytes, fake RAM)"},
       true},
      {"kv_cache_memory past a GPU's memory",
       "[[stage]]\ndevice = \"cuda:1\"\nlayers = \"auto\"\nkv_cache_memory = \"17GiB\"\n",
       {"cluster.toml:4: stage 0 field 'kv_cache_memory': 17.00 GiB (18253611008 bytes) is more "
        "than the memory of cuda:1 on rank 0: 16.00 GiB (17179869184 bytes, fake GPU)"},
       true},
      {"kv_cache_memory too small", "[[stage]]\nlayers = \"0-3\"\nkv_cache_memory = 1000\n",
       {"cluster.toml:3: stage 0 (rank 0, cpu, layers 0-3): kv_cache_memory (1000 B) cannot hold "
        "one sequence of KV (2.00 MiB), max_model_len 2048 tokens x 1024 B/token"},
       true},
      {"auto cannot fit anywhere",
       "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = 1000\n[[stage]]\nlayers = \"auto\"\n",
       {"cluster.toml:3: stage 0 (rank 0, cpu, \"auto\"): no split of layers 0-3 among stages 0-1 "
        "fits their budgets; the balanced one gives it layers 0-",
        "kv_cache_memory (1000 B) cannot hold one sequence of KV"},
       true},
      {"shares of one device above one",
       "[[stage]]\nlayers = \"0-1\"\nmemory_utilization = 0.6\n"
       "[[stage]]\nlayers = \"2-3\"\nmemory_utilization = 0.6\n",
       {"cluster.toml:6: the stages on cpu of one host share its memory, and their "
        "memory_utilization sums to 1.2 > 1: 0.6 (stage 0) + 0.6 (stage 1)"},
       true},
  };
}

TEST(topology_file, every_bad_file_is_named) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    auto t = parse_topology_text(c.text, "cluster.toml");
    std::string message;
    if (c.plan) {
      ASSERT_TRUE(t) << t.err().message;
      auto p = plan_pipeline(*t, *small_model(), fake_env(c.world, c.cpu_bytes, 16 * GiB, c.hosts));
      ASSERT_FALSE(p) << "planned without an error";
      message = p.err().message;
    } else {
      ASSERT_FALSE(t) << "read without an error";
      message = t.err().message;
    }
    for (const auto& e : c.expect) {
      EXPECT_NE(message.find(e), std::string::npos) << "expected '" << e << "' in:\n" << message;
    }
  }
}

// -- planning -------------------------------------------------------------------------

uint64_t stage_weight_bytes(const model& m, int64_t first, int64_t last, bool is_first,
                            bool is_last) {
  const auto& w = m.weights();
  uint64_t n = w.rope_freqs ? w.rope_freqs->n_bytes : 0;
  for (int64_t il = first; il < last; ++il) {
    const auto& l = w.layers[static_cast<size_t>(il)];
    for (const tensor_info* t : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.ffn_norm, l.ffn_gate,
                                 l.ffn_up, l.ffn_down}) {
      n += t->n_bytes;
    }
  }
  if (is_first) {
    n += w.token_embd->n_bytes;
  }
  if (is_last) {
    n += w.output_norm->n_bytes + w.head()->n_bytes;
  }
  return n;
}

TEST(topology_file, plans_memory_per_stage) {
  auto t = parse_ok(R"(
[pipeline]
max_num_seqs = 8
max_num_batched_tokens = 64
max_model_len = 1000

[[stage]]
layers = "0"
[[stage]]
layers = "1-3"
memory_utilization = 0.25
)");
  const auto& m = *small_model();
  auto p = plan_pipeline(t, m, fake_env(1, 1 * GiB));
  ASSERT_TRUE(p) << p.err().message;
  ASSERT_EQ(p->stages.size(), 2u);
  // defaults filled in: max_model_len stays, micro_batches = two per stage; stage 0 without a
  // budget gets 0.9 / 2 (both stages are rank 0's on the cpu)
  EXPECT_EQ(p->resolved.pipeline.micro_batches, 4);
  EXPECT_EQ(p->resolved.pipeline.max_model_len, 1000);
  EXPECT_EQ(p->resolved.stages[0].memory_utilization, 0.45);
  EXPECT_EQ(p->resolved.stages[1].memory_utilization, 0.25);

  const auto& c = m.config();
  // per token: activations in, normed, residual (3 x n_embd), q and attention output
  // (2 x 4 heads x 32), k and v (2 x 2 kv heads x 32), gate and up (2 x n_ff), the
  // converted activations (at most max(n_embd, n_ff) floats), rope angles (32)
  const uint64_t scratch = 64ull * 4 * (3 * 128 + 2 * 4 * 32 + 2 * 2 * 32 + 2 * 192 + 192 + 32);
  const uint64_t logits = 8ull * 320 * 4;
  const uint64_t metadata = 4 * m.file().data_offset();
  const auto& s0 = p->stages[0];
  const auto& s1 = p->stages[1];
  EXPECT_EQ(s0.layers.first, 0);
  EXPECT_EQ(s0.layers.last, 1);
  EXPECT_EQ(s0.weight_bytes, stage_weight_bytes(m, 0, 1, true, false));
  EXPECT_EQ(s1.weight_bytes, stage_weight_bytes(m, 1, 4, false, true));
  EXPECT_EQ(s0.buffer_bytes, scratch + metadata);
  EXPECT_EQ(s1.buffer_bytes, scratch + logits);
  EXPECT_EQ(s0.kv_bytes_per_token, c.kv_bytes_per_token(ggml_type::f16, 0, 1));
  EXPECT_EQ(s1.kv_bytes_per_token, 3 * s0.kv_bytes_per_token);
  EXPECT_EQ(s0.budget_bytes, static_cast<uint64_t>(0.45 * static_cast<double>(GiB)));
  EXPECT_EQ(s0.kv_bytes, s0.budget_bytes - s0.weight_bytes - s0.buffer_bytes);
  EXPECT_EQ(s1.kv_bytes, s1.budget_bytes - s1.weight_bytes - s1.buffer_bytes);
  for (const auto& s : p->stages) {
    EXPECT_EQ(s.n_blocks, static_cast<int32_t>(s.kv_bytes / (s.kv_bytes_per_token * 16)));
    EXPECT_EQ(s.kv_capacity_tokens, static_cast<int64_t>(s.n_blocks) * 16);
    EXPECT_EQ(s.threads, 2);  // 4 fake threads, two cpu stages of rank 0
  }
  EXPECT_NE(s0.budget_source.find("memory_utilization 0.45 of 1.00 GiB (fake RAM)"),
            std::string::npos)
      << s0.budget_source;
  EXPECT_EQ(p->n_blocks, std::min(s0.n_blocks, s1.n_blocks));
  EXPECT_EQ(p->capacity_tokens, std::min(s0.kv_capacity_tokens, s1.kv_capacity_tokens));
  EXPECT_EQ(p->n_blocks, s1.n_blocks);  // a quarter of the memory for three layers
}

TEST(topology_file, one_rank_may_put_two_stages_on_one_gpu) {
  auto t = parse_ok(
      "[[stage]]\nrank = 0\ndevice = \"cuda:0\"\nlayers = \"0-1\"\nkv_cache_memory = \"64MiB\"\n"
      "[[stage]]\nrank = 0\ndevice = \"cuda:0\"\nlayers = \"2\"\nthreads = 3\n"
      "[[stage]]\nrank = 1\ndevice = \"cuda:1\"\nlayers = \"auto\"\n");
  auto p = plan_pipeline(t, *small_model(), fake_env(2));
  ASSERT_TRUE(p) << p.err().message;
  EXPECT_EQ(p->stages[0].kv_bytes, 64 * MiB);
  EXPECT_NE(p->stages[0].budget_source.find("kv_cache_memory 64.00 MiB"), std::string::npos)
      << p->stages[0].budget_source;
  // stage 1 alone takes the default share of rank 0's cuda:0 (the kv_cache_memory stage
  // counts as a sharer); stage 2 has rank 1's cuda:1 to itself
  EXPECT_EQ(p->resolved.stages[1].memory_utilization, 0.45);
  EXPECT_EQ(p->resolved.stages[2].memory_utilization, 0.9);
  EXPECT_EQ(p->stages[1].threads, 3);
  EXPECT_EQ(p->stages[2].layers.to_string(), "3-3");
  EXPECT_EQ(p->stages[1].layers.to_string(), "2-2");
}

TEST(topology_file, same_gpu_index_on_two_hosts_is_fine) {
  auto t = parse_ok("[[stage]]\nrank = 0\ndevice = \"cuda:0\"\nlayers = \"0-1\"\n"
                    "[[stage]]\nrank = 1\ndevice = \"cuda:0\"\nlayers = \"2-3\"\n");
  auto p = plan_pipeline(t, *small_model(), fake_env(2, 8 * GiB, 16 * GiB, {"a", "b"}));
  EXPECT_TRUE(p) << p.err().message;
}

TEST(topology_file, this_host_describes_its_devices) {
  const device_info cpu = query_local_device("cpu");
  EXPECT_TRUE(cpu.exists);
  EXPECT_GT(cpu.memory_bytes, 0u);
  EXPECT_GE(cpu.threads, 1);
  EXPECT_FALSE(cpu.source.empty());
  const device_info far = query_local_device("cuda:999");
  EXPECT_FALSE(far.exists);
  EXPECT_FALSE(far.source.empty());
#ifndef BATON_HAVE_CUDA
  const device_info gpu = query_local_device("cuda:0");
  EXPECT_FALSE(gpu.exists);
  EXPECT_EQ(gpu.source, "no CUDA device (this build has no CUDA)");
  // and the planner says so, at the line of the device
  auto t = parse_ok("[[stage]]\nlayers = \"auto\"\ndevice = \"cuda:0\"\n");
  auto p = plan_pipeline(t, *small_model(), local_placement_env(1));
  ASSERT_FALSE(p);
  EXPECT_NE(p.err().message.find("cluster.toml:3: stage 0 device 'cuda:0' (rank 0): no such "
                                 "device (no CUDA device (this build has no CUDA))"),
            std::string::npos)
      << p.err().message;
#endif
}

// -- auto placement -------------------------------------------------------------------

TEST(topology_file, auto_balances_the_llama32_1b_shape_11_to_5) {
  const auto m = llama32_1b_q4_0();
  const auto& w = m->weights();
  // the premise: the Q6_K head weighs about six Q4_0 layers
  const double head = static_cast<double>(w.token_embd->n_bytes);
  const double layer = static_cast<double>(stage_weight_bytes(*m, 0, 1, false, false));
  EXPECT_NEAR(head / layer, 6.3, 0.2);
  auto t = parse_ok("[[stage]]\nlayers = \"auto\"\n[[stage]]\nlayers = \"auto\"\n");
  auto p = plan_pipeline(t, *m, fake_env(1, 64 * GiB));
  ASSERT_TRUE(p) << p.err().message;
  EXPECT_EQ(p->stages[0].layers.to_string(), "0-10");
  EXPECT_EQ(p->stages[1].layers.to_string(), "11-15");
  EXPECT_EQ(p->resolved.stages[0].layers.to_string(), "0-10");
  // a tied model's token_embd is on both ends
  EXPECT_EQ(p->stages[0].weight_bytes, stage_weight_bytes(*m, 0, 11, true, false));
  EXPECT_EQ(p->stages[1].weight_bytes, stage_weight_bytes(*m, 11, 16, false, true));
  EXPECT_GT(p->stages[1].weight_bytes, w.token_embd->n_bytes);

  // four stages: the last still takes fewer layers than the others
  auto t4 = parse_ok("[[stage]]\nlayers=\"auto\"\n[[stage]]\nlayers=\"auto\"\n"
                     "[[stage]]\nlayers=\"auto\"\n[[stage]]\nlayers=\"auto\"\n");
  auto p4 = plan_pipeline(t4, *m, fake_env(1, 64 * GiB));
  ASSERT_TRUE(p4) << p4.err().message;
  int64_t total = 0;
  for (const auto& s : p4->stages) {
    total += s.layers.size();
  }
  EXPECT_EQ(total, 16);
  EXPECT_LT(p4->stages[3].layers.size(), p4->stages[0].layers.size());
}

TEST(topology_file, a_small_budget_hands_layers_to_the_others) {
  const auto m = llama32_1b_q4_0();
  // the last stage on a 1 GiB GPU at 0.7: the head, logits and scratch leave room for
  // fewer than its five balanced layers
  auto t = parse_ok("[[stage]]\nlayers = \"auto\"\n"
                    "[[stage]]\nrank = 1\ndevice = \"cuda:0\"\nlayers = \"auto\"\n"
                    "memory_utilization = 0.7\n");
  auto p = plan_pipeline(t, *m, fake_env(2, 64 * GiB, 1 * GiB));
  ASSERT_TRUE(p) << p.err().message;
  const auto& s1 = p->stages[1];
  EXPECT_LT(s1.layers.size(), 5);
  EXPECT_GE(s1.layers.size(), 1);
  EXPECT_EQ(p->stages[0].layers.last, s1.layers.first);
  EXPECT_EQ(s1.layers.last, 16);
  // and it is the most that fits: one more layer would not
  const auto& c = m->config();
  const uint64_t one_more = stage_weight_bytes(*m, s1.layers.first - 1, 16, false, true) +
                            s1.buffer_bytes +
                            c.kv_bytes_per_token(ggml_type::f16, s1.layers.first - 1, 16) * 4096;
  EXPECT_GT(one_more, s1.budget_bytes);
}

TEST(topology_file, auto_fills_the_gpu_before_spilling_to_the_cpu) {
  // device_map="auto": a GPU reads weights ~50x faster than a CPU (no bandwidth reported:
  // the planner's defaults), so the balanced split gives the CPU stage only what the
  // GPU's budget cannot hold
  const auto m = llama32_1b_q4_0();
  auto t = parse_ok("[[stage]]\ndevice = \"cuda:0\"\nlayers = \"auto\"\n"
                    "[[stage]]\nlayers = \"auto\"\n");
  auto roomy = plan_pipeline(t, *m, fake_env(1, 64 * GiB, 80 * GiB));
  ASSERT_TRUE(roomy) << roomy.err().message;
  EXPECT_EQ(roomy->stages[0].layers.to_string(), "0-14");  // the CPU keeps one layer
  EXPECT_EQ(roomy->stages[1].layers.to_string(), "15-15");

  auto tight = plan_pipeline(t, *m, fake_env(1, 64 * GiB, 1 * GiB));
  ASSERT_TRUE(tight) << tight.err().message;
  const auto& gpu = tight->stages[0];
  EXPECT_GE(gpu.layers.size(), 1);
  EXPECT_LT(gpu.layers.size(), 15);
  EXPECT_EQ(tight->stages[1].layers.first, gpu.layers.last);
  // the most that fits: one more layer would not
  const auto& c = m->config();
  const uint64_t one_more = stage_weight_bytes(*m, 0, gpu.layers.last + 1, true, false) +
                            gpu.buffer_bytes +
                            c.kv_bytes_per_token(ggml_type::f16, 0, gpu.layers.last + 1) * 4096;
  EXPECT_GT(one_more, gpu.budget_bytes);

  // CPU-only and GPU-only runs balance bytes as before: equal devices, even split
  auto two_gpus = parse_ok("[[stage]]\ndevice = \"cuda:0\"\nlayers = \"auto\"\n"
                           "[[stage]]\nrank = 1\ndevice = \"cuda:1\"\nlayers = \"auto\"\n");
  auto even = plan_pipeline(two_gpus, *m, fake_env(2, 64 * GiB, 80 * GiB));
  ASSERT_TRUE(even) << even.err().message;
  EXPECT_EQ(even->stages[0].layers.size(), 11);  // the 1B shape's 11/5: the head is large
  EXPECT_EQ(even->stages[1].layers.size(), 5);
}

TEST(topology_file, a_device_s_reported_bandwidth_weighs_its_share) {
  const auto m = llama32_1b_q4_0();
  auto t = parse_ok("[[stage]]\ndevice = \"cuda:0\"\nlayers = \"auto\"\n"
                    "[[stage]]\nrank = 1\ndevice = \"cuda:1\"\nlayers = \"auto\"\n");
  placement_env env = fake_env(2, 64 * GiB, 80 * GiB);
  auto base = env.query_device;
  env.query_device = [base](int32_t rank, const std::string& d) {
    device_info i = base(rank, d);
    i.bandwidth = d == "cuda:1" ? 3e12 : 1e12;  // the last stage's GPU three times as fast
    return i;
  };
  auto p = plan_pipeline(t, *m, env);
  ASSERT_TRUE(p) << p.err().message;
  // equal devices split 11/5; with cuda:1 three times as fast, time = bytes / bandwidth
  // balances at 5.6 layers on cuda:0 (the head weighs about six layers)
  EXPECT_GE(p->stages[0].layers.size(), 5);
  EXPECT_LE(p->stages[0].layers.size(), 6);
}

TEST(topology_file, auto_stages_share_what_explicit_ones_leave) {
  auto t = parse_ok("[[stage]]\nlayers = \"0\"\n[[stage]]\nlayers = \"auto\"\n"
                    "[[stage]]\nlayers = \"auto\"\n");
  auto p = plan_pipeline(t, *small_model(), fake_env(1));
  ASSERT_TRUE(p) << p.err().message;
  EXPECT_EQ(p->stages[0].layers.to_string(), "0-0");
  EXPECT_EQ(p->stages[1].layers.first, 1);
  EXPECT_EQ(p->stages[1].layers.last, p->stages[2].layers.first);
  EXPECT_EQ(p->stages[2].layers.last, 4);
  auto mid = parse_ok("[[stage]]\nlayers = \"auto\"\n[[stage]]\nlayers = \"1-2\"\n"
                      "[[stage]]\nlayers = \"auto\"\n");
  auto pm = plan_pipeline(mid, *small_model(), fake_env(1));
  ASSERT_TRUE(pm) << pm.err().message;
  EXPECT_EQ(pm->stages[0].layers.to_string(), "0-0");
  EXPECT_EQ(pm->stages[2].layers.to_string(), "3-3");
}

// -- writing, defaults ------------------------------------------------------------------

TEST(topology_file, resolved_files_round_trip) {
  auto t = parse_ok(R"(model = "dir/tiny \"q\".gguf"
[pipeline]
max_num_seqs = 16
kv_cache_dtype = "f32"
[[stage]]
layers = "auto"
threads = 2
[[stage]]
rank = 1
device = "cuda:1"
layers = "auto"
memory_utilization = 0.3
[[stage]]
rank = 1
device = "cuda:1"
layers = "auto"
kv_cache_memory = "100MiB"
)");
  const auto env = fake_env(2);
  auto p = plan_pipeline(t, *small_model(), env);
  ASSERT_TRUE(p) << p.err().message;
  const std::string text = to_toml(p->resolved);
  EXPECT_EQ(text.find("auto"), std::string::npos) << text;
  auto back = parse_topology_text(text, "resolved.toml");
  ASSERT_TRUE(back) << back.err().message << "\n" << text;
  EXPECT_EQ(back->model, t.model);
  auto q = plan_pipeline(*back, *small_model(), env);
  ASSERT_TRUE(q) << q.err().message;
  ASSERT_EQ(q->stages.size(), p->stages.size());
  for (size_t i = 0; i < p->stages.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& a = p->stages[i];
    const auto& b = q->stages[i];
    EXPECT_EQ(a.layers.first, b.layers.first);
    EXPECT_EQ(a.layers.last, b.layers.last);
    EXPECT_EQ(a.weight_bytes, b.weight_bytes);
    EXPECT_EQ(a.buffer_bytes, b.buffer_bytes);
    EXPECT_EQ(a.kv_bytes_per_token, b.kv_bytes_per_token);
    EXPECT_EQ(a.budget_bytes, b.budget_bytes);
    EXPECT_EQ(a.kv_bytes, b.kv_bytes);
    EXPECT_EQ(a.n_blocks, b.n_blocks);
    EXPECT_EQ(a.threads, b.threads);
    EXPECT_EQ(a.budget_source, b.budget_source);
    const auto& sa = p->resolved.stages[i];
    const auto& sb = q->resolved.stages[i];
    EXPECT_EQ(sa.rank, sb.rank);
    EXPECT_EQ(sa.device, sb.device);
    EXPECT_EQ(sa.memory_utilization, sb.memory_utilization);
    EXPECT_EQ(sa.kv_cache_memory, sb.kv_cache_memory);
    EXPECT_EQ(sa.threads, sb.threads);
  }
  EXPECT_EQ(q->capacity_tokens, p->capacity_tokens);
  EXPECT_EQ(q->resolved.pipeline.micro_batches, p->resolved.pipeline.micro_batches);
  EXPECT_EQ(q->resolved.pipeline.max_model_len, p->resolved.pipeline.max_model_len);
  EXPECT_EQ(q->resolved.pipeline.max_num_seqs, 16);
  EXPECT_EQ(q->resolved.pipeline.kv_type, ggml_type::f32);
  // and writing the re-read plan gives the same text, but for the name in the comment
  EXPECT_EQ(to_toml(q->resolved).substr(to_toml(q->resolved).find('\n')),
            text.substr(text.find('\n')));
}

TEST(topology_file, sizes_past_int64_round_trip_as_strings) {
  // found by the topology fuzzer: parse_bytes reads up to 2^64 - 1, a TOML integer stops
  // at 2^63 - 1, so to_toml wrote a file that did not read back
  const auto t = parse_ok("[[stage]]\nlayers = \"auto\"\nkv_cache_memory = \"16668034718034716437\"\n"
                          "[[stage]]\nlayers = \"auto\"\nkv_cache_memory = 9223372036854775807\n");
  const std::string text = to_toml(t);
  EXPECT_NE(text.find("kv_cache_memory = \"16668034718034716437\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kv_cache_memory = 9223372036854775807\n"), std::string::npos) << text;
  auto back = parse_topology_text(text, "cluster.toml");
  ASSERT_TRUE(back) << back.err().message << "\n" << text;
  EXPECT_EQ(back->stages[0].kv_cache_memory, 16668034718034716437ull);
  EXPECT_EQ(back->stages[1].kv_cache_memory, 9223372036854775807ull);
  EXPECT_EQ(to_toml(*back), text);
}

TEST(topology_file, default_topology_splits_evenly_on_rank_0) {
  const topology t = default_topology("m.gguf", 3);
  EXPECT_EQ(t.model, "m.gguf");
  ASSERT_EQ(t.stages.size(), 3u);
  for (const auto& s : t.stages) {
    EXPECT_EQ(s.rank, 0);
    EXPECT_EQ(s.device, "cpu");
  }
  auto p = plan_pipeline(t, *small_model(), fake_env(1));
  ASSERT_TRUE(p) << p.err().message;
  // split_layers: the first stages take the remainder (not the cost balance, which
  // would favour the last stage less)
  EXPECT_EQ(p->stages[0].layers.to_string(), "0-1");
  EXPECT_EQ(p->stages[1].layers.to_string(), "2-2");
  EXPECT_EQ(p->stages[2].layers.to_string(), "3-3");
  for (const auto& s : p->resolved.stages) {
    EXPECT_NEAR(*s.memory_utilization, 0.3, 1e-12);
  }
  auto too_many = plan_pipeline(default_topology("m.gguf", 5), *small_model(), fake_env(1));
  ASSERT_FALSE(too_many);
  EXPECT_NE(too_many.err().message.find("5 stages but the model has 4 layers"), std::string::npos)
      << too_many.err().message;
}

}  // namespace
}  // namespace baton
