// Logit soft-capping (Gemma 2 style): the scaled scores become softcap * tanh(softmax_scale * s / softcap)
// before masking. The kernels keep only t = tanh(softmax_scale * s / softcap) and let the softmax scale it
// by softcap (params.score_scale = softcap, so ALiBi's slope and the lse follow), which saves a multiply per
// score. A runtime switch (params.softcap > 0): the extra work is one tanh per score in the forward and the
// backward, and off it is one uniform branch per tile.
#pragma once

#include <cute/tensor.hpp>

namespace flash {

CUTLASS_DEVICE float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// s <- tanh(s * inner_scale) in place, inner_scale = softmax_scale / softcap.
template <class Scores>
CUTLASS_DEVICE void apply_softcap(Scores& scores, float inner_scale) {
  CUTE_UNROLL
  for (int i = 0; i < cute::size(scores); ++i) { scores(i) = tanh_approx(scores(i) * inner_scale); }
}

// Backward: the same, and grad(i) <- 1 - t^2 for t = tanh(s * inner_scale), the cap's derivative up to the
// softmax_scale the epilogues apply. The kernel folds grad into P right after P is stored for dV, so
// dS = P (dP - D) carries it at no later cost.
template <class Scores, class Grad>
CUTLASS_DEVICE void apply_softcap_with_grad(Scores& scores, Grad& grad, float inner_scale) {
  CUTE_UNROLL
  for (int i = 0; i < cute::size(scores); ++i) {
    float const t = tanh_approx(scores(i) * inner_scale);
    scores(i) = t;
    grad(i) = 1.f - t * t;
  }
}

}  // namespace flash
