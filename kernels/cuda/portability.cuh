// The one include through which kernels/cuda reaches CUDA: under nvcc the toolkit's
// headers, and under the host compiler with BATON_CUDA_EMU the CPU emulation
// (kernels/cuda/emu), so the same .cu sources build for a GPU and for CI machines
// without one. BATON_LAUNCH is the one launch form both accept: g++ cannot parse
// `kernel<<<grid, block, shmem, stream>>>(args)`, so every launch site is written
// `BATON_LAUNCH(grid, block, shmem, stream, kernel)(args)` (the kernel last, since a
// template's argument list holds commas).
#pragma once

#if defined(BATON_CUDA_EMU)
#include "kernels/cuda/emu/cuda_emu.hpp"
#define BATON_LAUNCH(grid, block, shmem, stream, ...) \
  ::baton::cuda_emu::make_launcher((grid), (block), (shmem), (stream), __VA_ARGS__)
#else
#include <cuda_runtime.h>
#define BATON_LAUNCH(grid, block, shmem, stream, ...) \
  __VA_ARGS__<<<grid, block, shmem, stream>>>
#endif
