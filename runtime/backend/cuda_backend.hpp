// The CUDA backend: everything runtime/ and launch/ ask of CUDA, behind one set of
// functions whose definitions the executable chooses when it links. Three builds define
// them: the CUDA runtime (cuda_backend.cpp with nvcc's kernels and cudart; the `baton`
// executable where nvcc was found), the same cuda_backend.cpp compiled against the CPU
// emulation of CUDA (kernels/cuda/emu; test-only executables: the gpu-emu tests and
// `baton-emu`), and no_cuda_backend.cpp (a build without nvcc: every call says so). The
// rest of runtime/ is compiled once and never includes a CUDA header, so the emulation
// reaches no user's binary and the choice is one link-time switch (runtime/CMakeLists.txt,
// the BATON_CUDA_EMU target property).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/compute/stage_compute.hpp"
#include "runtime/system/device.hpp"
#include "runtime/system/error.hpp"
#include "runtime/transport/device_link.hpp"

namespace baton::cuda_backend {

/// What this executable runs CUDA on: "cuda", "cuda-emu" (the CPU emulation) or "none".
const char* name();

/// Whether device cuda:0 can be used; `why` (when not null) says why not.
bool device_available(std::string* why);

/// cuda:`index` as placement sees it (total memory, bandwidth), or exists = false with the
/// reason as `source`.
device_info query_device(int index);

/// A stage on cuda:`index` (runtime/compute/cuda_stage).
result<std::unique_ptr<stage_compute>> make_stage(const stage_compute_options& o, int index);

/// NCCL's unique id, as bytes.
using nccl_id = std::array<char, 128>;

/// Whether NCCL can run here on cuda:`device`: libnccl loads ($BATON_NCCL_LIBRARY, else
/// libnccl.so.2) and the device can be made current.
result<void> nccl_ready(int device);
/// A fresh communicator id; one member makes it and every member joins with it.
result<nccl_id> nccl_make_id();
/// Joins the communicator over `members` (job ranks, in the communicator's order) as
/// `rank` on cuda:`device` (runtime/transport/nccl_channel's nccl_link).
result<std::unique_ptr<device_link>> nccl_connect(const nccl_id& id, std::vector<int32_t> members,
                                                  int32_t rank, int device);

}  // namespace baton::cuda_backend
