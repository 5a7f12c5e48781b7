// Deterministic dQ accumulation's turn counters (params.h: dq_semaphore), shared by every backward kernel.
#pragma once

#include <cstdint>

#include <cutlass/cutlass.h>

#include "params.h"

namespace flash {

// The deterministic-mode turn counter of a tile (params.h: dq_semaphore): one int32 per 16 rows of the
// accumulator, so the counters follow its padded row space and every tile's counter lies inside the buffer whatever
// a varlen call's max_seqlen_q says.
CUTLASS_DEVICE int* dq_turn_counter(BwdParams const& params, float const* tile) {
  int64_t const row = (tile - params.dq_accum_ptr) / params.dq_accum_row_stride;
  return params.dq_semaphore + row / 16;
}

}  // namespace flash
