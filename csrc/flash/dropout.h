// Dropout on the attention probabilities, regenerated identically in the forward and the backward.
//
// The random byte of score (batch, head, row i, key j) depends on those absolute coordinates only, not on
// how a kernel tiles the scores: one Philox4x32-10 call (philox.h) per (16-row group i/16, 8-key group j/8,
// row i % 8), keyed by the seed, with the subsequence (batch * heads + head) in the counter's high half.
// Word (j % 8) / 2 of that call holds the four bytes of rows {i, i + 8} x keys {j, j + 1} (j even): exactly the
// 2 x 2 values one thread holds in an m16n8 accumulator atom, so each thread makes one call per atom.
// A score is kept iff its byte <= keep_threshold = floor((1 - p) * 255); kept values are scaled by 1/(1 - p).
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>

#include "philox.h"

namespace flash {

struct Dropout {
  uint64_t seed = 0;
  uint64_t offset = 0;       // counter base of this call (the generator's offset)
  uint64_t subsequence = 0;  // batch * num_heads + head
  uint32_t key_groups = 0;   // ceil(max seqlen_k / 8): stride of the 16-row groups in the counter
  uint32_t keep_threshold = 255;

  // The four bytes of the quad whose top-left score is (row, col), row % 16 < 8 and col even:
  // byte (a * 2 + c) belongs to (row + 8 a, col + c).
  CUTLASS_DEVICE uint32_t quad_bytes(int row, int col) const {
    uint64_t const index = (uint64_t(row / 16) * key_groups + uint64_t(col / 8)) * 8 + uint64_t(row % 8);
    PhiloxWords const words = philox4x32_10(seed, offset + index, subsequence);
    int const w = (col % 8) / 2;
    return w == 0 ? words.w[0] : w == 1 ? words.w[1] : w == 2 ? words.w[2] : words.w[3];
  }

  // Keep bits of a thread's score tile in the (rows, cols) view of m16n8 accumulators, ((2, MMA_M), (2, MMA_N)):
  // bit r * kCols + c of `bits` is set when value (r, c) is kept. coords: the matching tile-relative (row, col)
  // coordinates; row_base/col_base place the tile in the sequence. Computing the bits first keeps the Philox
  // temporaries out of the register-heavy code that applies them.
  template <int kRows, int kCols, class Coords>
  CUTLASS_DEVICE void keep_bits(uint32_t (&bits)[(kRows * kCols + 31) / 32], Coords const& coords, int row_base,
                                int col_base) const {
    using namespace cute;
    CUTE_UNROLL
    for (int i = 0; i < (kRows * kCols + 31) / 32; ++i) { bits[i] = 0; }
    CUTE_UNROLL
    for (int m = 0; m < kRows / 2; ++m) {
      CUTE_UNROLL
      for (int n = 0; n < kCols / 2; ++n) {
        auto const top_left = coords(2 * m, 2 * n);
        uint32_t const bytes = quad_bytes(row_base + get<0>(top_left), col_base + get<1>(top_left));
        CUTE_UNROLL
        for (int a = 0; a < 2; ++a) {
          CUTE_UNROLL
          for (int c = 0; c < 2; ++c) {
            int const bit = (2 * m + a) * kCols + 2 * n + c;
            if (((bytes >> (8 * (a * 2 + c))) & 0xffu) <= keep_threshold) { bits[bit / 32] |= 1u << (bit % 32); }
          }
        }
      }
    }
  }

  template <int kCols, int kWords>
  CUTLASS_DEVICE static bool kept(uint32_t const (&bits)[kWords], int r, int c) {
    int const bit = r * kCols + c;
    return (bits[bit / 32] >> (bit % 32)) & 1u;
  }
};

// The Dropout of (batch, head) for this call; seed and offset come from device memory when params say so.
template <class Params>
CUTLASS_DEVICE Dropout make_dropout(Params const& params, int batch, int head) {
  Dropout d;
  d.seed = params.philox_seed_ptr != nullptr ? uint64_t(*params.philox_seed_ptr) : params.philox_seed;
  d.offset = params.philox_offset_ptr != nullptr ? uint64_t(*params.philox_offset_ptr) + params.philox_offset_extra
                                                 : params.philox_offset;
  d.subsequence = uint64_t(batch) * params.num_heads + head;
  d.key_groups = uint32_t((params.seqlen_k + 7) / 8);
  d.keep_threshold = params.dropout_keep_threshold;
  return d;
}

}  // namespace flash
