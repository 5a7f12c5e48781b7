// One warpgroup-wide GEMM on wgmma: acc (+)= A · B over the K mode of the operand fragments, issued as one
// committed batch. Operands are shared-memory descriptors (SS) or, for A, registers (RS). The caller decides when
// to wait (warpgroup_wait<N>), so the next GEMM or other work can overlap this one.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>

namespace flash::sm90 {

using namespace cute;

// kClear: the first instruction overwrites acc instead of accumulating into it.
template <bool kClear, class TiledMma, class FragA, class FragB, class Acc>
CUTE_DEVICE void wgmma_gemm(TiledMma& mma, FragA const& a, FragB const& b, Acc& acc) {
  warpgroup_fence_operand(acc);
  warpgroup_arrive();
  mma.accumulate_ = kClear ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
  CUTE_UNROLL
  for (int k = 0; k < size<2>(a); ++k) {
    cute::gemm(mma, a(_, _, k), b(_, _, k), acc);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
  warpgroup_fence_operand(acc);
}

// Waits until at most kPending committed batches of this warpgroup are in flight, then fences the fragments the
// finished batches wrote or read: the compiler may neither read them before the wait nor reuse their registers
// while a batch still reads them.
template <int kPending, class... Frags>
CUTE_DEVICE void wgmma_wait(Frags&... frags) {
  warpgroup_wait<kPending>();
  (warpgroup_fence_operand(frags), ...);
}

}  // namespace flash::sm90
