// Which key blocks a query block has to visit. Attention may be limited to a window around the
// bottom-right-aligned diagonal: query row i sees key j iff
//   i + (seqlen_k - seqlen_q) - window_left <= j <= i + (seqlen_k - seqlen_q) + window_right.
// Causal attention is the window (unbounded, 0); an unbounded side is passed as 2^30, which no distance
// reaches. Without kHasWindow every key is visible and the window arguments are ignored.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

template <int kBlockM, int kBlockN, bool kHasWindow>
struct BlockRange {
  // Half-open range [n_block_min, n_block_max) of key blocks touched by query rows [q_first, q_last] (empty when
  // n_block_max <= n_block_min). A packed GQA tile passes the queries of its first and last rows (PackedRows).
  CUTLASS_DEVICE static void key_blocks_for_rows(int q_first, int q_last, int seqlen_q, int seqlen_k, int window_left,
                                                 int window_right, int& n_block_min, int& n_block_max) {
    n_block_min = 0;
    n_block_max = (seqlen_k + kBlockN - 1) / kBlockN;
    if constexpr (kHasWindow) {
      int const shift = seqlen_k - seqlen_q;
      // One past the last key visible to the last row; may be <= 0 when sq > sk.
      int const key_end = q_last + 1 + shift + window_right;
      int const right_max = key_end <= 0 ? 0 : (key_end + kBlockN - 1) / kBlockN;
      n_block_max = right_max < n_block_max ? right_max : n_block_max;
      // First key visible to the first row.
      int const key_begin = q_first + shift - window_left;
      n_block_min = key_begin <= 0 ? 0 : key_begin / kBlockN;
    }
  }

  // The key blocks of query block m_block (rows m_block * kBlockM ... + kBlockM - 1).
  CUTLASS_DEVICE static void key_blocks(int m_block, int seqlen_q, int seqlen_k, int window_left, int window_right,
                                        int& n_block_min, int& n_block_max) {
    key_blocks_for_rows(m_block * kBlockM, (m_block + 1) * kBlockM - 1, seqlen_q, seqlen_k, window_left,
                        window_right, n_block_min, n_block_max);
  }

  // The inverse, for the backward pass: half-open range [m_block_min, m_block_max) of query blocks
  // that see key block n_block. Query block m is in it exactly when n_block is in key_blocks(m).
  CUTLASS_DEVICE static void query_blocks(int n_block, int seqlen_q, int seqlen_k, int window_left,
                                          int window_right, int& m_block_min, int& m_block_max) {
    m_block_min = 0;
    m_block_max = (seqlen_q + kBlockM - 1) / kBlockM;
    if constexpr (kHasWindow) {
      int const shift = seqlen_k - seqlen_q;
      // First query row that sees the block's first key, and last row that sees its last key.
      int const first_row = n_block * kBlockN - shift - window_right;
      m_block_min = first_row <= 0 ? 0 : first_row / kBlockM;
      int const last_row = (n_block + 1) * kBlockN - 1 - shift + window_left;
      int const left_max = last_row < 0 ? 0 : last_row / kBlockM + 1;
      m_block_max = left_max < m_block_max ? left_max : m_block_max;
    }
  }

  // A key block needs element-wise masking when it crosses the sequence end or either window edge of query rows
  // [q_first, q_last].
  CUTLASS_DEVICE static bool needs_mask_for_rows(int q_first, int q_last, int n_block, int seqlen_q, int seqlen_k,
                                                 int window_left, int window_right) {
    bool const crosses_end = (n_block + 1) * kBlockN > seqlen_k;
    if constexpr (kHasWindow) {
      int const shift = seqlen_k - seqlen_q;
      // The first row sees keys up to q_first + shift + window_right ...
      bool const crosses_right = (n_block + 1) * kBlockN - 1 > q_first + shift + window_right;
      // ... and the last row sees keys from q_last + shift - window_left on.
      bool const crosses_left = n_block * kBlockN < q_last + shift - window_left;
      return crosses_end || crosses_right || crosses_left;
    } else {
      return crosses_end;
    }
  }

  CUTLASS_DEVICE static bool needs_mask(int m_block, int n_block, int seqlen_q, int seqlen_k, int window_left,
                                        int window_right) {
    return needs_mask_for_rows(m_block * kBlockM, (m_block + 1) * kBlockM - 1, n_block, seqlen_q, seqlen_k,
                               window_left, window_right);
  }
};

// GQA row packing (the short-query kernels): row p of the packed row space is query p / group of query head
// kv_head * group + p % group, so one tile serves every query head that shares a KV head.
struct PackedRows {
  int group;  // query heads per KV head
  CUTLASS_DEVICE int query(int packed) const { return packed / group; }
  CUTLASS_DEVICE int head(int packed, int kv_head) const { return kv_head * group + packed % group; }
};

}  // namespace flash
