// The emulation's context switch between a block's fibers (cuda_emu.cpp). swapcontext
// saves and restores the signal mask with a system call on every switch, and a kernel
// switches at least twice per CUDA thread (a head matmul has millions): that call was
// nine tenths of an emulated model's run time. On x86-64 the switch is a few
// instructions of assembly (the callee-saved registers, the stack pointer, and the
// floating-point control words); elsewhere it stays ucontext.
#pragma once

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace baton::cuda_emu {

/// A suspended context: where to resume it.
struct fiber_context {
#if defined(__x86_64__)
  void* sp = nullptr;  ///< its stack pointer, its registers saved below it
#else
  ucontext_t uc{};
#endif
};

/// Prepares `c` so that the first switch to it calls `entry(arg)` on the `bytes` of
/// `stack`. `entry` must never return.
void make_fiber_context(fiber_context& c, void* stack, size_t bytes, void (*entry)(int), int arg);

/// Saves the running context in `from` and resumes `to`; returns when something switches
/// back to `from`.
void switch_fiber(fiber_context& from, const fiber_context& to);

}  // namespace baton::cuda_emu
