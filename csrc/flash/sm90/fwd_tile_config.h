// Tile sizes of the sm90 forward per head-dim bucket, one table for the kernel and the host heuristics.
// kBlockM = 64 query rows per consumer warpgroup; K/V tiles of kBlockN keys stream through kStages buffers.
#pragma once

namespace flash::sm90 {

struct FwdTile {
  int block_m;
  int block_n;
  int stages;
};

constexpr FwdTile fwd_tile(int head_dim) {
  if (head_dim <= 64) { return {128, 128, 2}; }
  if (head_dim <= 128) { return {128, 128, 2}; }
  if (head_dim <= 192) { return {128, 96, 2}; }
  return {128, 80, 2};
}

}  // namespace flash::sm90
