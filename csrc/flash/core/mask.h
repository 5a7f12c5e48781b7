// Element-wise masking of a score tile: keys past the sequence end and, with a window, keys outside
// [i + shift - window_left, i + shift + window_right] for query row i (shift = seqlen_k - seqlen_q; see
// block.h). Applied only to the tiles that BlockRange::needs_mask flags.
#pragma once

#include <cmath>
#include <cute/tensor.hpp>

namespace flash {

// scores, coords: (rows, cols) views of one thread's accumulator and of the matching tile-relative (row, col)
// coordinates. query_of(r): the sequence position of the query of the thread's row r; col_base places the tile's
// columns among the keys.
template <bool kHasWindow, class Scores, class Coords, class QueryOf>
CUTLASS_DEVICE void apply_mask_rows(Scores& scores, Coords const& coords, QueryOf const& query_of, int col_base,
                                    int seqlen_q, int seqlen_k, int window_left, int window_right) {
  using namespace cute;
  CUTE_UNROLL
  for (int r = 0; r < size<0>(scores); ++r) {
    int col_end = seqlen_k - col_base;  // first masked column past the end, tile-relative
    int col_begin = 0;                  // first visible column, tile-relative
    if constexpr (kHasWindow) {
      int const diag = query_of(r) + seqlen_k - seqlen_q - col_base;
      int const right_end = diag + window_right + 1;
      col_end = right_end < col_end ? right_end : col_end;
      col_begin = diag - window_left;
    }
    CUTE_UNROLL
    for (int c = 0; c < size<1>(scores); ++c) {
      int const col = get<1>(coords(r, c));
      if (col >= col_end || (kHasWindow && col < col_begin)) { scores(r, c) = -INFINITY; }
    }
  }
}

// A tile of consecutive query rows from row_base on.
template <bool kHasWindow, class Scores, class Coords>
CUTLASS_DEVICE void apply_mask(Scores& scores, Coords const& coords, int row_base, int col_base, int seqlen_q,
                               int seqlen_k, int window_left, int window_right) {
  using cute::get;
  apply_mask_rows<kHasWindow>(
      scores, coords, [&](int r) { return row_base + get<0>(coords(r, 0)); }, col_base, seqlen_q, seqlen_k,
      window_left, window_right);
}

}  // namespace flash
