// Tile sizes of the split-KV forward (sm80/fwd_split_kernel.h) per head-dim bucket: the one table to tune.
// Host-visible (no CuTe): the binding sizes the number of splits from it.
// A CTA holds 16 packed query rows and four warps, each taking a quarter of every kBlockN-key tile; kStages
// tiles of K and V are in flight, since these calls are bound by reading the cache. Shared memory is
// (16 + 2 kStages kBlockN) d 2 bytes: 100 KB at d 128 (two CTAs per SM), 128 KB at d 256.
#pragma once

namespace flash::sm80 {

inline constexpr int kFwdSplitBlockM = 16;  // packed (query, head-of-group) rows per CTA
inline constexpr int kFwdSplitWarps = 4;

struct FwdSplitTile {
  int block_n;
  int stages;
};

constexpr FwdSplitTile fwd_split_tile(int head_dim_bucket) {
  return head_dim_bucket <= 32    ? FwdSplitTile{256, 3}
         : head_dim_bucket <= 64  ? FwdSplitTile{128, 3}
         : head_dim_bucket <= 128 ? FwdSplitTile{64, 3}
                                  : FwdSplitTile{64, 2};
}

constexpr int fwd_split_smem_bytes(int head_dim_bucket) {
  return (kFwdSplitBlockM + 2 * fwd_split_tile(head_dim_bucket).stages * fwd_split_tile(head_dim_bucket).block_n) *
         head_dim_bucket * 2;
}

}  // namespace flash::sm80
