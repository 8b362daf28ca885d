// The CUDA backend end to end (label gpu; each test skips without a device): a whole
// model on cuda:0 against llama.cpp's golden logits within the CPU's bounds, a sequence's
// logits bit-identical alone and batched (no batch-dependent split anywhere), a CPU stage
// feeding a CUDA stage through host memory, and `baton run --device` / a mixed topology
// from the command line. The errors a host without a GPU gives are tested here too: those
// run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/serving/sampler.hpp"
#include "runtime/compute/stage_compute.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"
#include "tests/golden_util.hpp"
#include "tests/gpu_util.hpp"
#include "tests/kv_move_util.hpp"
#include "tests/mpi_util.hpp"
#if defined(BATON_HAVE_CUDA)
#include "kernels/cuda/dequantize.cuh"
#endif

namespace baton {
namespace {

using test::read_logits;
using test::rel_l2;

/// A stage over all of `m`'s layers (or [first, last)) on `device`.
std::unique_ptr<stage_compute> make(std::shared_ptr<const model> m, const std::string& device,
                                    ggml_type kv, int64_t first = 0, int64_t last = -1,
                                    bool keep_on_device = false) {
  stage_compute_options o;
  o.keep_output_on_device = keep_on_device;
  o.m = std::move(m);
  o.first_layer = first;
  o.last_layer = last < 0 ? o.m->config().n_layer : last;
  o.device = device;
  o.n_blocks = 256;
  o.block_size = 16;
  o.kv_type = kv;
  o.n_threads = 2;
  o.kernels = cpu::best_isa();
  auto s = make_stage_compute(o);
  EXPECT_TRUE(s) << s.err().message;
  return s ? std::move(*s) : nullptr;
}

/// tiny-<type>.gguf from the shared folder; on the GPU machine, which gets one shared model
/// at a time (scripts/gpu-bundle.sh), whichever tiny model is there. None: empty.
std::filesystem::path tiny_model(const std::filesystem::path& shared, const std::string& type) {
  const auto wanted = shared / "models" / ("tiny-" + type + ".gguf");
  if (std::filesystem::exists(wanted) || test::in_ci()) {
    return wanted;
  }
  for (const char* other : {"q8_0", "q4_0", "q4_k_m"}) {
    const auto p = shared / "models" / (std::string("tiny-") + other + ".gguf");
    if (std::filesystem::exists(p)) {
      std::printf("tiny-%s.gguf is not here: tiny-%s.gguf instead\n", type.c_str(), other);
      return p;
    }
  }
  return wanted;
}

/// Sequences with block tables: sequence i owns blocks [64 i, 64 i + 64), in reverse order
/// (tables need not be sorted).
struct sequences {
  std::vector<std::vector<int32_t>> tables;
  explicit sequences(int n) {
    for (int i = 0; i < n; ++i) {
      std::vector<int32_t> t;
      for (int b = 63; b >= 0; --b) {
        t.push_back(64 * i + b);
      }
      tables.push_back(t);
    }
  }
};

/// The prompt `ids` of one sequence (blocks `table`) as one batch; logits for the last.
batch prompt_batch(const std::vector<int32_t>& table, const std::vector<int32_t>& ids) {
  batch b;
  b.block_tables.push_back(&table);
  for (size_t i = 0; i < ids.size(); ++i) {
    b.add(0, ids[i], static_cast<int32_t>(i), i + 1 == ids.size());
  }
  return b;
}

/// Prefill of `ids` as sequence 0 in one batch; the last token's logits.
std::vector<float> prefill(stage_compute& s, const std::vector<int32_t>& ids) {
  sequences seqs(1);
  const batch b = prompt_batch(seqs.tables[0], ids);
  std::vector<float> hidden, logits;
  auto ok = s.forward(b, hidden, logits);
  EXPECT_TRUE(ok) << ok.err().message;
  return logits;
}

TEST(cuda_stage, next_token_logits_match_llama_cpp_within_the_cpu_bounds) {
  BATON_REQUIRE_GPU();
  BATON_REQUIRE_SHARED(shared);
  int n_checked = 0;
  for (const auto& v : test::golden_variants) {  // and the CPU's bounds
    const std::string source = test::golden_source(v.name);
    if (!std::filesystem::exists(shared / "models" / ("tiny-" + source + ".gguf")) ||
        !std::filesystem::exists(shared / "golden" / ("tiny-" + std::string(v.name)))) {
      // the GPU machine gets one model and its own golden files at a time
      // (scripts/gpu-bundle.sh)
      ASSERT_FALSE(test::in_ci()) << "tiny-" << source << ".gguf or golden/tiny-" << v.name
                                  << " is missing";
      std::printf("cuda golden %-13s: tiny-%s.gguf not here, skipped\n", v.name, source.c_str());
      continue;
    }
    ++n_checked;
    const auto path = test::golden_model_path(shared, v.name);
    auto m = model::open(path);
    ASSERT_TRUE(m) << m.err().message;
    auto tok = tokenizer::create(*load_vocab((*m)->file()));
    ASSERT_TRUE(tok);
    for (auto kv : {ggml_type::f32, ggml_type::f16}) {
      auto s = make(*m, "cuda:0", kv);
      ASSERT_TRUE(s);
      for (const char* prompt : {"capital", "once", "chat"}) {
        const auto ids = tok->encode(test::slurp(shared / "golden/prompts" / (std::string(prompt) + ".txt")));
        const auto got = prefill(*s, ids);
        const auto want = read_logits(shared / "golden" / (std::string("tiny-") + v.name) /
                                      (std::string(prompt) + ".kv_" +
                                       (kv == ggml_type::f32 ? "f32" : "f16") + ".logits.bin"));
        ASSERT_EQ(got.size(), want.size());
        const double err = rel_l2(got, want);
        const double bound = kv == ggml_type::f32 ? v.bound_kv_f32 : v.bound_kv_f16;
        std::printf("cuda golden %-13s kv %s %-8s logits rel err %.3g (bound %.0e)\n", v.name,
                    kv == ggml_type::f32 ? "f32" : "f16", prompt, err, bound);
        EXPECT_LE(err, bound) << v.name << " " << prompt;
      }
    }
  }
  EXPECT_GT(n_checked, 0) << "no shared model found";
}

TEST(cuda_stage, a_sequence_s_logits_do_not_depend_on_its_batch) {
  BATON_REQUIRE_GPU();
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open(tiny_model(shared, "q4_k_m").string());
  ASSERT_TRUE(m);
  const int32_t n_vocab = static_cast<int32_t>((*m)->config().n_vocab);
  std::vector<int32_t> prompt_a, prompt_b;
  for (int i = 0; i < 37; ++i) {
    prompt_a.push_back(1000 + 7 * i);
    prompt_b.push_back(5000 + 11 * i);
  }
  sequences seqs(3);
  // alone: A's prompt, then one decode token
  auto alone = make(*m, "cuda:0", ggml_type::f16);
  ASSERT_TRUE(alone);
  std::vector<float> hidden, first, second;
  {
    batch b = prompt_batch(seqs.tables[0], prompt_a);
    ASSERT_TRUE(alone->forward(b, hidden, first));
    b.clear();
    b.block_tables.push_back(&seqs.tables[0]);
    b.add(0, 42, static_cast<int32_t>(prompt_a.size()), true);
    ASSERT_TRUE(alone->forward(b, hidden, second));
  }
  // batched: A's prompt in two chunks beside B's prefill and C's decode steps
  auto mixed = make(*m, "cuda:0", ggml_type::f16);
  ASSERT_TRUE(mixed);
  std::vector<float> logits;
  {
    batch b;
    b.block_tables = {&seqs.tables[1], &seqs.tables[0], &seqs.tables[2]};
    for (size_t i = 0; i < prompt_b.size(); ++i) {
      b.add(0, prompt_b[i], static_cast<int32_t>(i), true);
    }
    for (size_t i = 0; i < 20; ++i) {
      b.add(1, prompt_a[i], static_cast<int32_t>(i), false);
    }
    b.add(2, 77, 0, true);
    ASSERT_TRUE(mixed->forward(b, hidden, logits));
    b.clear();
    b.block_tables = {&seqs.tables[2], &seqs.tables[0]};
    b.add(0, 78, 1, true);
    for (size_t i = 20; i < prompt_a.size(); ++i) {
      b.add(1, prompt_a[i], static_cast<int32_t>(i), i + 1 == prompt_a.size());
    }
    ASSERT_TRUE(mixed->forward(b, hidden, logits));
    ASSERT_EQ(logits.size(), 2u * static_cast<size_t>(n_vocab));
    EXPECT_EQ(0, std::memcmp(logits.data() + n_vocab, first.data(), first.size() * sizeof(float)))
        << "A's prompt logits changed with its batch";
    b.clear();
    b.block_tables = {&seqs.tables[0], &seqs.tables[2]};
    b.add(0, 42, static_cast<int32_t>(prompt_a.size()), true);
    b.add(1, 79, 2, true);
    ASSERT_TRUE(mixed->forward(b, hidden, logits));
    EXPECT_EQ(0, std::memcmp(logits.data(), second.data(), second.size() * sizeof(float)))
        << "A's decode logits changed with its batch";
  }
}

TEST(cuda_stage, a_cpu_stage_feeds_a_cuda_stage_through_host_memory) {
  BATON_REQUIRE_GPU();
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open(tiny_model(shared, "q8_0").string());
  ASSERT_TRUE(m);
  const std::vector<int32_t> ids = {128000, 791, 6864, 315, 9822, 374};
  auto whole_cpu = make(*m, "cpu", ggml_type::f32);
  const auto want = prefill(*whole_cpu, ids);
  // layers 0-1 on the CPU, 2-3 on the GPU; and the other way round
  for (bool gpu_first : {false, true}) {
    auto a = make(*m, gpu_first ? "cuda:0" : "cpu", ggml_type::f32, 0, 2);
    auto b = make(*m, gpu_first ? "cpu" : "cuda:0", ggml_type::f32, 2, 4);
    ASSERT_TRUE(a && b);
    sequences seqs(1);
    const batch bt = prompt_batch(seqs.tables[0], ids);
    std::vector<float> hidden, logits;
    ASSERT_TRUE(a->forward(bt, hidden, logits));
    ASSERT_EQ(hidden.size(), ids.size() * static_cast<size_t>((*m)->config().n_embd));
    ASSERT_TRUE(b->forward(bt, hidden, logits));
    const double err = rel_l2(logits, want);
    std::printf("cpu+cuda (gpu first: %d) vs cpu: logits rel err %.3g\n", gpu_first, err);
    EXPECT_LE(err, 5e-2);
    EXPECT_EQ(sampler::greedy(logits), sampler::greedy(want));
  }
}

#if defined(BATON_CUDA_EMU)
/// In a child process (a faulted device stays faulted): a CUDA stage steps once, then the
/// emulation faults its next kernel. The step fails naming the device and the fault, so
/// does every later step, without a crash or a hang; a new stage on the device is refused
/// with the device named; a CPU stage of the process still computes what it did.
[[noreturn]] void kernel_fault_scenario(const std::filesystem::path& model_path) {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) {
      std::fprintf(stderr, "kernel fault scenario: %s\n", what.c_str());
      std::exit(1);
    }
  };
  auto m = model::open(model_path.string());
  check(m.ok(), "the model opens");
  const std::vector<int32_t> ids = {128000, 791, 6864, 315, 9822, 374};
  auto cpu = make(*m, "cpu", ggml_type::f32);
  auto gpu = make(*m, "cuda:0", ggml_type::f32);
  check(cpu && gpu, "both stages are made");
  const auto want = prefill(*cpu, ids);
  check(!prefill(*gpu, ids).empty(), "the first step runs");
  cuda_emu::set_fault_at_launch(1);
  sequences seqs(1);
  const batch b = prompt_batch(seqs.tables[0], ids);
  for (int step = 0; step < 2; ++step) {
    std::vector<float> hidden, logits;
    auto r = gpu->forward(b, hidden, logits);
    check(!r.ok(), "step " + std::to_string(step) + " after the fault fails");
    const std::string& msg = r.err().message;
    check(msg.find("cuda:0") != std::string::npos, "the error names the device: " + msg);
    check(msg.find("launch failure") != std::string::npos, "the error names the fault: " + msg);
    check(msg.find("restart") != std::string::npos, "the error says what to do: " + msg);
  }
  stage_compute_options o;
  o.m = *m;
  o.last_layer = (*m)->config().n_layer;
  o.device = "cuda:0";
  o.n_blocks = 8;
  auto again = make_stage_compute(o);
  check(!again.ok(), "a new stage on the faulted device is refused");
  check(again.err().message.find("cuda:0") != std::string::npos,
        "the refusal names the device: " + again.err().message);
  check(prefill(*cpu, ids) == want, "the CPU stage still computes the same logits");
  gpu.reset();  // tearing down a faulted stage neither hangs nor crashes
  std::exit(0);
}

TEST(cuda_stage, a_kernel_fault_fails_that_step_and_every_later_one_naming_the_device) {
  BATON_REQUIRE_SHARED(shared);
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the parent has stream workers running
  EXPECT_EXIT(kernel_fault_scenario(tiny_model(shared, "q8_0")),
              testing::ExitedWithCode(0), "");
}
#endif

TEST(cuda_stage, kv_rows_moved_to_a_new_owner_give_the_same_next_logits) {
  BATON_REQUIRE_GPU();
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open(tiny_model(shared, "q8_0").string());
  ASSERT_TRUE(m) << m.err().message;
  test::expect_kv_rows_move_between_stages(*m, "cuda:0");
}

TEST(cuda_stage, two_gpu_stages_of_one_process_hand_over_on_the_device) {
  BATON_REQUIRE_GPU();
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open(tiny_model(shared, "q4_0").string());
  ASSERT_TRUE(m);
  const std::vector<int32_t> ids = {128000, 791, 6864, 315, 9822, 374, 12366, 13};
  auto whole = make(*m, "cuda:0", ggml_type::f16);
  ASSERT_TRUE(whole);
  const auto want = prefill(*whole, ids);
  auto a = make(*m, "cuda:0", ggml_type::f16, 0, 1, true);
  auto b = make(*m, "cuda:0", ggml_type::f16, 1, 4);
  ASSERT_TRUE(a && b);
  sequences seqs(1);
  const batch bt = prompt_batch(seqs.tables[0], ids);
  stage_activations io;
  std::vector<float> logits;
  auto ok = a->forward(bt, io, logits);
  ASSERT_TRUE(ok) << ok.err().message;
  EXPECT_TRUE(io.host.empty());
  ASSERT_TRUE(io.on_device) << "the output stayed on the host";
  EXPECT_EQ(io.device, 0);
  ok = b->forward(bt, io, logits);
  ASSERT_TRUE(ok) << ok.err().message;
  // the same kernels on the same rows: the split changes nothing
  ASSERT_EQ(logits.size(), want.size());
  EXPECT_EQ(0, std::memcmp(logits.data(), want.data(), want.size() * sizeof(float)));
  // a CPU stage refuses device activations with a message instead of reading them
  auto cpu_b = make(*m, "cpu", ggml_type::f16, 1, 4);
  stage_activations again;
  ASSERT_TRUE(a->forward(bt, again, logits));
  auto refused = cpu_b->forward(bt, again, logits);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.err().message.find("cuda:0"), std::string::npos) << refused.err().message;
}

/// `-m <a demo model made here>`: the command-line tests never depend on ~/.cache.
std::string demo_model_flag() {
  static const std::string flag = [] {
    const auto path = test::temp_dir("cuda-demo") / "demo.gguf";
    auto r = test::run_shell(std::string(BATON_BINARY) + " mkmodel --preset demo -o " +
                             path.string());
    EXPECT_EQ(r.status, 0) << r.err;
    return " -m " + path.string();
  }();
  return flag;
}

TEST(cuda_stage, the_command_line_runs_on_the_gpu_and_beside_the_cpu) {
  BATON_REQUIRE_GPU();
  const auto dir = test::temp_dir("cuda-cli");
  const std::string baton = BATON_BINARY;
  const std::string m = demo_model_flag();
  auto direct = test::run_shell(baton + " run -q" + m + " --device cuda:0 -n 8 --temp 0 -p 'The capital of'");
  ASSERT_EQ(direct.status, 0) << direct.err;
  EXPECT_FALSE(direct.out.empty());
  std::ofstream(dir / "mixed.toml") << "[[stage]]\ndevice = \"cuda:0\"\nlayers = \"auto\"\n"
                                       "[[stage]]\nlayers = \"auto\"\n";
  auto mixed = test::run_shell(baton + " run -q" + m + " --topology " + (dir / "mixed.toml").string() +
                               " -n 8 --temp 0 -p 'The capital of'");
  ASSERT_EQ(mixed.status, 0) << mixed.err;
  EXPECT_FALSE(mixed.out.empty());
  // two stages on the one GPU, handing over in device memory: the one-stage tokens
  auto split = test::run_shell(baton + " run -q" + m + " --device cuda:0 --stages 2 -n 8 --temp 0 "
                               "-p 'The capital of'");
  ASSERT_EQ(split.status, 0) << split.err;
  EXPECT_EQ(split.out, direct.out);
}

/// What a two-rank job on two GPUs needs besides mpirun: on the emulation, two emulated
/// devices per rank and the emulation's NCCL shim (built beside the test); on real GPUs,
/// nothing (libnccl.so.2 from the system).
std::string two_gpu_env() {
#if defined(BATON_CUDA_EMU)
  return "BATON_CUDA_EMU_DEVICES=2 BATON_NCCL_LIBRARY=" BATON_NCCL_EMU_LIBRARY " ";
#else
  return "";
#endif
}

TEST(cuda_stage, two_ranks_hand_over_between_their_gpus_through_nccl) {
  BATON_REQUIRE_GPU();
  if (!mpi_test::have_mpirun()) {
    GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
  }
#if !defined(BATON_CUDA_EMU)
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n < 2) {
    GTEST_SKIP() << "two CUDA devices are needed (NCCL takes one per rank); this host has " << n;
  }
#endif
  const std::string run = two_gpu_env() + mpi_test::mpirun(2) +
                          "-x BATON_CUDA_EMU_DEVICES -x BATON_NCCL_LIBRARY " BATON_BINARY " run" +
                          demo_model_flag() + " --device cuda -n 4 --temp 0 -p 'The capital of'";
  // rank r runs its stage on cuda:r; the activations go GPU to GPU over NCCL, or through
  // host memory and MPI without --nccl: the same tokens either way
  auto nccl = test::run_shell(run + " --nccl");
  ASSERT_EQ(nccl.status, 0) << nccl.err;
  auto host = test::run_shell(run);
  ASSERT_EQ(host.status, 0) << host.err;
  EXPECT_FALSE(nccl.out.empty());
  EXPECT_EQ(nccl.out, host.out);
  EXPECT_NE(nccl.err.find("transfers"), std::string::npos) << nccl.err;
  EXPECT_EQ(nccl.err.find(" 0 device to device"), std::string::npos) << nccl.err;
  EXPECT_NE(host.err.find(" 0 device to device"), std::string::npos) << host.err;
}

// -- without a GPU: errors, never a crash ----------------------------------------------

TEST(cuda_stage, a_missing_device_is_a_named_error) {
  BATON_REQUIRE_SHARED(shared);
  auto m = model::open(tiny_model(shared, "q8_0").string());
  ASSERT_TRUE(m);
  stage_compute_options o;
  o.m = *m;
  o.first_layer = 0;
  o.last_layer = 4;
  o.n_blocks = 8;
  for (const char* device : {"cuda:97", "gpu", "cuda:x"}) {
    o.device = device;
    auto s = make_stage_compute(o);
    ASSERT_FALSE(s) << device;
    EXPECT_NE(s.err().message.find(device), std::string::npos) << s.err().message;
  }
}

TEST(cuda_stage, the_command_line_names_a_device_it_cannot_use) {
#if defined(BATON_HAVE_CUDA)
  if (cuda::device_available(nullptr)) {
    GTEST_SKIP() << "a CUDA device is here: the no-device error cannot be seen";
  }
#endif
  const std::string baton = BATON_BINARY;
  auto r = test::run_shell(baton + " run -q" + demo_model_flag() + " --device cuda:0 -n 2 -p hi");
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("cuda:0"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no CUDA device"), std::string::npos) << r.err;
  auto bad = test::run_shell(baton + " run -q" + demo_model_flag() + " --device gpu0 -n 2 -p hi");
  EXPECT_EQ(bad.status, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("--device 'gpu0'"), std::string::npos) << bad.err;
}

TEST(cuda_stage, device_names_parse) {
  EXPECT_EQ(cuda_device_index("cuda:0"), 0);
  EXPECT_EQ(cuda_device_index("cuda:12"), 12);
  EXPECT_FALSE(cuda_device_index("cuda:"));
  EXPECT_FALSE(cuda_device_index("cuda:-1"));
  EXPECT_FALSE(cuda_device_index("cuda:1x"));
  EXPECT_FALSE(cuda_device_index("cpu"));
}

}  // namespace
}  // namespace baton
