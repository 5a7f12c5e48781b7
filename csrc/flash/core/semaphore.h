// Turn-taking between CTAs through an int32 counter in global memory, for deterministic accumulation:
// the CTA whose turn it is adds its contribution, then hands the turn to the next. Only thread 0 spins;
// the barriers extend its acquire/release to the whole CTA.
//
// Deadlock freedom relies on turns being granted in launch order: a CTA only ever waits for CTAs with a
// lower linear block index, which the hardware has already made resident (or finished). A turn is taken once the
// counter has reached it and handed on by adding 1, not by storing the next turn: if bad index tensors ever make two
// chains share a counter, their order is lost but neither waits forever.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

CUTLASS_DEVICE int load_acquire(int const* ptr) {
  int value;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(value) : "l"(ptr) : "memory");
  return value;
}

CUTLASS_DEVICE void store_release(int* ptr, int value) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(ptr), "r"(value) : "memory");
}

CUTLASS_DEVICE void wait_for_turn(int const* counter, int turn) {
  if (threadIdx.x == 0) {
    while (load_acquire(counter) < turn) {}
  }
  __syncthreads();
}

// Every thread's earlier global writes (including reductions) become visible before the next turn starts:
// the barrier orders them before thread 0's release, which is cumulative.
CUTLASS_DEVICE void pass_turn(int* counter) {
  __syncthreads();
  if (threadIdx.x == 0) { asm volatile("red.release.gpu.global.add.s32 [%0], 1;" ::"l"(counter) : "memory"); }
}

}  // namespace flash
