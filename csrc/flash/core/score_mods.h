// The score modifiers, applied in one place and one order by the forward kernels: softcap on the scaled score
// (softcap.h), then the ALiBi bias (alibi.h); masking follows (mask.h). Each is a per-call switch behind a uniform
// branch (uniform_branch.h), so a call pays only for the modifiers it uses. The backward applies the same order
// with softcap's derivative (softcap.h: apply_softcap_with_grad).
#pragma once

#include "alibi.h"
#include "softcap.h"
#include "uniform_branch.h"

namespace flash {

// kMaySoftcap: softcap is compiled into this copy of the loop (never with dropout, by the API).
// query_of(r), slope_of(r): the query position and the ALiBi slope of the thread's row r; shift = seqlen_k -
// seqlen_q; col_base places the tile's columns among the keys.
template <bool kMaySoftcap, class Params, class Scores, class Coords, class QueryOf, class SlopeOf>
CUTLASS_DEVICE void apply_score_mods(Params const& params, bool has_alibi, Scores& scores, Coords const& coords,
                                     QueryOf const& query_of, SlopeOf const& slope_of, int shift, int col_base) {
  if constexpr (kMaySoftcap) {
    if_uniform(params.softcap > 0.f, [&] { apply_softcap(scores, params.softcap_inner); });
  }
  if_uniform(has_alibi, [&] { Alibi::apply_alibi_rows(scores, coords, query_of, slope_of, shift, col_base); });
}

}  // namespace flash
