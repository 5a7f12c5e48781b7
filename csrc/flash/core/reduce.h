// Reductions across the threads that share one accumulator row. On both the m16n8 (sm80) and the
// wgmma (sm90) accumulator layouts a row is spread over the 4 lanes of a quad.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

struct MaxOp {
  CUTLASS_DEVICE float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  CUTLASS_DEVICE float operator()(float a, float b) const { return a + b; }
};

template <class Op>
CUTLASS_DEVICE float quad_allreduce(float x, Op op) {
  x = op(x, __shfl_xor_sync(0xffffffffu, x, 2));
  x = op(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return x;
}

// Across the whole warp (every lane ends with the result).
template <class Op>
CUTLASS_DEVICE float warp_allreduce(float x, Op op) {
  CUTLASS_PRAGMA_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) { x = op(x, __shfl_xor_sync(0xffffffffu, x, offset)); }
  return x;
}

}  // namespace flash
