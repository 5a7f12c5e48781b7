// Backward tile sizes per head-dim bucket: the one table to tune.
//   kBlockM x kBlockN: query rows x key rows per step; each CTA owns one key block and walks the query blocks.
//   kWarpsM_SdP: warps along M for S = Q·Kᵀ and dP = dO·Vᵀ (the rest along N).
//   kWarpsN_dKV: warps along N for dV += Pᵀ·dO and dK += dSᵀ·Q (the rest along the head dim).
//   kWarpsM_dQ: warps along M for dQ = dS·K (the rest along the head dim).
//   kStages: shared-memory buffers for the streamed Q and dO tiles (2 = next tiles load during this step).
// Shared memory is (2 kBlockN + 2 kStages kBlockM) d * 2 + 2 kBlockM kBlockN * 2 + 8 kStages kBlockM bytes: every
// entry fits the 163 KB an sm80 CTA may use (BwdTraits asserts it; sm90 allows 227 KB); d = 256 gives up the
// second stage for it. GPUs with 99 KB (sm86/sm89) get a clear error at launch. Measured on H100 (bf16, bwd):
// d = 64 with 128 x 128 tiles runs at 0.93-0.99x SDPA-flash against 0.82-0.89x with 64 x 128 (benchmarks/NOTES.md).
#pragma once

namespace flash::sm80 {

template <int kHeadDim>
struct BwdTileConfig;

template <> struct BwdTileConfig<32>  { static constexpr int kBlockM = 64,  kBlockN = 128, kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 4, kStages = 2; };
template <> struct BwdTileConfig<64>  { static constexpr int kBlockM = 128, kBlockN = 128, kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 4, kStages = 2; };
template <> struct BwdTileConfig<96>  { static constexpr int kBlockM = 64,  kBlockN = 128, kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 4, kStages = 2; };
template <> struct BwdTileConfig<128> { static constexpr int kBlockM = 64,  kBlockN = 128, kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 2, kStages = 2; };
template <> struct BwdTileConfig<192> { static constexpr int kBlockM = 64,  kBlockN = 64,  kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 2, kStages = 2; };
template <> struct BwdTileConfig<256> { static constexpr int kBlockM = 64,  kBlockN = 64,  kNWarps = 8, kWarpsM_SdP = 2, kWarpsN_dKV = 4, kWarpsM_dQ = 2, kStages = 1; };

}  // namespace flash::sm80
