// stage_compute.hpp: which stage a device name makes.
#include "runtime/compute/stage_compute.hpp"

#include "runtime/compute/cpu_stage.hpp"

#if defined(BATON_HAVE_CUDA)
#include "runtime/compute/cuda_stage.hpp"
#endif

namespace baton {


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
