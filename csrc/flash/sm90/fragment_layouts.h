// Views of the register fragments of wgmma (sm90) accumulators.
//
// A 64xN wgmma accumulator gives each thread values (v0, v1, v2) with v0 stepping one column, v1 eight rows and
// v2 eight columns. Softmax wants them as rows x cols; the P·V wgmma wants P as its register A operand, whose
// k16 slice is two adjacent 8-column groups. Both are layout re-interpretations: no data moves.
#pragma once

#include <cute/tensor.hpp>

namespace flash::sm90 {

using namespace cute;

// ((2, 2, N/8), MMA_M, MMA_N) -> ((2, MMA_M), (2, N/8, MMA_N)): mode 0 indexes rows, mode 1 columns.
template <class Layout>
CUTE_HOST_DEVICE constexpr auto acc_to_rowcol(Layout const& acc) {
  static_assert(decltype(rank(acc))::value == 3, "expects an (MMA, MMA_M, MMA_N) accumulator");
  static_assert(decltype(rank<0>(acc))::value == 3, "expects the (2, 2, N/8) values of a wgmma accumulator");
  return make_layout(make_layout(get<0, 1>(acc), get<1>(acc)),
                     make_layout(get<0, 0>(acc), get<0, 2>(acc), get<2>(acc)));
}

// ((2, 2, N/8), MMA_M, MMA_N) -> ((2, 2, 2), MMA_M, (N/16, MMA_N)): pairs of 8-column groups become the k16 slices
// of the register A operand.
template <class Layout>
CUTE_HOST_DEVICE constexpr auto acc_to_a_operand(Layout const& acc) {
  static_assert(decltype(size<0, 2>(acc))::value % 2 == 0, "N/8 must be even to form k16 slices");
  auto split = logical_divide(get<0>(acc), Shape<Underscore, Underscore, _2>{});  // (2, 2, (2, N/16))
  return make_layout(make_layout(get<0>(split), get<1>(split), get<2, 0>(split)), get<1>(acc),
                     make_layout(get<2, 1>(split), get<2>(acc)));
}

}  // namespace flash::sm90
