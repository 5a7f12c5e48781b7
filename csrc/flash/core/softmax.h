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

  CUTLASS_DEVICE explicit OnlineSoftmax(float scale_log2_) : scale_log2(scale_log2_) {
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      row_max(r) = -INFINITY;
      row_sum(r) = 0.f;
    }
  }

  // Turns scores into unnormalised probabilities in place and rescales acc_o for the new row max.
  // kIsFirst: no earlier tile contributed, so there is nothing to rescale.
  template <bool kIsFirst, class Scores, class AccO>
  CUTLASS_DEVICE void update(Scores& scores, AccO& acc_o) {
    using namespace cute;
    static_assert(decltype(size<0>(scores))::value == kRows);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      update_row<kIsFirst>(scores, r, [&](float correction) {
        CUTE_UNROLL
        for (int c = 0; c < size<1>(acc_o); ++c) { acc_o(r, c) *= correction; }
      });
    }
  }

  // The same in two steps, for kernels whose P·V of the previous tile still runs while this tile's scores are
  // exponentiated: update_scores returns each row's rescale factor, rescale_o applies it once that GEMM is done.
  // threshold_log2 (>= 0): a row's running max moves only when the tile's max exceeds it by more than that many
  // powers of two of exp2's argument. 0 is update()'s arithmetic exactly (the max moves whenever it grows);
  // above 0 the unnormalised probabilities reach up to 2^threshold_log2 and most tiles of a long row leave O as
  // it is. Either way finalize() normalises with the same max, so the result is the same attention.
  template <bool kIsFirst, class Scores>
  CUTLASS_DEVICE auto update_scores(Scores& scores, float threshold_log2 = 0.f) {
    using namespace cute;
    static_assert(decltype(size<0>(scores))::value == kRows);
    auto correction = make_tensor<float>(Shape<Int<kRows>>{});
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      correction(r) = update_row<kIsFirst, /*kMayKeepMax=*/true>(scores, r, [](float) {}, threshold_log2);
    }
    return correction;
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

  // Row r: the new running max, the running sum rescaled to it (rescale(factor) is called then, before the
  // exponentials, unless kIsFirst), the row's scores exponentiated and summed. Returns the factor
  // exp(scale * (m_old - m_new)) that earlier partial outputs of the row need (1 if kIsFirst). kMayKeepMax: the
  // max moves only past threshold_log2 (update_scores).
  template <bool kIsFirst, bool kMayKeepMax = false, class Scores, class Rescale>
  CUTLASS_DEVICE float update_row(Scores& scores, int r, Rescale&& rescale, float threshold_log2 = 0.f) {
    using namespace cute;
    float const prev_max = row_max(r);
    float tile_max = kIsFirst ? -INFINITY : prev_max;
    CUTE_UNROLL
    for (int c = 0; c < size<1>(scores); ++c) { tile_max = fmaxf(tile_max, scores(r, c)); }
    float const tile_row_max = quad_allreduce(tile_max, MaxOp{});
    // (A NaN comparison, -inf - -inf, keeps a row that has seen only masked keys at -inf.)
    bool const moves = kIsFirst || !kMayKeepMax || (tile_row_max - prev_max) * scale_log2 > threshold_log2;
    float const new_max = moves ? tile_row_max : prev_max;
    row_max(r) = new_max;
    // A row that has seen only masked keys keeps max -inf; use 0 so exp2 gives 0, not NaN.
    float const max_scaled = new_max == -INFINITY ? 0.f : new_max * scale_log2;
    float correction = 1.f;
    if constexpr (!kIsFirst) {
      correction = exp2f(prev_max * scale_log2 - max_scaled);
      row_sum(r) *= correction;
      rescale(correction);
    }
    float tile_sum = 0.f;
    CUTE_UNROLL
    for (int c = 0; c < size<1>(scores); ++c) {
      float const p = exp2f(scores(r, c) * scale_log2 - max_scaled);
      scores(r, c) = p;
      tile_sum += p;
    }
    row_sum(r) = kIsFirst ? tile_sum : row_sum(r) + tile_sum;
    return correction;
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
