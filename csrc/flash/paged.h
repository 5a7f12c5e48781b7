// Paged K/V addressing, the one place a block-table entry is turned into a page: key position pos of a sequence
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

}  // namespace flash
