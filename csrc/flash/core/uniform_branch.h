// A branch that ptxas keeps. It if-converts a plain `if` around element-wise tile code (ALiBi's bias,
// softcap's tanh) even when that code is hundreds of instructions, so that every tile issues it predicated
// off: a softcap call would pay for ALiBi's code and the reverse. A loop whose trip count the compiler cannot
// bound is never if-converted, so the condition goes through an opaque move.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

// Runs body() iff taken, which should be uniform across the warp (a per-call or per-head switch).
template <class Body>
CUTLASS_DEVICE void if_uniform(bool taken, Body&& body) {
  int trips = taken ? 1 : 0;
  asm volatile("mov.b32 %0, %0;" : "+r"(trips));  // hides that trips <= 1
#pragma unroll 1
  for (int i = 0; i < trips; ++i) { body(); }
}

}  // namespace flash
