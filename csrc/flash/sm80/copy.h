// Predicated tile copies for the sm80 path. Tiles are partitioned by a TiledCopy into
// (CPY, CPY_ROWS, CPY_COLS); rows past the sequence end and columns past the real head dim are
// either zero-filled (loads into shared memory, so they contribute nothing to the MMAs) or skipped
// (stores to global memory).
#pragma once

#include <cute/tensor.hpp>

namespace flash::sm80 {

using namespace cute;

// Per column-chunk predicate: does this thread's chunk k lie inside the real head dim?
template <class Coords>
CUTE_DEVICE auto make_col_predicate(Coords const& coords, int head_dim) {
  auto pred = make_tensor<bool>(make_shape(size<2>(coords)));
  CUTE_UNROLL
  for (int k = 0; k < size(pred); ++k) { pred(k) = get<1>(coords(0, 0, k)) < head_dim; }
  return pred;
}

// kEvenCols: every column chunk is in range (head_dim equals the kernel's bucket).
// kCheckRows: compare rows against row_limit (only tiles at a sequence end need it).
// kZeroFill: write zeros for out-of-range chunks (shared-memory destinations).
template <bool kEvenCols, bool kCheckRows, bool kZeroFill, class TiledCopy, class Src, class Dst,
          class Coords, class ColPred>
CUTE_DEVICE void copy_tile(TiledCopy const& tiled_copy, Src const& src, Dst&& dst, Coords const& coords,
                           ColPred const& col_pred, int row_limit) {
  CUTE_UNROLL
  for (int m = 0; m < size<1>(src); ++m) {
    if (!kCheckRows || get<0>(coords(0, m, 0)) < row_limit) {
      CUTE_UNROLL
      for (int k = 0; k < size<2>(src); ++k) {
        if (kEvenCols || col_pred(k)) {
          copy(tiled_copy, src(_, m, k), dst(_, m, k));
        } else if constexpr (kZeroFill) {
          clear(dst(_, m, k));
        }
      }
    } else if constexpr (kZeroFill) {
      clear(dst(_, m, _));
    }
  }
}

// copy_tile for a source whose rows are not evenly strided (a paged KV cache): row_ptr(m, row) gives the address
// of tile row `row`, the thread's m-th row of the partition, and each 16-byte chunk takes the layout src_chunk of
// an ordinary partition's chunk.
template <bool kEvenCols, bool kCheckRows, bool kZeroFill, class TiledCopy, class RowPtr, class ChunkLayout,
          class Dst, class Coords, class ColPred>
CUTE_DEVICE void copy_rows(TiledCopy const& tiled_copy, RowPtr const& row_ptr, ChunkLayout const& src_chunk,
                           Dst&& dst, Coords const& coords, ColPred const& col_pred, int row_limit) {
  CUTE_UNROLL
  for (int m = 0; m < size<1>(dst); ++m) {
    int const row = get<0>(coords(0, m, 0));
    if (!kCheckRows || row < row_limit) {
      auto const* base = row_ptr(m, row);
      CUTE_UNROLL
      for (int k = 0; k < size<2>(dst); ++k) {
        if (kEvenCols || col_pred(k)) {
          copy(tiled_copy, make_tensor(make_gmem_ptr(base + get<1>(coords(0, m, k))), src_chunk), dst(_, m, k));
        } else if constexpr (kZeroFill) {
          clear(dst(_, m, k));
        }
      }
    } else if constexpr (kZeroFill) {
      clear(dst(_, m, _));
    }
  }
}

}  // namespace flash::sm80
