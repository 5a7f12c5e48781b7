// Tile sizes and consumer schedule of the sm90 forward per head-dim bucket, one table for the kernel and the host
// heuristics. kBlockM = 64 query rows per consumer warpgroup; K/V tiles of kBlockN keys stream through kStages
// buffers. The choices below were measured with CUDA graphs on an H100 (benchmarks/NOTES.md, sessions of
// 2026-12-05 and 2026-12-06; the last table is the sixth session's).
//   overlap: the overlapped consumers (FwdMainloop::mma_overlapped) for long tiles: they gain 5-20% from d 128 up
//     and lose up to 20% at d 64, where the softmax is too short to hide a GEMM.
//   persistent: persistent CTAs (balanced slots, tile_scheduler.h) for every fixed-length call: d 64 and d 96,
//     +5-50% at 512-2k keys, even at 16k.
//   plain_max_keys / plain_max_window_keys: calls of at most this many keys per sequence (windowed: causal or local)
//     run the plain consumers in persistent CTAs. Their tiles are too short for the overlapped schedule's fill and
//     drain to pay: d 128 +4-21% at 512, +28-36% at 512 causal, +2-4% at 1k, +9-20% at 1k causal, +2-5% at 2k
//     causal; d 256 +20% at 512.
//   persistent_max_keys: calls of at most this many keys keep the overlapped consumers but in persistent CTAs
//     (a tile's start overlaps the last one's end): d 128 and d 192 +0-10% up to 2k, -2..-4% at 4k; d 256 -13% at 1k.
//   Varlen calls (cu_seqlens) never run the 128-row tile in persistent CTAs: static slots cut by the longest
//     sequence leave CTAs idle (d 128 at 1k-4k tokens a sequence: -15..-35% against one tile per CTA), so they run
//     the bucket's consumers one tile per CTA.
//   tall_block_m: a taller query tile (three consumer warpgroups, plain consumers: PingPong pairs two; 0: none) for
//     calls of at least tall_min_keys keys (windowed: tall_min_window_keys); FLASH_ATTN_SM90_FWD_TALL=1 / 0 forces
//     it on / off. At d 64 the 192-row tile (no spills) +8% at 1k, +13-26% at 4k and 16k, but -20% at 512 (a third
//     of its last tile idle) and -5..-11% at 1k-2k causal. It stays persistent for varlen calls, where it gains.
#pragma once

namespace flash::sm90 {

struct FwdTile {
  int block_m;
  int block_n;
  int stages;
  bool overlap;
  bool persistent;
  int plain_max_keys;
  int plain_max_window_keys;
  int persistent_max_keys;
  int tall_block_m;
  int tall_min_keys;
  int tall_min_window_keys;
};

constexpr FwdTile fwd_tile(int head_dim) {
  //       block_m  n  stages overlap persistent plain_max(,window) persistent_max tall(_min, _min_window)
  if (head_dim <= 64) { return {128, 128, 2, false, true, 0, 0, 0, 192, 1024, 2049}; }
  if (head_dim <= 96) { return {128, 128, 2, false, true, 0, 0, 0, 0, 0, 0}; }
  if (head_dim <= 128) { return {128, 128, 2, true, false, 1024, 2048, 2048, 0, 0, 0}; }
  if (head_dim <= 192) { return {128, 96, 2, true, false, 0, 0, 2048, 0, 0, 0}; }
  return {128, 80, 2, true, false, 512, 0, 0, 0, 0, 0};
}

// The variant a call runs unless the FLASH_ATTN_SM90_FWD_* switches say otherwise (fwd_launch.h), by the rules of
// the table above. seqlen_k: the call's keys per sequence (varlen: max_seqlen_k); varlen: cu_seqlens given.
struct FwdVariant {
  bool overlap;
  bool persistent;
  bool tall;
};

constexpr FwdVariant default_variant(FwdTile const& tile, bool has_window, int seqlen_k, bool varlen) {
  bool const tall =
      tile.tall_block_m > 0 && seqlen_k >= (has_window ? tile.tall_min_window_keys : tile.tall_min_keys);
  if (tall) { return {false, tile.persistent, true}; }
  if (varlen) { return {tile.overlap, false, false}; }
  bool const short_tiles = seqlen_k <= (has_window ? tile.plain_max_window_keys : tile.plain_max_keys);
  return {tile.overlap && !short_tiles, tile.persistent || short_tiles || seqlen_k <= tile.persistent_max_keys,
          false};
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
