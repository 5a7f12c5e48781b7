// sm80 tile schedulers (core/tile_scheduler.h): one CTA per tile of the launch grid, no persistence. A varlen
// sequence longer than the grid's max_seqlen (an understated bound, seqlen.h) has more blocks than the grid: the CTAs
// of its batch take them in turn, every num_blocks-th block after their own.
#pragma once

#include <cuda_runtime.h>

#include <cute/tensor.hpp>

#include "../core/block_loop.h"
#include "../core/tile_scheduler.h"

namespace flash::sm80 {

// Grid (num_blocks * batch, heads): consecutive CTAs share one (batch, head) and its K/V in L2, and batch is not
// bound by the 65535 limit of grid.y/z. kLongestFirst: a sequence's blocks start from the last one (the longest
// causal rows of the forward first).
template <bool kLongestFirst>
struct SequenceBlockScheduler {
  static dim3 grid(int64_t num_blocks, int batch, int heads) {
    return dim3(static_cast<unsigned>(num_blocks * batch), static_cast<unsigned>(heads));
  }

  // Only the block is carried from one tile to the next; the batch is derived afresh from an opaque read
  // (block_loop.h), so the body's address arithmetic is not hoisted out of the loop.
  template <class Body>
  CUTE_DEVICE static void for_each_tile(int num_blocks, Body&& body) {
    int const own = int(blockIdx.x) % num_blocks;
    for (int block = kLongestFirst ? num_blocks - 1 - own : own;; block += num_blocks) {
      WorkTile const tile{block, int(blockIdx.y), opaque_block_idx_x() / num_blocks};
      if (!body(tile)) { break; }
      __syncthreads();  // the tile's epilogue is done with shared memory before the next tile loads
    }
  }
};

// The split-KV forward's grid (num_blocks * num_splits, KV heads, batch): each (packed query block, KV head, batch)
// tile in num_splits key ranges.
struct SplitScheduler {
  static dim3 grid(int64_t num_blocks, int num_splits, int kv_heads, int batch) {
    return dim3(static_cast<unsigned>(num_blocks * num_splits), static_cast<unsigned>(kv_heads),
                static_cast<unsigned>(batch));
  }

  // exists(block): whether the batch's sequence has that block (checked before each tile).
  template <class Exists, class Body>
  CUTE_DEVICE static void for_each_tile(int num_splits, Exists&& exists, Body&& body) {
    int const num_blocks = int(gridDim.x) / num_splits;
    int const first = int(blockIdx.x) / num_splits;
    int const split = int(blockIdx.x) - first * num_splits;
    for (int block = first; exists(block); block += num_blocks) {
      if (block != first) { __syncthreads(); }  // the previous tile's merge is done with shared memory
      body(WorkTile{block, int(blockIdx.y), int(blockIdx.z), split});
    }
  }
};

}  // namespace flash::sm80
