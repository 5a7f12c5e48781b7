// Turn-taking of the two consumer warpgroups of the sm90 forward: each issues its GEMMs only in its turn and then
// hands the turn over, so one warpgroup's softmax runs while the other's GEMMs do. Warpgroup w waits at named
// barrier kFirstBarrier + w (its 128 threads sync, the other warpgroup's 128 arrive). The turns alternate strictly:
// a warpgroup can hand over its next turn only after taking the other's, so no barrier ever collects two
// generations of arrivals.
#pragma once

#include <cutlass/arch/barrier.h>
#include <cutlass/cutlass.h>

namespace flash::sm90 {

class PingPong {
 public:
  // warpgroup: 0 or 1, the consumer warpgroup; sections: how many GEMM-issuing sections each warpgroup runs (the
  // same for both). Warpgroup 0 goes first.
  CUTLASS_DEVICE PingPong(int warpgroup, int sections) : warpgroup_(warpgroup), sections_left_(sections) {
    if (warpgroup_ == 1 && sections_left_ > 0) { arrive(0); }
  }

  CUTLASS_DEVICE void wait_turn() const {
    cutlass::arch::NamedBarrier::sync(kThreads, kFirstBarrier + warpgroup_);
  }

  // After the turn's GEMMs are issued. Warpgroup 1's last hand-over is skipped: warpgroup 0 takes no turn after it
  // (its first turn was handed over in the constructor).
  CUTLASS_DEVICE void pass_turn() {
    --sections_left_;
    if (warpgroup_ == 0 || sections_left_ > 0) { arrive(1 - warpgroup_); }
  }

 private:
  static constexpr int kThreads = 256;
  static constexpr int kFirstBarrier = 0;  // NamedBarrier ids above CUTLASS's reserved ones

  CUTLASS_DEVICE static void arrive(int warpgroup) {
    cutlass::arch::NamedBarrier::arrive(kThreads, kFirstBarrier + warpgroup);
  }

  int warpgroup_;
  int sections_left_;
};

}  // namespace flash::sm90
