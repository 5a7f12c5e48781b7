// KV-cache addressing, the one place a block-table entry is turned into a page: key position pos of a sequence
// sits in slot pos % page_size of page block_table[batch * batch_stride + pos / page_size]. An entry outside
// [0, num_pages) is never dereferenced: reads take page 0 instead (the call's result for that sequence is then
// undefined, but no memory outside the cache is touched) and writes test `valid` and skip the slot.
// FLASH_ATTN_CHECK_INPUTS=1 reports such entries on the host.
#pragma once

#include <cstdint>

#include <cutlass/cutlass.h>

namespace flash {

struct PagedSlot {
  int page;
  int slot;
  bool valid;
};

// pos: 0 <= pos < (entries per sequence) * page_size, which the callers' lengths guarantee (seqlen.h).
CUTLASS_HOST_DEVICE PagedSlot paged_slot(int const* block_table, int64_t batch_stride, int page_size, int num_pages,
                                         int batch, int pos) {
  int const entry = block_table[batch * batch_stride + pos / page_size];
  bool const valid = entry >= 0 && entry < num_pages;
  return {valid ? entry : 0, pos % page_size, valid};
}

template <class Params>
CUTLASS_HOST_DEVICE PagedSlot paged_slot(Params const& params, int batch, int pos) {
  return paged_slot(params.block_table, params.block_table_batch_stride, params.page_size, params.num_pages, batch,
                    pos);
}

// Where key position pos of a sequence lives in one head of a KV cache, in elements from the head's base: slot
// pos % page_size of its page in a paged cache, else dense_begin (the sequence's position 0) + pos rows. writable:
// the row may be written (a paged row with an out-of-range entry is read from page 0, never written).
struct CacheRow {
  int64_t offset;
  bool writable;
};

template <class Params>
CUTLASS_HOST_DEVICE CacheRow cache_row(Params const& params, int batch, int64_t dense_begin, int pos,
                                       int64_t page_stride, int64_t row_stride) {
  if (params.block_table == nullptr) { return {dense_begin + int64_t(pos) * row_stride, true}; }
  PagedSlot const at = paged_slot(params, batch, pos);
  return {int64_t(at.page) * page_stride + int64_t(at.slot) * row_stride, at.valid};
}

// The one rule for writing appended keys (flash_attn_with_kvcache): position pos of a sequence is written iff it is
// below the sequence's capacity, the sequence's cache row exists (cache_batch_idx in range) and its slot is writable.
template <class Params>
CUTLASS_HOST_DEVICE CacheRow append_row(Params const& params, int batch, bool batch_row_exists, int capacity,
                                        int64_t dense_begin, int pos, int64_t page_stride, int64_t row_stride) {
  if (!batch_row_exists || pos >= capacity) { return {0, false}; }
  return cache_row(params, batch, dense_begin, pos, page_stride, row_stride);
}

}  // namespace flash
