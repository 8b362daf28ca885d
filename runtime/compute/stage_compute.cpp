// stage_compute.hpp.
#include "runtime/compute/stage_compute.hpp"

#include "kernels/cpu/thread_pool.hpp"
#include "runtime/compute/kv_cache.hpp"

#if defined(BATON_HAVE_CUDA)
#include "runtime/compute/cuda_stage.hpp"
#endif

namespace baton {

namespace {

class cpu_stage final : public stage_compute {
 public:
  explicit cpu_stage(const stage_compute_options& o)
      : pool_(o.n_threads),
        kv_(o.first_layer, o.last_layer, o.n_blocks, o.block_size, o.m->config().n_head_kv,
            o.m->config().n_embd_head_k, o.kv_type),
        exec_(o.m, o.first_layer, o.last_layer, kv_, pool_, o.kernels) {}

  result<void> forward(const batch& b, stage_activations& io,
                       std::vector<float>& logits) override {
    if (io.on_device) {
      // only a GPU stage that knows its successor is a GPU stage leaves them there
      return make_error("cpu stage: activations arrived in the memory of cuda:%d", io.device);
    }
    exec_.forward(b, io.host, logits);
    return {};
  }

  std::string describe() const override { return "cpu"; }

 private:
  // -- member variables -------------------------------------------------------
  cpu::thread_pool pool_;
  kv_storage kv_;
  stage_executor exec_;
};

}  // namespace

result<std::unique_ptr<stage_compute>> make_stage_compute(const stage_compute_options& o) {
  if (o.device == "cpu") {
    return std::unique_ptr<stage_compute>(new cpu_stage(o));
  }
  const auto index = cuda_device_index(o.device);
  if (!index) {
    return make_error("device '%s': expected \"cpu\" or \"cuda:N\"", o.device.c_str());
  }
#if defined(BATON_HAVE_CUDA)
  auto s = cuda_stage::create(o, *index);
  if (!s) {
    return s.err();
  }
  return std::unique_ptr<stage_compute>(std::move(*s));
#else
  return make_error("device '%s': this build of baton has no CUDA backend (nvcc was not found "
                    "when it was configured; rebuild on a machine with the CUDA toolkit)",
                    o.device.c_str());
#endif
}

}  // namespace baton
