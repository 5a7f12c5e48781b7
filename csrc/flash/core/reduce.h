// Reductions across the threads that share one accumulator row. On both the m16n8 (sm80) and the
// wgmma (sm90) accumulator layouts a row is spread over the 4 lanes of a quad.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>

namespace flash {

struct MaxOp {
  CUTLASS_HOST_DEVICE float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  CUTLASS_HOST_DEVICE float operator()(float a, float b) const { return a + b; }
};

template <class Op>
CUTLASS_DEVICE float quad_allreduce(float x, Op op) {
  x = op(x, __shfl_xor_sync(0xffffffffu, x, 2));
  x = op(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return x;
}

// Row r of a thread's (rows, cols) register tensor reduced by op in kChains independent chains (column c feeds
// chain c % kChains), combined pairwise at the end: the chains' instructions do not wait on each other.
template <int kChains, class Tensor, class Op>
CUTLASS_HOST_DEVICE float reduce_row(Tensor const& t, int r, Op op) {
  constexpr int kCols = decltype(cute::size<1>(t))::value;
  constexpr int kN = kCols < kChains ? kCols : kChains;
  float chain[kN];
  CUTLASS_PRAGMA_UNROLL
  for (int i = 0; i < kN; ++i) { chain[i] = t(r, i); }
  CUTLASS_PRAGMA_UNROLL
  for (int c = kN; c < kCols; ++c) { chain[c % kN] = op(chain[c % kN], t(r, c)); }
  // Fold the upper half of the n live chains onto the lower (the middle one of an odd n stays), until one is left.
  CUTLASS_PRAGMA_UNROLL
  for (int n = kN; n > 1; n = (n + 1) / 2) {
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < n / 2; ++i) { chain[i] = op(chain[i], chain[i + (n + 1) / 2]); }
  }
  return chain[0];
}

// Across the whole warp (every lane ends with the result).
template <class Op>
CUTLASS_DEVICE float warp_allreduce(float x, Op op) {
  CUTLASS_PRAGMA_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) { x = op(x, __shfl_xor_sync(0xffffffffu, x, offset)); }
  return x;
}

}  // namespace flash
