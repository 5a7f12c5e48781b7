// Merging partial softmax results, the one rule for the split-KV combine and for the warps of a split-KV CTA. Part i
// holds its output normalised over its own keys and their natural-log lse_i; the merged lse = log sum_i exp(lse_i)
// and the merged output = sum_i exp(lse_i - lse) O_i. A part without keys has lse -inf and no weight; with no key
// at all the merged lse is +inf and the output 0, as in the main kernels.
#pragma once

#include <cmath>

#include <cutlass/cutlass.h>

namespace flash {

// Two passes over the parts: max_lse = max_i lse_i, then sum_exp = sum_i lse_term(lse_i, max_lse).
CUTLASS_DEVICE float lse_term(float lse, float max_lse) { return max_lse == -INFINITY ? 0.f : expf(lse - max_lse); }

CUTLASS_DEVICE float merged_lse(float max_lse, float sum_exp) {
  return max_lse == -INFINITY ? INFINITY : max_lse + logf(sum_exp);
}

CUTLASS_DEVICE float merge_weight(float lse, float merged) { return merged == INFINITY ? 0.f : expf(lse - merged); }

// The lse of an online-softmax state (row max in score units, sum of exp2((s - max) * scale_log2)).
CUTLASS_DEVICE float softmax_lse(float row_max, float row_sum, float score_scale) {
  return row_max == -INFINITY || row_sum == 0.f ? -INFINITY : row_max * score_scale + logf(row_sum);
}

}  // namespace flash
