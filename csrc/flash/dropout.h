// Dropout on the attention probabilities, regenerated identically in the forward and the backward.
//
// The random byte of score (batch, head, row i, key j) depends on those absolute coordinates only, not on
// how a kernel tiles the scores. One Philox4x32-10 call (philox.h), keyed by the seed with the subsequence
// (batch * heads + head) in the counter's high half, serves the 16-row group i/16, the 128-key group j/128,
// row i % 8, key lane (j % 8) / 2 and atom position (j % 32) / 8: word (j / 32) % 4 holds the four bytes of rows
// {i, i + 8} x keys {j, j + 1} (j even), the 2 x 2 values one thread holds in an m16n8 accumulator atom. The
// four words are thus four atoms of one thread 32 keys apart, which is how a tiled MMA with four warps along N
// lays a thread's atoms out (with fewer warps along N, a call still serves every atom of the thread that is a
// multiple of 32 keys away). A score is kept iff its byte <= keep_threshold = floor((1 - p) * 255); kept
// values are scaled by 1/(1 - p).
#pragma once

#include <cstdint>

#include <cute/tensor.hpp>

#include "philox.h"

namespace flash {

struct Dropout {
  uint64_t seed = 0;
  uint64_t offset = 0;       // counter base of this call (the generator's offset)
  uint64_t subsequence = 0;  // batch * num_heads + head
  uint32_t key_groups = 0;   // ceil(max seqlen_k / 128): stride of the 16-row groups in the counter
  uint32_t keep_threshold = 255;

  // The Philox words serving the atom whose top-left score is (row, col), row % 16 < 8 and col even.
  CUTLASS_HOST_DEVICE PhiloxWords atom_words(int row, int col) const {
    uint64_t const index = ((uint64_t(row / 16) * key_groups + uint64_t(col / 128)) * 8 + uint64_t(row % 8)) * 16 +
                           uint64_t((col % 32) / 8) * 4 + uint64_t((col % 8) / 2);
    return philox4x32_10(seed, offset + index, subsequence);
  }

  CUTLASS_HOST_DEVICE static uint32_t word(PhiloxWords const& words, int w) {
    return w == 0 ? words.w[0] : w == 1 ? words.w[1] : w == 2 ? words.w[2] : words.w[3];
  }

  // Words of keep bits for a thread's (kRows, kCols) score tile: four bits per m16n8 atom, four atoms per word.
  template <int kRows, int kCols>
  static constexpr int kKeepWords = (kRows / 2 * (kCols / 2) + 3) / 4;

  // Keep bits of a thread's score tile in the (rows, cols) view of m16n8 accumulators, ((2, MMA_M), (2, MMA_N)),
  // tested with kept(). coords: the matching tile-relative (row, col) coordinates; row_base/col_base place the
  // tile in the sequence. kWarpsN: warps along N of the tiled MMA, whose atom n of a thread then sits at key
  // 8 kWarpsN n (+ the warp's and lane's offset): atoms 32 / (8 kWarpsN) apart share a Philox call. The tile
  // (kBlockN keys, a divisor of 128, at a multiple of kBlockN) lies in one 128-key group. Computing the bits
  // first keeps the Philox temporaries out of the register-heavy code that applies them.
  template <int kRows, int kCols, int kWarpsN, class Coords>
  CUTLASS_HOST_DEVICE void keep_bits(uint32_t (&bits)[kKeepWords<kRows, kCols>], Coords const& coords,
                                     int row_base, int col_base) const {
    using namespace cute;
    static_assert(kWarpsN == 1 || kWarpsN == 2 || kWarpsN == 4);
    constexpr int kAtoms = kCols / 2;              // along N
    constexpr int kCallSlots = 4 / kWarpsN;        // atoms n, n + kCallSlots, ... share a call
    constexpr int kSlots = kCallSlots < kAtoms ? kCallSlots : kAtoms;
    // All four bytes of a word at once, in two 16-bit lanes per half: 0x100 + threshold - byte keeps bit 8 of
    // its lane iff byte <= threshold, and never borrows from the next lane.
    uint32_t const lanes = (0x100u + keep_threshold) * 0x00010001u;
    CUTE_UNROLL
    for (int i = 0; i < kKeepWords<kRows, kCols>; ++i) { bits[i] = 0; }
    CUTE_UNROLL
    for (int m = 0; m < kRows / 2; ++m) {
      CUTE_UNROLL
      for (int slot = 0; slot < kSlots; ++slot) {
        auto const first = coords(2 * m, 2 * slot);
        PhiloxWords const words = atom_words(row_base + get<0>(first), col_base + get<1>(first));
        CUTE_UNROLL
        for (int n = slot; n < kAtoms; n += kCallSlots) {
          uint32_t const bytes = word(words, ((col_base + get<1>(coords(2 * m, 2 * n))) / 32) % 4);
          uint32_t const even = (lanes - (bytes & 0x00ff00ffu)) & 0x01000100u;         // bytes 0, 2 -> bits 8, 24
          uint32_t const odd = (lanes - ((bytes >> 8) & 0x00ff00ffu)) & 0x01000100u;  // bytes 1, 3 -> bits 8, 24
          int const atom = m * kAtoms + n;
          bits[atom / 4] |= (even | (odd << 1)) << (2 * (atom % 4));
        }
      }
    }
  }

  // Whether score (r, c) of the tile is kept: byte a * 2 + c % 2 of its atom's word (a = r % 2) sits at bit
  // 8 + 16 a + c % 2, shifted by twice the atom's place in its word of bits.
  template <int kCols, int kWords>
  CUTLASS_HOST_DEVICE static bool kept(uint32_t const (&bits)[kWords], int r, int c) {
    int const atom = (r / 2) * (kCols / 2) + c / 2;
    int const bit = 8 + 16 * (r % 2) + c % 2 + 2 * (atom % 4);
    return (bits[atom / 4] >> bit) & 1u;
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
  d.key_groups = uint32_t((params.seqlen_k + 127) / 128);
  d.keep_threshold = params.dropout_keep_threshold;
  return d;
}

}  // namespace flash
