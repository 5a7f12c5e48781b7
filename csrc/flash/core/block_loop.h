// Kernels whose CTAs may take more than one block (a varlen sequence longer than the grid's max_seqlen: see
// seqlen.h) loop over a block body that is written for one block. A loop lets the compiler hoist the body's
// address arithmetic out of it (everything derived from threadIdx / blockIdx is loop-invariant), and those hoisted
// values then stay live across the whole body: at 255 registers the forward spilled 5x more and ran 5% slower.
// Reading the indices through these opaque reads inside the body keeps that arithmetic where it is used.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

CUTLASS_DEVICE int opaque_thread_idx() {
  unsigned x;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(x));
  return int(x);
}

CUTLASS_DEVICE int opaque_block_idx_x() {
  unsigned x;
  asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(x));
  return int(x);
}

}  // namespace flash
