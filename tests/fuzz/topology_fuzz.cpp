// libFuzzer target for topology files: any bytes must give a topology or a named error,
// never a crash, a hang or an exception (built with ASan + UBSan). A file that reads is
// written back with to_toml and must read back to the same text (the round trip the
// header promises), then planned against a 4-layer model on a made-up host (cpu 8 GiB,
// cuda:0 and cuda:1 16 GiB) in a world of its highest rank + 1, as `baton plan` does.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

#include "runtime/model/model_builder.hpp"
#include "topology/planner.hpp"
#include "topology/topology_file.hpp"

namespace {

const baton::model& small_model() {
  static const std::shared_ptr<const baton::model> m = [] {
    static std::vector<std::byte> bytes;
    baton::build_options o;
    o.shape.n_vocab = 64;
    o.shape.n_embd = 32;
    o.shape.n_ff = 32;
    o.shape.n_layer = 4;
    o.shape.n_head = 2;
    o.shape.n_head_kv = 1;
    auto w = baton::build_model(o, nullptr);
    BATON_ASSERT(w.ok());
    bytes = w->to_bytes();
    auto f = baton::gguf_file::parse(bytes.data(), bytes.size(), "small.gguf");
    BATON_ASSERT(f.ok());
    auto r = baton::model::from_file(std::move(*f));
    BATON_ASSERT(r.ok());
    return *r;
  }();
  return *m;
}

baton::placement_env fake_env(int32_t world) {
  baton::placement_env env;
  env.world_size = world;
  env.query_device = [](int32_t, const std::string& d) {
    constexpr uint64_t gib = uint64_t{1} << 30;
    baton::device_info i;
    if (d == "cpu") {
      i = {true, 8 * gib, "fake RAM", 4};
    } else if (d == "cuda:0" || d == "cuda:1") {
      i = {true, 16 * gib, "fake GPU", 1};
    } else {
      i.source = "the fake host has 2 CUDA devices";
    }
    return i;
  };
  return env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = baton::parse_topology_text(text, "fuzz.toml");
  if (!t) {
    return 0;
  }
  const std::string once = baton::to_toml(*t);
  auto again = baton::parse_topology_text(once, "fuzz.toml");
  if (!again) {
    std::fprintf(stderr, "to_toml wrote a file that does not read back: %s\n%s\n",
                 again.err().message.c_str(), once.c_str());
    __builtin_trap();
  }
  if (baton::to_toml(*again) != once) {
    std::fprintf(stderr, "to_toml does not round-trip:\n%s\n---\n%s\n", once.c_str(),
                 baton::to_toml(*again).c_str());
    __builtin_trap();
  }
  int64_t world = 1;
  for (const auto& s : t->stages) {
    world = std::max<int64_t>(world, int64_t{s.rank} + 1);
  }
  BATON_ASSERT(world <= baton::topology_limits::max_world_size);
  (void)baton::plan_pipeline(*t, small_model(), fake_env(static_cast<int32_t>(world)));
  return 0;
}
