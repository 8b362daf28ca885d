// stage_compute.hpp: which stage a device name makes.
#include "runtime/compute/stage_compute.hpp"

#include "runtime/backend/cuda_backend.hpp"
#include "runtime/compute/cpu_stage.hpp"

namespace baton {


result<std::unique_ptr<stage_compute>> make_stage_compute(const stage_compute_options& o) {
  if (o.device == "cpu") {
    return std::unique_ptr<stage_compute>(new cpu_stage(o));
  }
  const auto index = cuda_device_index(o.device);
  if (!index) {
    return make_error("device '%s': expected \"cpu\" or \"cuda:N\"", o.device.c_str());
  }
  return cuda_backend::make_stage(o, *index);
}

}  // namespace baton
