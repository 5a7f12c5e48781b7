// Host-side choice of the forward kernel for short queries and of its number of key splits (params.h:
// num_splits). Host-only, no CuTe: included by the torch binding.
#pragma once

#include <algorithm>
#include <cstdint>

#include "dispatch.h"
#include "../core/params.h"
#include "../sm80/fwd_split_config.h"  // the split tile table the heuristic sizes by

namespace flash {

// Calls whose packed rows (seqlen_q x query heads per KV head) fit this many take the split-KV kernel: above it
// the main kernel's 128-row tiles use the tensor cores better than 16-row ones.
inline constexpr int64_t kSplitMaxPackedRows = 64;

// requested_splits: 0 = heuristic; > 1 forces the split-KV kernel (flash_attn_with_kvcache's num_splits).
inline bool use_split_kernel(FwdParams const& p, int64_t requested_splits) {
  if (p.has_dropout) { return false; }  // the split-KV kernel has no dropout
  if (p.batch > 65535 || p.num_heads_k > 65535) { return false; }  // its grid's y and z
  return requested_splits > 1 || int64_t(p.seqlen_q) * p.head_ratio <= kSplitMaxPackedRows;
}

// The split count with the shortest estimated run time: waves x (key blocks of the longest split + a CTA's fixed
// cost, about 1.5 key blocks of streaming at decode sizes: start-up latency and the warps' merge). The smallest
// count wins ties, as every split adds a partial output for the combine kernel to read.
inline int choose_num_splits(FwdParams const& p, int num_sms, int smem_per_sm) {
  int const bucket = head_dim_bucket(p.head_dim);
  sm80::FwdSplitTile const tile = sm80::fwd_split_tile(bucket);
  int const ctas_per_sm = std::clamp(smem_per_sm / (sm80::fwd_split_smem_bytes(bucket) + 1024), 1, 4);
  int64_t const m_blocks = (int64_t(p.seqlen_q) * p.head_ratio + sm80::kFwdSplitBlockM - 1) / sm80::kFwdSplitBlockM;
  int64_t const ctas = m_blocks * p.num_heads_k * p.batch;
  int64_t const key_blocks = (int64_t(p.seqlen_k) + tile.block_n - 1) / tile.block_n;
  int const max_splits = static_cast<int>(std::min<int64_t>(kMaxSplits, key_blocks / 2));  // >= 2 blocks each
  int64_t const slots = int64_t(std::max(num_sms, 1)) * ctas_per_sm;
  int best_splits = 1;
  double best_cost = 0.0;
  for (int s = 1; s <= std::max(max_splits, 1); ++s) {
    int64_t const waves = (ctas * s + slots - 1) / slots;
    int64_t const blocks_per_split = (key_blocks + s - 1) / s;
    double const cost = double(waves) * (double(blocks_per_split) + 1.5);
    if (s == 1 || cost < best_cost) { best_cost = cost, best_splits = s; }
  }
  return best_splits;
}

}  // namespace flash
