// Forward tile sizes per head-dim bucket: the one table to tune. kBlockM x kBlockN, warps.
// Shared memory is (kBlockM + 2 kBlockN) * d * 2 bytes; d = 256 uses 128 KB (fits sm80 and sm90).
#pragma once

namespace flash::sm80 {

template <int kHeadDim, bool kHasWindow>
struct FwdTileConfig;

template <bool kHasWindow> struct FwdTileConfig<32, kHasWindow>  { static constexpr int kBlockM = 128, kBlockN = 128, kNWarps = 4; };
template <bool kHasWindow> struct FwdTileConfig<64, kHasWindow>  { static constexpr int kBlockM = 128, kBlockN = 64, kNWarps = 4; };
template <bool kHasWindow> struct FwdTileConfig<96, kHasWindow>  { static constexpr int kBlockM = 128, kBlockN = 64, kNWarps = 4; };
template <bool kHasWindow> struct FwdTileConfig<128, kHasWindow> { static constexpr int kBlockM = 128, kBlockN = 64, kNWarps = 4; };
template <bool kHasWindow> struct FwdTileConfig<192, kHasWindow> { static constexpr int kBlockM = 128, kBlockN = 64, kNWarps = 8; };
template <bool kHasWindow> struct FwdTileConfig<256, kHasWindow> { static constexpr int kBlockM = 128, kBlockN = 64, kNWarps = 8; };

}  // namespace flash::sm80
