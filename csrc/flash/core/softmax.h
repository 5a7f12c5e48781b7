// Online softmax over streamed key tiles (the core of FlashAttention). Per query row it keeps the
// running max m of the raw scores and a running sum l of exp(scale * (s - m)); when m grows the
// partial output is rescaled by exp(scale * (m_old - m_new)). Scores are raw Q·Kᵀ values; the
// softmax scale is folded into exp2 with one FMA per element.
//
// Tensors are (rows, cols) views of a thread's registers (see sm80/fragment_layouts.h); row sums are
// kept per thread and reduced across the quad only once, in finalize().
#pragma once

#include <cmath>
#include <cute/tensor.hpp>

#include "reduce.h"

namespace flash {

template <int kRows>
struct OnlineSoftmax {
  cute::Tensor<cute::ArrayEngine<float, kRows>, cute::Layout<cute::Shape<cute::Int<kRows>>>> row_max;
  cute::Tensor<cute::ArrayEngine<float, kRows>, cute::Layout<cute::Shape<cute::Int<kRows>>>> row_sum;
  float const scale_log2;
  // A row's max and sum over a thread's columns run in this many independent chains: one chain would make every
  // FMNMX or FADD wait for the one before it, and during a warpgroup's softmax little else hides that latency.
  static constexpr int kChains = 4;

  CUTLASS_DEVICE explicit OnlineSoftmax(float scale_log2_) : scale_log2(scale_log2_) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      row_max(r) = -INFINITY;
      row_sum(r) = 0.f;
    }
  }

  // A tile's row update in two steps, so that a kernel may run something between them (the sm90 consumers take
  // their turn for the exponentials there): new_maxima() moves each row's running max and returns the factor
  // exp(scale * (m_old - m_new)) that the row's earlier partial output needs (1 if kIsFirst), exponentiate() then
  // turns the scores into unnormalised probabilities and adds them to the row sums (rescaled by that factor).
  // threshold_log2 (>= 0, kMayKeepMax): a row's running max moves only when the tile's max exceeds it by more
  // than that many powers of two of exp2's argument. 0 moves it whenever it grows; above 0 the unnormalised
  // probabilities reach up to 2^threshold_log2 and most tiles of a long row leave O as it is. Either way
  // finalize() normalises with the same max, so the result is the same attention.
  struct RowUpdate {
    cute::Tensor<cute::ArrayEngine<float, kRows>, cute::Layout<cute::Shape<cute::Int<kRows>>>> correction;
    float max_scaled[kRows];  // exp2's offset: the new max times scale_log2 (0 for a row that saw only masked keys)
  };

  template <bool kIsFirst, bool kMayKeepMax = false, class Scores>
  CUTLASS_DEVICE RowUpdate new_maxima(Scores const& scores, float threshold_log2 = 0.f) {
    using namespace cute;
    static_assert(decltype(size<0>(scores))::value == kRows);
    RowUpdate update;
    float tile_max[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      tile_max[r] = fmaxf(reduce_row<kChains>(scores, r, MaxOp{}), kIsFirst ? -INFINITY : row_max(r));
    }
    // Every row's shuffles issued together: the rows' reductions overlap instead of waiting on each other.
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) { tile_max[r] = quad_allreduce(tile_max[r], MaxOp{}); }
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float const prev_max = row_max(r);
      // (A NaN comparison, -inf - -inf, keeps a row that has seen only masked keys at -inf.)
      bool const moves = kIsFirst || !kMayKeepMax || (tile_max[r] - prev_max) * scale_log2 > threshold_log2;
      float const new_max = moves ? tile_max[r] : prev_max;
      row_max(r) = new_max;
      // A row that has seen only masked keys keeps max -inf; use 0 so exp2 gives 0, not NaN.
      update.max_scaled[r] = new_max == -INFINITY ? 0.f : new_max * scale_log2;
      update.correction(r) = kIsFirst ? 1.f : exp2f(prev_max * scale_log2 - update.max_scaled[r]);
    }
    return update;
  }

  template <bool kIsFirst, class Scores>
  CUTLASS_DEVICE void exponentiate(Scores& scores, RowUpdate const& update) {
    using namespace cute;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(scores); ++c) {
        scores(r, c) = exp2f(scores(r, c) * scale_log2 - update.max_scaled[r]);
      }
    }
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float const tile_sum = reduce_row<kChains>(scores, r, SumOp{});
      row_sum(r) = kIsFirst ? tile_sum : row_sum(r) * update.correction(r) + tile_sum;
    }
  }

  // Both steps; returns the factors for rescale_o, for kernels whose P·V of the previous tile may still run while
  // this tile's scores are exponentiated.
  template <bool kIsFirst, class Scores>
  CUTLASS_DEVICE auto update_scores(Scores& scores, float threshold_log2 = 0.f) {
    RowUpdate const update = new_maxima<kIsFirst, /*kMayKeepMax=*/true>(scores, threshold_log2);
    exponentiate<kIsFirst>(scores, update);
    return update.correction;
  }

  // Both steps and the rescale of acc_o, for the new row max.
  template <bool kIsFirst, class Scores, class AccO>
  CUTLASS_DEVICE void update(Scores& scores, AccO& acc_o) {
    RowUpdate const update = new_maxima<kIsFirst>(scores);
    if constexpr (!kIsFirst) { rescale_o(acc_o, update.correction); }
    exponentiate<kIsFirst>(scores, update);
  }

  template <class AccO, class Correction>
  CUTLASS_DEVICE static void rescale_o(AccO& acc_o, Correction const& correction) {
    using namespace cute;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o); ++c) { acc_o(r, c) *= correction(r); }
    }
  }

  // rescale_o, skipped (a warp-uniform branch) where no row of the warp has a factor other than 1: multiplying by 1
  // changes nothing, and once a row's max has settled most tiles leave it in place.
  template <class AccO, class Correction>
  CUTLASS_DEVICE static void rescale_o_where_needed(AccO& acc_o, Correction const& correction) {
    bool needed = false;
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) { needed |= correction(r) != 1.f; }
    if (__any_sync(0xffffffffu, needed)) { rescale_o(acc_o, correction); }
  }

  // Normalises acc_o by the row sums and returns lse = scale * m + log(l) per row (+inf when the row
  // saw no key; its output is then 0).
  template <class AccO>
  CUTLASS_DEVICE auto finalize(AccO& acc_o, float softmax_scale) {
    using namespace cute;
    auto lse = make_tensor<float>(Shape<Int<kRows>>{});
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float const sum = quad_allreduce(row_sum(r), SumOp{});
      bool const empty = sum == 0.f || sum != sum;
      float const inv_sum = empty ? 0.f : 1.f / sum;
      lse(r) = empty ? INFINITY : row_max(r) * softmax_scale + __logf(sum);
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o); ++c) { acc_o(r, c) *= inv_sum; }
    }
    return lse;
  }
};

// Backward: recomputes the normalised probabilities P = exp(scale * s - lse) of a score tile from the
// forward's lse, in place. lse_log2 holds lse * log2(e) per row; +inf (a row that saw no key, or a
// padding row past the sequence end) gives P = 0, as do masked (-inf) scores.
template <class Scores, class LseLog2>
CUTLASS_DEVICE void scores_to_probs(Scores& scores, LseLog2 const& lse_log2, float scale_log2) {
  using namespace cute;
  CUTE_UNROLL
  for (int r = 0; r < size<0>(scores); ++r) {
    float const row_lse = lse_log2(r);
    CUTE_UNROLL
    for (int c = 0; c < size<1>(scores); ++c) { scores(r, c) = exp2f(scores(r, c) * scale_log2 - row_lse); }
  }
}

}  // namespace flash
