// Which compiled instantiation of an sm80 kernel serves a call (host and device). sm80 register policy, so it
// lives here and not in the core: another architecture's kernels choose their own variants.
#pragma once

#include "../core/params.h"

namespace flash::sm80 {

// Softcap, ALiBi, dropout and paged K/V run in a second instantiation of each kernel (kHasExtras): their
// register needs would otherwise cost the plain kernels spills.
inline bool needs_score_extras(FwdParams const& p) {
  return p.softcap > 0.f || p.alibi_slopes_ptr != nullptr || p.has_dropout || p.block_table != nullptr;
}

}  // namespace flash::sm80
