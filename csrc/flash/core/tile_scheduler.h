// The tile-scheduler interface of every architecture's kernels. A scheduler decides which work tiles a CTA
// computes and in which order: a tile is a (block, head, batch[, split]) of the call, with block a query block
// (forward) or a key block (backward). Kernels are written as
//   Scheduler::for_each_tile(params..., [&](WorkTile const& tile) { ...; return tile_existed; });
// A body returns false for a tile past its sequence's end, which ends the CTA's work. Schedulers differ per
// architecture (sm80: one tile per CTA plus the blocks an understated varlen max_seqlen leaves beyond the grid;
// sm90: persistent CTAs), the interface does not.
#pragma once

namespace flash {

struct WorkTile {
  int block;      // query block (forward) or key block (backward) within the sequence
  int head;       // query head (forward), KV head (backward, split-KV)
  int batch;
  int split = 0;  // key split (split-KV forward)
};

}  // namespace flash
