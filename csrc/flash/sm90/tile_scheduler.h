// sm90 tile scheduler (core/tile_scheduler.h's WorkTile interface): one (query block, head, batch) tile per CTA,
// grid (query blocks, heads, batch), query blocks issued last to first so that the longest causal tiles start
// first.
#pragma once

#include <cuda_runtime.h>
#include <cutlass/cutlass.h>

#include "../core/tile_scheduler.h"

namespace flash::sm90 {

struct SingleTileScheduler {
  static dim3 grid(int num_m_blocks, int num_heads, int batch) { return dim3(num_m_blocks, num_heads, batch); }

  CUTLASS_DEVICE static WorkTile tile() {
    return WorkTile{int(gridDim.x - 1 - blockIdx.x), int(blockIdx.y), int(blockIdx.z)};
  }
};

}  // namespace flash::sm90
