// Turn-taking of the two consumer warpgroups of the sm90 forward: each issues its GEMMs (overlapped consumers) or
// exponentiates (plain ones) only in its turn and then hands the turn over, so one warpgroup's softmax runs while
// the other's GEMMs do. Warpgroup w waits at named barrier kFirstBarrier + w (its 128 threads sync, the other
// warpgroup's 128 arrive). The turns alternate strictly: a warpgroup can hand over its next turn only after taking
// the other's, so no barrier ever collects two generations of arrivals. The turns start afresh with every tile, or
// (across_tiles, persistent CTAs) run on from one tile to the next: then warpgroup 0's first turn of a tile follows
// warpgroup 1's last one of the tile before, and each warpgroup's epilogue runs while the other takes its turns.
#pragma once

#include <cutlass/arch/barrier.h>
#include <cutlass/cutlass.h>

namespace flash::sm90 {

class PingPong {
 public:
  // warpgroup: 0 or 1, the consumer warpgroup. Warpgroup 0 goes first.
  CUTLASS_DEVICE PingPong(int warpgroup, bool across_tiles) : warpgroup_(warpgroup), across_tiles_(across_tiles) {
    if (across_tiles_ && warpgroup_ == 1) { arrive(0); }
  }

  // Before a tile's first turn, by both warpgroups: sections, how many turns each warpgroup takes in the tile (the
  // same for both; 0 for none).
  CUTLASS_DEVICE void begin_tile(int sections) {
    if (across_tiles_) { return; }
    sections_left_ = sections;
    if (warpgroup_ == 1 && sections > 0) { arrive(0); }
  }

  CUTLASS_DEVICE void wait_turn() const {
    cutlass::arch::NamedBarrier::sync(kThreads, kFirstBarrier + warpgroup_);
  }

  // At the end of a turn (its GEMMs issued, or its exponentials done). Tile by tile, warpgroup 1's last hand-over
  // is skipped: warpgroup 0 takes no turn after it (its first turn of the next tile is handed over in begin_tile).
  CUTLASS_DEVICE void pass_turn() {
    --sections_left_;
    if (warpgroup_ == 0 || across_tiles_ || sections_left_ > 0) { arrive(1 - warpgroup_); }
  }

  // After the CTA's last tile: across tiles, warpgroup 0 takes the turn warpgroup 1 handed over last (or, where
  // there was no section at all, in the constructor), so that no arrival is left on a barrier.
  CUTLASS_DEVICE void finish() const {
    if (across_tiles_ && warpgroup_ == 0) { wait_turn(); }
  }

 private:
  static constexpr int kThreads = 256;
  static constexpr int kFirstBarrier = 0;  // NamedBarrier ids above CUTLASS's reserved ones

  CUTLASS_DEVICE static void arrive(int warpgroup) {
    cutlass::arch::NamedBarrier::arrive(kThreads, kFirstBarrier + warpgroup);
  }

  int warpgroup_;
  bool across_tiles_;
  int sections_left_ = 0;
};

}  // namespace flash::sm90
