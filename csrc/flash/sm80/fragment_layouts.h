// Views of the register fragments produced by SM80 m16n8k16 MMAs.
//
// An m16n8 accumulator tile gives each thread values (v0, v1) with v0 stepping one column and v1
// stepping eight rows. The attention kernels want two other views of the same registers:
//   * rows x cols, so softmax can walk one query row at a time;
//   * the A-operand of the next MMA (P · V), where two adjacent n8 tiles form one k16 slice.
// Both are layout re-interpretations: no data moves.
#pragma once

#include <cute/tensor.hpp>
#include "../core/convert.h"

namespace flash::sm80 {

using namespace cute;

// ((2, 2), MMA_M, MMA_N) -> ((2, MMA_M), (2, MMA_N)): mode 0 indexes rows, mode 1 columns.
template <class Layout>
CUTE_HOST_DEVICE constexpr auto acc_to_rowcol(Layout const& acc) {
  static_assert(decltype(rank(acc))::value == 3, "expects an (MMA, MMA_M, MMA_N) accumulator");
  static_assert(decltype(size<0>(acc))::value == 4, "expects the 2x2 values of an m16n8 accumulator");
  return make_layout(make_layout(get<0, 1>(acc), get<1>(acc)),
                     make_layout(get<0, 0>(acc), get<2>(acc)));
}

// ((2, 2), MMA_M, MMA_N) -> ((2, 2, 2), MMA_M, MMA_N / 2): pairs of n8 tiles become the k16 A-operand.
template <class Layout>
CUTE_HOST_DEVICE constexpr auto acc_to_a_operand(Layout const& acc) {
  static_assert(decltype(size<2>(acc))::value % 2 == 0, "MMA_N must be even to form k16 slices");
  auto split = logical_divide(acc, Shape<Underscore, Underscore, _2>{});  // ((2,2), M, (2, N/2))
  return make_layout(make_layout(get<0, 0>(split), get<0, 1>(split), get<2, 0>(split)),
                     get<1>(split), get<2, 1>(split));
}

}  // namespace flash::sm80
