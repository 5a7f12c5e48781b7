// sm90 tile schedulers (core/tile_scheduler.h's WorkTile interface). A scheduler is built on the host from the
// call's tile counts (Arguments, a kernel parameter) and on the device walks the CTA's tiles with next().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cutlass/cutlass.h>

#include "../core/tile_scheduler.h"

namespace flash::sm90 {

// The tile counts of a call and the launch's shape.
struct TileCounts {
  int num_m_blocks;  // query blocks per (head, batch): the grid's, sized by max_seqlen_q for varlen
  int num_heads;
  int batch;
};

// One tile per CTA: grid (query blocks, heads, batch), query blocks last to first so that the longest causal tiles
// start first and the CTAs resident at one time share a head's K/V in L2.
class SingleTileScheduler {
 public:
  struct Arguments {};

  static Arguments make_arguments(TileCounts const&) { return {}; }

  static dim3 grid(TileCounts const& counts, int /*num_sms*/) {
    return dim3(counts.num_m_blocks, counts.num_heads, counts.batch);
  }

  CUTLASS_DEVICE SingleTileScheduler(TileCounts const&, Arguments const&) {}

  // The CTA's tile, once; false after it.
  CUTLASS_DEVICE bool next(WorkTile& tile) {
    if (done_) { return false; }
    tile = WorkTile{int(gridDim.x - 1 - blockIdx.x), int(blockIdx.y), int(blockIdx.z)};
    done_ = true;
    return true;
  }

 private:
  bool done_ = false;
};

// Persistent CTAs, at most one per SM (a CTA takes most of an SM's shared memory). Work goes out in slots: slot j
// of a (head, batch) pair is its query blocks M-1-j and j (M query blocks; the middle block alone when M is odd),
// whose causal lengths add up to the same total for every j. CTA i of G takes slots i, i + G, i + 2G, ..., each
// slot's long block first: every CTA gets the same work to within one slot, causal or not, and slots go out pair
// by pair, so the CTAs running at one time read the K/V of a few heads, which stay in L2.
class StaticPersistentScheduler {
 public:
  struct Arguments {};

  static Arguments make_arguments(TileCounts const&) { return {}; }

  static dim3 grid(TileCounts const& counts, int num_sms) {
    int64_t const slots = int64_t((counts.num_m_blocks + 1) / 2) * counts.num_heads * counts.batch;
    return dim3(unsigned(slots < num_sms ? slots : num_sms));
  }

  CUTLASS_HOST_DEVICE StaticPersistentScheduler(TileCounts const& counts, Arguments const&)
      : num_m_blocks_(counts.num_m_blocks), num_heads_(counts.num_heads),
        slots_per_pair_((counts.num_m_blocks + 1) / 2),
        num_slots_(uint32_t((counts.num_m_blocks + 1) / 2) * uint32_t(counts.num_heads) * uint32_t(counts.batch)) {}

  // The CTA's next tile; false when it has none left.
  CUTLASS_DEVICE bool next(WorkTile& tile) { return next(tile, blockIdx.x, gridDim.x); }

  // The same for CTA cta of ctas (host-testable). 32-bit arithmetic (the producer thread runs this on 24
  // registers): a call's slots number fewer than its query rows times heads over 128, far below 2^32 for any
  // tensor that fits in GPU memory.
  CUTLASS_HOST_DEVICE bool next(WorkTile& tile, uint32_t cta, uint32_t ctas) {
    for (;;) {
      uint32_t const slot = (step_ >> 1) * ctas + cta;
      if (slot >= num_slots_) { return false; }
      bool const second = step_ & 1;
      ++step_;
      uint32_t const pair = slot / slots_per_pair_;
      int const j = int(slot - pair * slots_per_pair_);
      int const block = second ? j : num_m_blocks_ - 1 - j;
      if (second && block == num_m_blocks_ - 1 - j) { continue; }  // the middle block of an odd M: one tile
      tile = WorkTile{block, int(pair % uint32_t(num_heads_)), int(pair / uint32_t(num_heads_))};
      return true;
    }
  }

 private:
  int num_m_blocks_;
  int num_heads_;
  uint32_t slots_per_pair_;
  uint32_t num_slots_;
  uint32_t step_ = 0;  // two per slot: its long block, then its short one
};

}  // namespace flash::sm90
