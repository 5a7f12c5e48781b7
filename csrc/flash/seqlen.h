// Per-(batch) sequence bookkeeping shared by every kernel: where a sequence starts and how long it
// is, for dense (fixed length, batch stride) and varlen (cu_seqlens prefix sums) inputs alike.
#pragma once

#include <cstdint>
#include <cutlass/cutlass.h>

#include "params.h"

namespace flash {

struct SeqlenInfo {
  int seqlen_q;
  int seqlen_k;
  int start_q;   // first row of this sequence in a varlen (total, h, d) tensor; 0 when dense
  int start_k;   // first key row: varlen, in the (total, h, d) tensor (0 when paged); dense, within the batch row;
                 // leftpad_k included
  int kv_batch;  // dense: the K/V batch row (kv_batch_idx, else the query's)
  bool varlen_q;
  bool varlen_k;

  template <class Params>
  CUTLASS_DEVICE SeqlenInfo(Params const& params, int batch_idx) {
    varlen_q = params.cu_seqlens_q != nullptr;
    varlen_k = params.cu_seqlens_k != nullptr;
    start_q = varlen_q ? params.cu_seqlens_q[batch_idx] : 0;
    seqlen_q = varlen_q ? params.cu_seqlens_q[batch_idx + 1] - start_q : params.seqlen_q;
    kv_batch = batch_idx;
    // Keys [leftpad, seqused) of the sequence's keys (seqused_k: an end that includes the left padding), from
    // cu_seqlens_k (varlen) or the K/V row kv_batch_idx[batch] of capacity seqlen_k (a dense KV cache). A paged
    // cache (block_table) has no start row: positions go through the block table.
    int const leftpad = params.leftpad_k != nullptr ? params.leftpad_k[batch_idx] : 0;
    int keys;
    if (varlen_k) {
      int const first = params.cu_seqlens_k[batch_idx];
      keys = params.cu_seqlens_k[batch_idx + 1] - first;
      start_k = params.block_table != nullptr ? 0 : first;
    } else {
      keys = params.seqlen_k;
      start_k = 0;
      if (params.kv_batch_idx != nullptr) { kv_batch = params.kv_batch_idx[batch_idx]; }
    }
    int const used =
        params.seqused_k != nullptr ? min(params.seqused_k[batch_idx] + params.seqused_k_extra, keys) : keys;
    start_k += leftpad;
    seqlen_k = max(used - leftpad, 0);
  }

  // Element offset of (batch_idx, row 0) given the tensor's batch and row strides.
  CUTLASS_DEVICE int64_t q_offset(int64_t batch_stride, int64_t row_stride, int batch_idx) const {
    return varlen_q ? int64_t(start_q) * row_stride : int64_t(batch_idx) * batch_stride;
  }
  // K/V (and their gradients): the sequence's first key.
  CUTLASS_DEVICE int64_t k_offset(int64_t batch_stride, int64_t row_stride) const {
    return varlen_k ? int64_t(start_k) * row_stride : int64_t(kv_batch) * batch_stride + int64_t(start_k) * row_stride;
  }
  // lse rows are contiguous: dense (b, h, sq) uses the batch stride, varlen (h, total_q) the start row.
  CUTLASS_DEVICE int64_t lse_offset(int64_t batch_stride, int batch_idx) const {
    return varlen_q ? int64_t(start_q) : int64_t(batch_idx) * batch_stride;
  }
};

}  // namespace flash
