// Which key blocks a query block has to visit. Causal attention is aligned bottom-right:
// query row i sees key j iff j <= i + seqlen_k - seqlen_q.
#pragma once

#include <cutlass/cutlass.h>

namespace flash {

template <int kBlockM, int kBlockN, bool kIsCausal>
struct BlockRange {
  // Half-open range [n_block_min, n_block_max) of key blocks touched by query block m_block.
  CUTLASS_DEVICE static void key_blocks(int m_block, int seqlen_q, int seqlen_k,
                                        int& n_block_min, int& n_block_max) {
    n_block_min = 0;
    n_block_max = (seqlen_k + kBlockN - 1) / kBlockN;
    if constexpr (kIsCausal) {
      // Last key visible to the block's last row, +1; may be <= 0 when sq > sk.
      int const key_end = (m_block + 1) * kBlockM + seqlen_k - seqlen_q;
      int const causal_max = key_end <= 0 ? 0 : (key_end + kBlockN - 1) / kBlockN;
      n_block_max = causal_max < n_block_max ? causal_max : n_block_max;
    }
  }

  // The inverse, for the backward pass: half-open range [m_block_min, m_block_max) of query blocks
  // that see key block n_block. Query block m is in it exactly when n_block is in key_blocks(m).
  CUTLASS_DEVICE static void query_blocks(int n_block, int seqlen_q, int seqlen_k,
                                          int& m_block_min, int& m_block_max) {
    m_block_min = 0;
    m_block_max = (seqlen_q + kBlockM - 1) / kBlockM;
    if constexpr (kIsCausal) {
      // First query row that sees the block's first key: n_block*kBlockN - (seqlen_k - seqlen_q).
      int const first_row = n_block * kBlockN - seqlen_k + seqlen_q;
      m_block_min = first_row <= 0 ? 0 : first_row / kBlockM;
    }
  }

  // A key block needs element-wise masking when it crosses the sequence end or the causal diagonal.
  CUTLASS_DEVICE static bool needs_mask(int m_block, int n_block, int seqlen_q, int seqlen_k) {
    bool const crosses_end = (n_block + 1) * kBlockN > seqlen_k;
    if constexpr (kIsCausal) {
      // The block's first query row sees keys up to m_block*kBlockM + sk - sq.
      bool const crosses_diag = (n_block + 1) * kBlockN - 1 > m_block * kBlockM + seqlen_k - seqlen_q;
      return crosses_end || crosses_diag;
    } else {
      return crosses_end;
    }
  }
};

}  // namespace flash
