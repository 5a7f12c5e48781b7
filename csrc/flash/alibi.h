// ALiBi: a linear bias -slope * |i + seqlen_k - seqlen_q - j| on the (scaled, soft-capped) score of query i and
// key j, i.e. the distance to the bottom-right-aligned diagonal. The kernels add it to their softmax input, so
// the slope is given in those units (slope / score_scale, see params.h). A runtime switch: slope 0 is off.
#pragma once

#include <cute/tensor.hpp>

namespace flash {

struct Alibi {
  float slope = 0.f;  // in softmax-input units; 0 = no bias
  int shift = 0;      // seqlen_k - seqlen_q

  CUTLASS_DEVICE bool enabled() const { return slope != 0.f; }

  CUTLASS_DEVICE float bias(int row, int col) const { return -slope * fabsf(float(row + shift - col)); }

  // scores, coords: (rows, cols) views of a thread's accumulator and its tile-relative coordinates.
  template <class Scores, class Coords>
  CUTLASS_DEVICE void apply(Scores& scores, Coords const& coords, int row_base, int col_base) const {
    using namespace cute;
    CUTE_UNROLL
    for (int r = 0; r < size<0>(scores); ++r) {
      int const row = row_base + get<0>(coords(r, 0));
      CUTE_UNROLL
      for (int c = 0; c < size<1>(scores); ++c) { scores(r, c) += bias(row, col_base + get<1>(coords(r, c))); }
    }
  }
};

// The slope of (batch, head) in softmax-input units, or an inactive Alibi when the call has no slopes.
template <class Params>
CUTLASS_DEVICE Alibi make_alibi(Params const& params, int batch, int head, int seqlen_q, int seqlen_k) {
  Alibi alibi;
  alibi.shift = seqlen_k - seqlen_q;
  if (params.alibi_slopes_ptr != nullptr) {
    alibi.slope = params.alibi_slopes_ptr[batch * params.alibi_batch_stride + head] / params.score_scale;
  }
  return alibi;
}

}  // namespace flash
