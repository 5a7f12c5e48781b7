// Loading one K or V tile of a (batch, KV head) into shared memory, shared by the forward kernels: a strided view
// of a contiguous cache, or row by row through the block table of a paged one (FwdParams::block_table).
#pragma once

#include <cute/tensor.hpp>

#include "../core/paged.h"
#include "../core/params.h"
#include "copy.h"

namespace flash::sm80 {

using namespace cute;

// tiles: the thread's (CPY, CPY_N, CPY_K, n_blocks) partition of the contiguous (kBlockN, d, n_blocks) view;
// dst, coords, col_pred: its partition of the shared-memory tile, of the tile's identity, and the head-dim
// predicate. cache, head_stride, kv_head: the paged cache and the KV head (used only on the paged path). Rows from rows_left on are
// zero-filled when kCheckRows. kMayPage: the paged path is compiled in (it is taken when block_table is set).
template <bool kEvenCols, bool kCheckRows, bool kMayPage, int kBlockN, class Element, class TiledCopy, class Tiles,
          class Dst, class Coords, class ColPred>
CUTE_DEVICE void load_kv_tile(FwdParams const& params, TiledCopy const& gmem_copy, Tiles const& tiles, Dst&& dst,
                              Coords const& coords, ColPred const& col_pred, Element const* cache,
                              int64_t page_stride, int64_t row_stride, int64_t head_stride, int batch, int kv_head,
                              int n_block, int rows_left) {
  if (!kMayPage || params.block_table == nullptr) {
    copy_tile<kEvenCols, kCheckRows, /*kZeroFill=*/true>(gmem_copy, tiles(_, _, _, n_block), dst, coords, col_pred,
                                                          rows_left);
  } else {
    Element const* cache_head = cache + kv_head * head_stride;
    auto row_ptr = [&](int, int row) {
      return cache_head + cache_row(params, batch, 0, n_block * kBlockN + row, page_stride, row_stride).offset;
    };
    copy_rows<kEvenCols, kCheckRows, /*kZeroFill=*/true>(gmem_copy, row_ptr, tiles(_, 0, 0, 0).layout(), dst, coords,
                                                          col_pred, rows_left);
  }
}

// The block-table entries of the rows one thread copies in a K/V tile of a paged cache, read a tile ahead of
// their use so that the lookups' latency is not in front of the copies (K and V share them). kRows: the thread's
// rows per tile (CPY_N of its partition).
template <int kRows, int kBlockN>
struct PagedRows {
  int page[kRows];
  int slot[kRows];

  // coords: the thread's partition of the tile's identity. Rows at or past seqlen_k are never read.
  template <class Coords>
  CUTE_DEVICE void fetch(FwdParams const& params, int batch, int n_block, int seqlen_k, Coords const& coords) {
    CUTE_UNROLL
    for (int m = 0; m < kRows; ++m) {
      int const pos = n_block * kBlockN + get<0>(coords(0, m, 0));
      PagedSlot const at = paged_slot(params, batch, pos < seqlen_k ? pos : 0);
      page[m] = at.page;
      slot[m] = at.slot;
    }
  }

  // Tile rows [0, rows_left) from the fetched pages of a (pages, page_size, heads, d) cache, the rest zero-filled.
  template <class Element, class TiledCopy, class Tiles, class Dst, class Coords, class ColPred>
  CUTE_DEVICE void copy(TiledCopy const& gmem_copy, Tiles const& tiles, Dst&& dst, Coords const& coords,
                        ColPred const& col_pred, Element const* cache_head, int64_t page_stride, int64_t row_stride,
                        int rows_left) const {
    auto row_ptr = [&](int m, int) { return cache_head + int64_t(page[m]) * page_stride + int64_t(slot[m]) * row_stride; };
    copy_rows</*kEvenCols=*/false, /*kCheckRows=*/true, /*kZeroFill=*/true>(gmem_copy, row_ptr,
                                                                            tiles(_, 0, 0, 0).layout(), dst, coords,
                                                                            col_pred, rows_left);
  }
};

}  // namespace flash::sm80
