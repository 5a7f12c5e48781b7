// Which Q buffer a CTA's query block uses, and in which phase that block's completions of the buffer's barriers
// fall (barrier_q: its Q has landed; barrier_q_empty: the consumers are done with it). A CTA's blocks take the
// buffers in use (1 << buffers_log2: one, or two for persistent CTAs where they fit) in turn, so each barrier
// completes once per block that uses its buffer. Host-testable (tests/cpp/sm90_tile_scheduler.cu).
#pragma once

#include <cutlass/cutlass.h>

namespace flash::sm90 {

struct QTurn {
  int buffer;
  int phase;  // -1: the consumers load this block's Q themselves (packed GQA tiles), no barrier

  // Block `round` of the CTA (its count of earlier blocks).
  CUTLASS_HOST_DEVICE static QTurn of_round(int round, int buffers_log2) {
    return {round & ((1 << buffers_log2) - 1), (round >> buffers_log2) & 1};
  }

  // Whether an earlier block of the CTA used the buffer, so that the producer waits for the consumers to free it
  // (barrier_q_empty's completion by that use: phase ^ 1) before loading this block's Q there.
  CUTLASS_HOST_DEVICE static bool reuses(int round, int buffers_log2) { return round >= (1 << buffers_log2); }
};

}  // namespace flash::sm90
