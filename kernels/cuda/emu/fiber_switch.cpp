// fiber_switch.hpp.
#include "kernels/cuda/emu/fiber_switch.hpp"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)

// baton_emu_switch(void** save_sp, void* load_sp): pushes the System V callee-saved
// registers and the MXCSR / x87 control words on the running stack, stores the stack
// pointer in *save_sp, loads load_sp and pops the same frame from it. A new context's
// frame (make_fiber_context) returns into baton_emu_fiber_start, which calls the entry
// held in r12 with the argument held in r13.
asm(R"(
  .text
  .p2align 4
  .type baton_emu_switch, @function
baton_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size baton_emu_switch, .-baton_emu_switch

  .p2align 4
  .type baton_emu_fiber_start, @function
baton_emu_fiber_start:
  movq %r13, %rdi
  callq *%r12
  ud2
  .size baton_emu_fiber_start, .-baton_emu_fiber_start
)");

extern "C" void baton_emu_switch(void** save_sp, void* load_sp);
extern "C" void baton_emu_fiber_start();

namespace baton::cuda_emu {

void make_fiber_context(fiber_context& c, void* stack, size_t bytes, void (*entry)(int), int arg) {
  // From the top of the stack down, the frame baton_emu_switch pops: the return address
  // (into baton_emu_fiber_start; it lands with the stack 16-byte aligned, as a call
  // expects), rbp, rbx, r12 = entry, r13 = arg, r14, r15, and the control words (the
  // caller's, so the fiber computes in the same rounding mode).
  auto top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top) - 8;
  frame[7] = reinterpret_cast<uint64_t>(&baton_emu_fiber_start);
  frame[6] = 0;                                     // rbp
  frame[5] = 0;                                     // rbx
  frame[4] = reinterpret_cast<uint64_t>(entry);     // r12
  frame[3] = static_cast<uint64_t>(static_cast<int64_t>(arg));  // r13
  frame[2] = 0;                                     // r14
  frame[1] = 0;                                     // r15
  uint32_t mxcsr = 0;
  uint16_t fpu_cw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_cw));
  frame[0] = 0;
  std::memcpy(reinterpret_cast<char*>(&frame[0]), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(&frame[0]) + 4, &fpu_cw, 2);
  c.sp = frame;
}

void switch_fiber(fiber_context& from, const fiber_context& to) {
  baton_emu_switch(&from.sp, to.sp);
}

}  // namespace baton::cuda_emu

#else  // ucontext elsewhere

namespace baton::cuda_emu {

void make_fiber_context(fiber_context& c, void* stack, size_t bytes, void (*entry)(int), int arg) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // a false alarm on ucontext_t's padding
  getcontext(&c.uc);
#pragma GCC diagnostic pop
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, reinterpret_cast<void (*)()>(entry), 1, arg);
}

void switch_fiber(fiber_context& from, const fiber_context& to) { swapcontext(&from.uc, &to.uc); }

}  // namespace baton::cuda_emu

#endif
