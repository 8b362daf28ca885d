// kernels/cuda/ops.cu compiled by the host compiler against the CPU emulation
// (cuda_emu.hpp, through kernels/cuda/portability.cuh), for the test-only
// baton_kernels_cuda_emu library.
#include "kernels/cuda/ops.cu"
