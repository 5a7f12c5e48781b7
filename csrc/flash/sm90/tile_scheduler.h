// sm90 tile schedulers (core/tile_scheduler.h's WorkTile interface). A scheduler is built on the host from the
// call's tile counts (Arguments, a kernel parameter) and on the device walks the CTA's tiles with next().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cutlass/cutlass.h>

#include "../core/seqlen.h"
#include "../core/tile_scheduler.h"

namespace flash::sm90 {

// The tile counts of a call and the launch's shape.
struct TileCounts {
  int num_m_blocks;  // query blocks per (head, batch): the grid's, sized by max_seqlen_q for varlen
  int num_heads;
  int batch;
  // Varlen: the query prefix sums (nullptr: dense), the packed rows and the query tile, from which a scheduler may
  // count each sequence's own query blocks.
  int const* cu_seqlens_q = nullptr;
  int total_q = 0;
  int block_m = 0;
};

// One tile per CTA, each sequence's query blocks last to first so that the longest causal tiles start first and the
// CTAs resident at one time share a head's K/V in L2: grid (query blocks, heads, batch). A varlen call of at most
// kMaxCompactBatch sequences whose tile counts carry the query prefix sums (fwd_launch.h passes them under
// FLASH_ATTN_SM90_FWD_COMPACT_VARLEN=1) instead gets a compact grid (a bound on its real query blocks, heads), CTA x
// taking the x-th real block with the sequences longest first (prepare): a grid sized by max_seqlen_q launches a
// CTA, with all its shared memory, for every block past a shorter sequence's end too (a third of them for lengths
// spread over [mean / 2, 3 mean / 2]). One warp finds a CTA's block among 32 sequences at once; more sequences keep
// the max_seqlen_q grid, whose empty CTAs cost less than a longer search in every CTA.
class SingleTileScheduler {
 public:
  struct Arguments {};
  static constexpr int kMaxCompactBatch = 32;

  static Arguments make_arguments(TileCounts const&) { return {}; }

  CUTLASS_HOST_DEVICE static bool compact(TileCounts const& counts) {
    return counts.cu_seqlens_q != nullptr && counts.batch <= kMaxCompactBatch;
  }

  static dim3 grid(TileCounts const& counts, int /*num_sms*/) {
    if (compact(counts)) {
      // Each sequence's blocks hold its rows plus at most one part-filled block: the sum is at most this bound
      // (whatever max_seqlen_q says).
      return dim3(unsigned(counts.total_q / counts.block_m + counts.batch), counts.num_heads, 1);
    }
    return dim3(counts.num_m_blocks, counts.num_heads, counts.batch);
  }

  CUTLASS_DEVICE SingleTileScheduler(TileCounts const& counts, Arguments const&) : counts_(counts) {}

  // Finds the CTA's tile. Warp-collective: every thread of a warp calls it, before next().
  CUTLASS_DEVICE void prepare() {
    stride_ = counts_.num_m_blocks;
    if (!compact(counts_)) {
      tile_ = WorkTile{int(gridDim.x - 1 - blockIdx.x), int(blockIdx.y), int(blockIdx.z)};
      has_tile_ = true;
      return;
    }
    // One sequence per lane, longest first (ties: lower index first), so that the longest tiles do not run last:
    // a sequence's blocks follow those of every sequence ordered before it; the lane whose blocks hold x owns the
    // CTA's tile.
    int const lane = int(threadIdx.x % 32);
    int const blocks = sequence_blocks(lane);
    int total = 0;
    int const start = longest_first_start(lane, blocks, [&](int other) {
      int const other_blocks = __shfl_sync(0xffffffffu, blocks, other);
      total += other_blocks;
      return other_blocks;
    });
    int const x = int(blockIdx.x);
    if (total > int(gridDim.x)) {
      // Only sequences that overlap (cu_seqlens not increasing) hold more blocks than the grid's bound: then CTA x
      // takes sequence x % batch and its blocks x / batch, x / batch + G, ... (G = gridDim.x / batch), so every
      // block is still computed.
      int const per_sequence = int(gridDim.x) / counts_.batch;
      tile_ = WorkTile{x / counts_.batch, int(blockIdx.y), x % counts_.batch};
      has_tile_ = x < per_sequence * counts_.batch;
      stride_ = per_sequence;
      return;
    }
    stride_ = 0;
    unsigned const holder = __ballot_sync(0xffffffffu, x >= start && x < start + blocks);
    has_tile_ = holder != 0;  // else x is past the real blocks
    if (has_tile_) {
      int const owner = __ffs(holder) - 1;
      int const owner_end = __shfl_sync(0xffffffffu, start + blocks, owner);
      tile_ = WorkTile{owner_end - 1 - x, int(blockIdx.y), owner};  // the sequence's last block first
    }
  }

  // Where the blocks of sequence `lane` (of 32, `blocks` blocks) start when the sequences go longest first, ties
  // lower index first: after those of every sequence ordered before it. blocks_of(other) gives sequence other's
  // blocks, called for other = 0, 1, ..., 31 in turn (on the device a warp shuffle, so every lane calls it alike).
  template <class BlocksOf>
  CUTLASS_HOST_DEVICE static int longest_first_start(int lane, int blocks, BlocksOf&& blocks_of) {
    int start = 0;
    for (int other = 0; other < 32; ++other) {
      int const other_blocks = blocks_of(other);
      start += (other_blocks > blocks || (other_blocks == blocks && other < lane)) ? other_blocks : 0;
    }
    return start;
  }

  // Query blocks of varlen sequence b (0 past the last), from SeqlenInfo's clamps so that both count the same rows.
  CUTLASS_DEVICE int sequence_blocks(int b) const {
    if (b >= counts_.batch) { return 0; }
    int const start = clamp_index(counts_.cu_seqlens_q[b], 0, counts_.total_q);
    int const end = clamp_index(counts_.cu_seqlens_q[b + 1], start, counts_.total_q);
    return (end - start + counts_.block_m - 1) / counts_.block_m;
  }

  // The step from a tile's query block to the next block of its sequence that the same CTA computes (a sequence
  // longer than the grid's blocks for it: an understated max_seqlen_q), or 0 where the tiles list every block.
  CUTLASS_DEVICE int block_stride() const { return stride_; }

  // The CTA's tile, once; false after it.
  CUTLASS_DEVICE bool next(WorkTile& tile) {
    if (!has_tile_) { return false; }
    tile = tile_;
    has_tile_ = false;
    return true;
  }

 private:
  TileCounts counts_;
  WorkTile tile_{};
  bool has_tile_ = false;
  int stride_ = 0;
};

// Persistent CTAs, at most one per SM (a CTA takes most of an SM's shared memory). Work goes out in slots: slot j
// of a (head, batch) pair is its query blocks M-1-j and j (M query blocks; the middle block alone when M is odd),
// whose causal lengths add up to the same total for every j. CTA i of G takes slots i, i + G, i + 2G, ..., each
// slot's long block first: every CTA gets the same work to within one slot, causal or not, and slots go out pair
// by pair, so the CTAs running at one time read the K/V of a few heads, which stay in L2.
class StaticPersistentScheduler {
 public:
  struct Arguments {};

  static Arguments make_arguments(TileCounts const&) { return {}; }

  static dim3 grid(TileCounts const& counts, int num_sms) {
    int64_t const slots = int64_t((counts.num_m_blocks + 1) / 2) * counts.num_heads * counts.batch;
    return dim3(unsigned(slots < num_sms ? slots : num_sms));
  }

  CUTLASS_HOST_DEVICE StaticPersistentScheduler(TileCounts const& counts, Arguments const&)
      : num_m_blocks_(counts.num_m_blocks), num_heads_(counts.num_heads),
        slots_per_pair_((counts.num_m_blocks + 1) / 2),
        num_slots_(uint32_t((counts.num_m_blocks + 1) / 2) * uint32_t(counts.num_heads) * uint32_t(counts.batch)) {}

  CUTLASS_DEVICE void prepare() {}
  CUTLASS_DEVICE int block_stride() const { return num_m_blocks_; }  // SingleTileScheduler::block_stride

  // The CTA's next tile; false when it has none left.
  CUTLASS_DEVICE bool next(WorkTile& tile) { return next(tile, blockIdx.x, gridDim.x); }

  // The same for CTA cta of ctas (host-testable). 32-bit arithmetic (the producer thread runs this on 24
  // registers): a call's slots number fewer than its query rows times heads over 128, far below 2^32 for any
  // tensor that fits in GPU memory.
  CUTLASS_HOST_DEVICE bool next(WorkTile& tile, uint32_t cta, uint32_t ctas) {
    for (;;) {
      uint32_t const slot = (step_ >> 1) * ctas + cta;
      if (slot >= num_slots_) { return false; }
      bool const second = step_ & 1;
      ++step_;
      uint32_t const pair = slot / slots_per_pair_;
      int const j = int(slot - pair * slots_per_pair_);
      int const block = second ? j : num_m_blocks_ - 1 - j;
      if (second && block == num_m_blocks_ - 1 - j) { continue; }  // the middle block of an odd M: one tile
      tile = WorkTile{block, int(pair % uint32_t(num_heads_)), int(pair / uint32_t(num_heads_))};
      return true;
    }
  }

 private:
  int num_m_blocks_;
  int num_heads_;
  uint32_t slots_per_pair_;
  uint32_t num_slots_;
  uint32_t step_ = 0;  // two per slot: its long block, then its short one
};

}  // namespace flash::sm90
