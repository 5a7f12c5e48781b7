// flash_attn_with_kvcache's preparation step, before the attention kernel: the new keys and values are
// written into the cache at each sequence's end (keys rotated first when rotary embeddings are given), and the
// queries are rotated into a separate buffer. Plain parameters, no torch.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "dispatch.h"

namespace flash {

struct KvcacheAppendParams {
  // New keys/values (batch, seqlen_new, num_heads_k, head_dim); nullptr when nothing is appended.
  void const* k_new = nullptr;
  void const* v_new = nullptr;
  int64_t k_new_batch_stride = 0, k_new_row_stride = 0, k_new_head_stride = 0;
  int64_t v_new_batch_stride = 0, v_new_row_stride = 0, v_new_head_stride = 0;
  // Caches (batch_cache, capacity, num_heads_k, head_dim), written in place.
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  int64_t k_cache_batch_stride = 0, k_cache_row_stride = 0, k_cache_head_stride = 0;
  int64_t v_cache_batch_stride = 0, v_cache_row_stride = 0, v_cache_head_stride = 0;
  // Queries (batch, seqlen_q, num_heads, head_dim) and their rotated copy (contiguous, same shape); q_rot is
  // nullptr without rotary embeddings.
  void const* q = nullptr;
  void* q_rot = nullptr;
  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  // Rotary tables (seqlen_ro, rotary_dim / 2), contiguous; nullptr = no rotary.
  void const* cos = nullptr;
  void const* sin = nullptr;
  int seqlen_ro = 0;
  int rotary_dim = 0;
  bool interleaved = true;       // pairs (2i, 2i + 1); else (i, i + rotary_dim / 2) (GPT-NeoX)
  bool q_position_per_row = true;  // query row i at cache_seqlens + i (causal/local); else all at cache_seqlens

  int const* cache_seqlens = nullptr;    // (batch,) int32: tokens already cached = where the new ones go
  int const* cache_batch_idx = nullptr;  // (batch,) int32 cache row of each batch entry; nullptr = identity
  int cache_batch_rows = 0;              // rows of a dense cache: an entry outside [0, cache_batch_rows) is skipped
  // Paged caches (num_pages, page_size, ...): position p of batch b is slot p % page_size of page
  // block_table[b * block_table_batch_stride + p / page_size]; nullptr = contiguous caches.
  int const* block_table = nullptr;
  int64_t block_table_batch_stride = 0;
  int page_size = 0;
  int num_pages = 0;  // a block-table entry outside [0, num_pages) is not written to (paged.h)
  int batch = 0, seqlen_new = 0, seqlen_q = 0, num_heads = 0, num_heads_k = 0, head_dim = 0;
  // Cache rows per sequence; positions past it are not written (the binding checks outside graph capture), and a
  // negative cache_seqlens entry counts as 0, as in the attention that follows (seqlen.h).
  int capacity = 0;
};

void run_kvcache_append(KvcacheAppendParams const& params, DType dtype, cudaStream_t stream);

}  // namespace flash
