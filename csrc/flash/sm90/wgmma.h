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

// wgmma_wait for a batch that work in between is meant to overlap: the wait stays behind the work that produced
// `done` (e.g. the softmax's row sums). ptxas schedules a wgmma wait as early as its basic block allows; the
// overlapped consumers' P·V wait went above the whole softmax meant to run under that GEMM (seen in the SASS). Here
// it sits behind a branch on a warp vote that reads `done`. The vote is always true (lane 0 votes yes), so every
// thread of the warpgroup takes the first wait, as the .aligned wait requires; the second is never reached but
// gives ptxas a wait on every path (with only one, conditional, it serialises the GEMMs instead). The two asm
// strings differ so that the compiler cannot merge the waits back above the branch.
template <int kPending, class Done, class... Frags>
CUTE_DEVICE void wgmma_wait_behind(Done const& done, Frags&... frags) {
  float sum = 0.f;
  CUTE_UNROLL
  for (int i = 0; i < size(done); ++i) { sum += done(i); }
  if (__any_sync(0xffffffffu, (threadIdx.x % 32 == 0) | (sum >= 0.f))) {
    asm volatile("wgmma.wait_group.sync.aligned %0;  // taken\n" ::"n"(kPending) : "memory");
  } else {
    asm volatile("wgmma.wait_group.sync.aligned %0;  // never taken\n" ::"n"(kPending) : "memory");
  }
  (warpgroup_fence_operand(frags), ...);
}

}  // namespace flash::sm90
