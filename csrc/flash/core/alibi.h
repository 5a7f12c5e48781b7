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
    using cute::get;
    apply_alibi_rows(
        scores, coords, [&](int r) { return row_base + get<0>(coords(r, 0)); }, [&](int) { return slope; }, shift,
        col_base);
  }

  // The bias with a query position and a slope per thread row (a packed GQA tile mixes heads): query_of(r),
  // slope_of(r) in softmax-input units.
  template <class Scores, class Coords, class QueryOf, class SlopeOf>
  CUTLASS_DEVICE static void apply_alibi_rows(Scores& scores, Coords const& coords, QueryOf const& query_of,
                                              SlopeOf const& slope_of, int shift, int col_base) {
    using namespace cute;
    CUTE_UNROLL
    for (int r = 0; r < size<0>(scores); ++r) {
      int const row = query_of(r);
      float const row_slope = slope_of(r);
      CUTE_UNROLL
      for (int c = 0; c < size<1>(scores); ++c) {
        scores(r, c) += -row_slope * fabsf(float(row + shift - (col_base + get<1>(coords(r, c)))));
      }
    }
  }
};

// The slope of (batch, head) in softmax-input units (0 when the call has no slopes).
template <class Params>
CUTLASS_DEVICE float alibi_slope(Params const& params, int batch, int head) {
  return params.alibi_slopes_ptr == nullptr
             ? 0.f
             : params.alibi_slopes_ptr[batch * params.alibi_batch_stride + head] / params.score_scale;
}

// The slope of (batch, head) in softmax-input units, or an inactive Alibi when the call has no slopes.
template <class Params>
CUTLASS_DEVICE Alibi make_alibi(Params const& params, int batch, int head, int seqlen_q, int seqlen_k) {
  Alibi alibi;
  alibi.shift = seqlen_k - seqlen_q;
  alibi.slope = alibi_slope(params, batch, head);
  return alibi;
}

}  // namespace flash
