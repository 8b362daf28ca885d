// engine_flags.hpp.
#include "launch/engine_flags.hpp"

#include <algorithm>
#include <thread>

#include "launch/commands.hpp"
#include "runtime/vocab.hpp"

namespace baton::cli {

void engine_flags::add_to(CLI::App& cmd) {
  cmd.add_option("-m,--model", model, "GGUF model file (default: the demo model)");
  cmd.add_option("-t,--threads", threads, "CPU threads (default: the cores this process may use)");
  cmd.add_option("--kv-type", kv_type, "KV cache type: f16 or f32")->capture_default_str();
  cmd.add_option("--kernels", kernels, "Pin the CPU kernels: scalar, avx2 or avx512");
  cmd.add_option("-c,--ctx-size", ctx_size, "Context size per sequence (default min(model, 4096))");
  cmd.add_option("-b,--batch-size", batch_size, "Prompt tokens per forward step")->capture_default_str();
}

result<loaded> load(const engine_flags& f, int32_t n_seq_max) {
  loaded out;
  const std::string path = f.model.empty() ? demo_model_path() : f.model;
  auto m = model::open(path);
  if (!m) {
    return m.err();
  }
  out.m = *m;
  auto v = load_vocab(out.m->file());
  if (!v) {
    return v.err();
  }
  auto t = tokenizer::create(std::move(*v));
  if (!t) {
    return t.err();
  }
  out.tok = std::make_unique<tokenizer>(std::move(*t));

  engine_options o;
  o.n_threads = f.threads > 0 ? f.threads
                              : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (f.kv_type == "f16" || f.kv_type == "F16") {
    o.kv_type = ggml_type::f16;
  } else if (f.kv_type == "f32" || f.kv_type == "F32") {
    o.kv_type = ggml_type::f32;
  } else {
    return make_error("--kv-type '%s': expected f16 or f32", f.kv_type.c_str());
  }
  if (!f.kernels.empty()) {
    auto k = cpu::parse_isa(f.kernels);
    if (!k) {
      return make_error("--kernels '%s': expected scalar, avx2 or avx512", f.kernels.c_str());
    }
    if (!cpu::isa_supported(*k)) {
      return make_error("--kernels %s: this CPU cannot run them", f.kernels.c_str());
    }
    o.kernels = *k;
  }
  if (f.ctx_size < 0) {
    return make_error("--ctx-size (%lld) must be >= 0", static_cast<long long>(f.ctx_size));
  }
  o.n_ctx = f.ctx_size > 0 ? f.ctx_size : std::min<int64_t>(out.m->config().n_ctx_train, 4096);
  if (f.batch_size <= 0) {
    return make_error("--batch-size (%lld) must be > 0", static_cast<long long>(f.batch_size));
  }
  o.max_batch_tokens = f.batch_size;
  o.n_seq_max = n_seq_max;
  auto e = engine::create(out.m, o);
  if (!e) {
    return e.err();
  }
  out.eng = std::move(*e);
  return out;
}

}  // namespace baton::cli
