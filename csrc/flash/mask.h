// Element-wise masking of a score tile: keys past the sequence end, and under causal attention keys
// past the bottom-right-aligned diagonal (key j visible to query i iff j <= i + seqlen_k - seqlen_q).
// Applied only to the tiles that BlockRange::needs_mask flags.
#pragma once

#include <cmath>
#include <cute/tensor.hpp>

namespace flash {

// scores, coords: (rows, cols) views of one thread's accumulator and of the matching tile-relative
// (row, col) coordinates. row_base/col_base place the tile in the sequence.
template <bool kIsCausal, class Scores, class Coords>
CUTLASS_DEVICE void apply_mask(Scores& scores, Coords const& coords, int row_base, int col_base,
                               int seqlen_q, int seqlen_k) {
  using namespace cute;
  CUTE_UNROLL
  for (int r = 0; r < size<0>(scores); ++r) {
    int col_limit = seqlen_k - col_base;  // first masked column, tile-relative
    if constexpr (kIsCausal) {
      int const row = row_base + get<0>(coords(r, 0));
      int const causal_limit = row + 1 + seqlen_k - seqlen_q - col_base;
      col_limit = causal_limit < col_limit ? causal_limit : col_limit;
    }
    CUTE_UNROLL
    for (int c = 0; c < size<1>(scores); ++c) {
      if (get<1>(coords(r, c)) >= col_limit) { scores(r, c) = -INFINITY; }
    }
  }
}

}  // namespace flash
