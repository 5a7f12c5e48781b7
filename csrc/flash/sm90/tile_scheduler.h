// sm90 tile schedulers (core/tile_scheduler.h's WorkTile interface). The tile list is (query block, head, batch)
// with query blocks fastest and last to first, so that the longest causal tiles start first and the CTAs running
// at one time share a head's K/V in L2.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cutlass/cutlass.h>

#include "../core/tile_scheduler.h"

namespace flash::sm90 {

// One tile per CTA: grid (query blocks, heads, batch).
class SingleTileScheduler {
 public:
  static dim3 grid(int num_m_blocks, int num_heads, int batch, int /*num_sms*/) {
    return dim3(num_m_blocks, num_heads, batch);
  }

  CUTLASS_DEVICE SingleTileScheduler(int /*num_m_blocks*/, int /*num_heads*/, int /*batch*/) {}

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

// Persistent CTAs, at most one per SM (a CTA's tiles take most of an SM's shared memory): CTA i computes tiles
// i, i + grid, i + 2 grid, ... of the list, so the producer loads the next tile while the consumers finish this
// one and no CTA pays a launch per tile.
class StaticPersistentScheduler {
 public:
  static dim3 grid(int num_m_blocks, int num_heads, int batch, int num_sms) {
    int64_t const tiles = int64_t(num_m_blocks) * num_heads * batch;
    return dim3(unsigned(tiles < num_sms ? tiles : num_sms));
  }

  CUTLASS_DEVICE StaticPersistentScheduler(int num_m_blocks, int num_heads, int batch)
      : num_m_blocks_(num_m_blocks), num_heads_(num_heads), num_tiles_(int64_t(num_m_blocks) * num_heads * batch),
        next_(blockIdx.x) {}

  // The CTA's next tile; false when it has none left.
  CUTLASS_DEVICE bool next(WorkTile& tile) {
    if (next_ >= num_tiles_) { return false; }
    int64_t const head_batch = next_ / num_m_blocks_;
    tile.block = num_m_blocks_ - 1 - int(next_ - head_batch * num_m_blocks_);
    tile.head = int(head_batch % num_heads_);
    tile.batch = int(head_batch / num_heads_);
    next_ += gridDim.x;
    return true;
  }

 private:
  int num_m_blocks_;
  int num_heads_;
  int64_t num_tiles_;
  int64_t next_;
};

}  // namespace flash::sm90
