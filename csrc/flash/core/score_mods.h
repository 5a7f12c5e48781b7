// The score modifiers, applied in one place and one order by the forward kernels: softcap on the scaled score
// (softcap.h), then the ALiBi bias (alibi.h); masking follows (mask.h). Each is a per-call switch behind a uniform
// branch (uniform_branch.h), so a call pays only for the modifiers it uses. The backward applies the same order
// with softcap's derivative (softcap.h: apply_softcap_with_grad).
#pragma once

#include "alibi.h"
#include "mask.h"
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

// A score tile as the softmax takes it, for the forward kernels of every architecture: the modifiers (kMods:
// compiled in; ALiBi where has_alibi, with the rows' slopes), then the mask where the key block crosses the sequence
// end or a window edge (needs_mask(): BlockRange::needs_mask*, asked after the modifiers). query_of(r),
// slope_of(r): the query position and the ALiBi slope of the thread's row r; shift = seqlen_k - seqlen_q.
template <bool kMods, bool kMaySoftcap, bool kHasWindow, class Params, class Scores, class Coords, class QueryOf,
          class SlopeOf, class NeedsMask>
CUTLASS_DEVICE void prepare_score_rows(Params const& params, bool has_alibi, Scores& scores, Coords const& coords,
                                       QueryOf const& query_of, SlopeOf const& slope_of, int col_base,
                                       NeedsMask const& needs_mask, int seqlen_q, int seqlen_k) {
  if constexpr (kMods) {
    apply_score_mods<kMaySoftcap>(params, has_alibi, scores, coords, query_of, slope_of, seqlen_k - seqlen_q,
                                  col_base);
  }
  if (needs_mask()) {
    apply_mask_rows<kHasWindow>(scores, coords, query_of, col_base, seqlen_q, seqlen_k, params.window_left,
                                params.window_right);
  }
}

// The same for a tile of consecutive query rows (row_base on) of one head (alibi: its slope).
template <bool kMods, bool kMaySoftcap, bool kHasWindow, class Params, class Scores, class Coords, class NeedsMask>
CUTLASS_DEVICE void prepare_score_tile(Params const& params, Alibi const& alibi, Scores& scores, Coords const& coords,
                                       int row_base, int col_base, NeedsMask const& needs_mask, int seqlen_q,
                                       int seqlen_k) {
  prepare_score_rows<kMods, kMaySoftcap, kHasWindow>(
      params, alibi.enabled(), scores, coords, [&](int r) { return row_base + cute::get<0>(coords(r, 0)); },
      [&](int) { return alibi.slope; }, col_base, needs_mask, seqlen_q, seqlen_k);
}

}  // namespace flash
