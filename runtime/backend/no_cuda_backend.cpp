// cuda_backend.hpp in a build without CUDA (nvcc was not found when it was configured):
// no device exists, and asking for one says why.
#include "runtime/backend/cuda_backend.hpp"

namespace baton::cuda_backend {

namespace {
constexpr const char* no_cuda = "this build has no CUDA (nvcc was not found)";
}  // namespace

const char* name() { return "none"; }

bool device_available(std::string* why) {
  if (why) {
    *why = no_cuda;
  }
  return false;
}

device_info query_device(int) {
  device_info d;
  d.source = std::string("no CUDA device (") + no_cuda + ")";
  return d;
}

result<std::unique_ptr<stage_compute>> make_stage(const stage_compute_options& o, int) {
  return make_error("device '%s': this build of baton has no CUDA backend (nvcc was not found "
                    "when it was configured; rebuild on a machine with the CUDA toolkit)",
                    o.device.c_str());
}

result<void> nccl_ready(int) {
  return make_error("this build of baton has no NCCL (it was built without CUDA)");
}

result<nccl_id> nccl_make_id() {
  return make_error("this build of baton has no NCCL (it was built without CUDA)");
}

result<std::unique_ptr<device_link>> nccl_connect(const nccl_id&, std::vector<int32_t>, int32_t,
                                                  int) {
  return make_error("this build of baton has no NCCL (it was built without CUDA)");
}

}  // namespace baton::cuda_backend
