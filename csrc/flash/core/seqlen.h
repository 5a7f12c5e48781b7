// Per-(batch) sequence bookkeeping shared by every kernel: where a sequence starts and how long it
// is, for dense (fixed length, batch stride) and varlen (cu_seqlens prefix sums) inputs alike.
//
// Index tensors are read here and nowhere else, and clamped so that no value in them can make a kernel touch
// memory outside the tensors of the call (FLASH_ATTN_CHECK_INPUTS=1 reports such values as errors instead, on the
// host, before the launch):
//   cu_seqlens_q/k   each start and end is clamped to [0, total_q/k] and an end below its start to the start: a
//                    sequence past the packed total is cut at it, a decreasing pair is an empty sequence;
//   kv_batch_idx     an entry outside [0, kv_batch_rows) is a sequence without keys (output 0, lse +inf);
//   seqused_k        clamped to [0, keys]; leftpad_k clamped to [0, seqused_k];
//   paged keys       at most block_table_cols * page_size per sequence (paged.h clamps the entries themselves).
// The grid is sized by max_seqlen_q/k, but lengths come from the prefix sums: a sequence longer than a caller's
// max_seqlen is still computed whole (the kernels give its extra blocks to the grid's CTAs in turn).
#pragma once

#include <cstdint>
#include <cutlass/cutlass.h>

#include "params.h"

namespace flash {

CUTLASS_HOST_DEVICE int clamp_index(int value, int lo, int hi) { return value < lo ? lo : (value > hi ? hi : value); }

struct SeqlenInfo {
  int seqlen_q;
  int seqlen_k;
  int start_q;   // first row of this sequence in a varlen (total, h, d) tensor; 0 when dense
  int start_k;   // first key row: varlen, in the (total, h, d) tensor (0 when paged); dense, within the batch row;
                 // leftpad_k included
  int kv_batch;  // dense: the K/V batch row (kv_batch_idx, else the query's)
  // KV cache appends: sequence-relative position of this call's first appended key (seqused_k before the append,
  // less the left padding; negative when the padding reaches into the appended keys).
  int appended_begin;
  bool kv_rows_exist;  // false for a kv_batch_idx entry out of range: no keys, and nothing may be written there
  bool varlen_q;
  bool varlen_k;

  template <class Params>
  CUTLASS_DEVICE SeqlenInfo(Params const& params, int batch_idx) {
    varlen_q = params.cu_seqlens_q != nullptr;
    varlen_k = params.cu_seqlens_k != nullptr;
    if (varlen_q) {
      start_q = clamp_index(params.cu_seqlens_q[batch_idx], 0, params.total_q);
      seqlen_q = clamp_index(params.cu_seqlens_q[batch_idx + 1], start_q, params.total_q) - start_q;
    } else {
      start_q = 0;
      seqlen_q = params.seqlen_q;
    }
    kv_batch = batch_idx;
    kv_rows_exist = true;
    // Keys [leftpad, seqused) of the sequence's keys (seqused_k: an end that includes the left padding), from
    // cu_seqlens_k (varlen) or the K/V row kv_batch_idx[batch] of capacity seqlen_k (a dense KV cache). A paged
    // cache (block_table) has no start row: positions go through the block table.
    int keys;
    if (varlen_k && params.block_table != nullptr) {
      keys = clamp_index(params.cu_seqlens_k[batch_idx + 1] - params.cu_seqlens_k[batch_idx], 0,
                         params.block_table_cols * params.page_size);
      start_k = 0;
    } else if (varlen_k) {
      start_k = clamp_index(params.cu_seqlens_k[batch_idx], 0, params.total_k);
      keys = clamp_index(params.cu_seqlens_k[batch_idx + 1], start_k, params.total_k) - start_k;
    } else {
      keys = params.seqlen_k;
      start_k = 0;
      if (params.kv_batch_idx != nullptr) {
        kv_batch = params.kv_batch_idx[batch_idx];
        kv_rows_exist = kv_batch >= 0 && kv_batch < params.kv_batch_rows;
        if (!kv_rows_exist) { kv_batch = 0, keys = 0; }
      }
    }
    int cached = keys, used = keys;
    if (params.seqused_k != nullptr) {
      cached = clamp_index(params.seqused_k[batch_idx], 0, keys);
      used = min(cached + params.seqused_k_extra, keys);
    }
    int const leftpad = params.leftpad_k != nullptr ? clamp_index(params.leftpad_k[batch_idx], 0, used) : 0;
    start_k += leftpad;
    seqlen_k = used - leftpad;
    appended_begin = cached - leftpad;
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
