// Logit soft-capping (Gemma 2 style): the scaled scores become softcap * tanh(softmax_scale * s / softcap)
// before masking, and the softmax runs on them unscaled. A runtime switch (params.softcap > 0): the extra work
// is one tanh per score in the forward and one log2 per probability in the backward, and off it is one uniform
// branch per tile.
#pragma once

#include <cute/tensor.hpp>

namespace flash {

CUTLASS_DEVICE float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// s <- softcap * tanh(s * inner_scale) in place, inner_scale = softmax_scale / softcap.
template <class Scores>
CUTLASS_DEVICE void apply_softcap(Scores& scores, float softcap, float inner_scale) {
  CUTE_UNROLL
  for (int i = 0; i < cute::size(scores); ++i) { scores(i) = softcap * tanh_approx(scores(i) * inner_scale); }
}

// Backward: dS <- dS * (1 - t^2) with t = capped score / softcap, the derivative of the cap. The capped score
// is recovered from the probability, P = exp2((capped + bias) * log2(e) - lse_log2), so it needs no extra
// registers: capped = (log2(P) + lse_log2) * ln(2) - bias, with the ALiBi bias (alibi.h) when there is one.
// Entries with P = 0 (masked keys, empty rows) have dS = 0 already.
template <class DScores, class Probs, class LseLog2, class Coords, class Alibi>
CUTLASS_DEVICE void softcap_grad(DScores& dscores, Probs const& probs, LseLog2 const& lse_log2, float inv_softcap,
                                 Alibi const& alibi, Coords const& coords, int row_base, int col_base) {
  using namespace cute;
  CUTE_UNROLL
  for (int r = 0; r < size<0>(dscores); ++r) {
    int const row = row_base + get<0>(coords(r, 0));
    CUTE_UNROLL
    for (int c = 0; c < size<1>(dscores); ++c) {
      float const p = probs(r, c);
      float const bias = alibi.enabled() ? alibi.bias(row, col_base + get<1>(coords(r, c))) : 0.f;
      float const t = ((__log2f(p) + lse_log2(r)) * float(M_LN2) - bias) * inv_softcap;
      dscores(r, c) = p > 0.f ? dscores(r, c) * (1.f - t * t) : 0.f;
    }
  }
}

}  // namespace flash
