// nccl.h for builds against the CUDA emulation (runtime/backend's emulated backend): the
// toolkit's nccl.h includes the real cuda_runtime.h, whose declarations clash with the
// emulation's, so nccl_channel.cpp reads NCCL's C interface from the emulation's shim
// header instead (the same ABI; the library itself is opened by name at run time).
#pragma once

#include "kernels/cuda/emu/cuda_emu.hpp"
#include "kernels/cuda/emu/nccl_emu.h"
