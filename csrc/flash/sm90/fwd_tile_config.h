// Tile sizes and consumer schedule of the sm90 forward per head-dim bucket, one table for the kernel and the host
// heuristics. kBlockM = 64 query rows per consumer warpgroup; K/V tiles of kBlockN keys stream through kStages
// buffers. overlap: the overlapped consumers (FwdMainloop::mma_overlapped) serve the bucket by default; measured on
// H100 (benchmarks/NOTES.md, 2026-12-05) they gain 5-20% from d 128 up and lose up to 20% at d 64, where the
// softmax is too short to hide a GEMM. persistent: persistent CTAs (balanced slots, tile_scheduler.h); measured on
// H100 (NOTES, 2026-12-06) they gain 2-23% at d 64 (most on short sequences, within noise at 16k) and are mixed
// from d 128 up. persistent_max_keys: persistent CTAs also for calls of at most this many keys per sequence
// (seqlen_k, the grid's bound for varlen), whose tiles are short enough that overlapping a tile's start with the
// last one's end pays: at d 128 with the overlapped consumers +10% at s 1k, +5-8% at 2k, -2..-4% at 4k and 16k
// (NOTES, second and third sessions of 2026-12-06); at d 256 -13% at 1k. tall_block_m: a taller query tile (three
// consumer warpgroups, plain consumers: PingPong pairs two; 0: none), the default except for windowed (causal)
// calls of at most tall_min_window_keys keys; FLASH_ATTN_SM90_FWD_TALL=1 / 0 forces it on / off. At d 64 the 192-row
// tile (160 registers per consumer thread, no spills) measured +8% at 1k, +13-26% at 4k and 16k, -11% at 1k
// causal (NOTES, third session of 2026-12-06).
#pragma once

namespace flash::sm90 {

struct FwdTile {
  int block_m;
  int block_n;
  int stages;
  bool overlap;
  bool persistent;
  int persistent_max_keys;
  int tall_block_m;
  int tall_min_window_keys;
};

constexpr FwdTile fwd_tile(int head_dim) {
  if (head_dim <= 64) { return {128, 128, 2, false, true, 0, 192, 1025}; }
  if (head_dim <= 96) { return {128, 128, 2, false, false, 0, 0, 0}; }  // d 96 not measured: d 64's consumers
  if (head_dim <= 128) { return {128, 128, 2, true, false, 2048, 0, 0}; }
  if (head_dim <= 192) { return {128, 96, 2, true, false, 0, 0, 0}; }
  return {128, 80, 2, true, false, 0, 0, 0};
}

// The variant a call runs unless the FLASH_ATTN_SM90_FWD_* switches say otherwise (fwd_launch.h): the bucket's
// consumers, persistent CTAs where the table has them or the call's keys are few, the tall tile where the table has
// one and the call is not a short windowed one. seqlen_k: the call's keys per sequence (varlen: max_seqlen_k).
struct FwdVariant {
  bool overlap;
  bool persistent;
  bool tall;
};

constexpr FwdVariant default_variant(FwdTile const& tile, bool has_window, int seqlen_k) {
  return {tile.overlap, tile.persistent || seqlen_k <= tile.persistent_max_keys,
          tile.tall_block_m > 0 && (!has_window || seqlen_k >= tile.tall_min_window_keys)};
}

// Whether a GQA call (head_ratio query heads per KV head) runs in packed tiles (tile_rows.h): where they number at
// most 4/5 of the plain tiles, i.e. short queries, whose plain tiles are mostly rows past the sequence. (Calls of
// at most 64 packed rows take the split-KV kernel before this: host/split_plan.h.) kPackGqaByDefault: whether the
// rule applies without FLASH_ATTN_SM90_FWD_PACK_GQA (validated on an H100, benchmarks/NOTES.md, fourth session of
// 2026-12-06: 1.3x at 32-64 queries over an 8k cache).
inline constexpr bool kPackGqaByDefault = true;

constexpr bool pack_gqa_pays(int seqlen_q, int head_ratio, int block_m) {
  long long const plain = (long long)head_ratio * ((seqlen_q + block_m - 1) / block_m);
  long long const packed = ((long long)seqlen_q * head_ratio + block_m - 1) / block_m;
  return head_ratio > 1 && packed * 5 <= plain * 4;
}

}  // namespace flash::sm90
