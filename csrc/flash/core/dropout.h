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
  uint32_t key_groups = 0;   // ceil(seqlen_k / 128): stride of the 16-row groups in the counter
  uint32_t keep_threshold = 255;

  // The Philox words serving the atom whose top-left score is (row, col), row % 16 < 8 and col even.
  // Unsigned arithmetic: the coordinates are never negative, and the divisions become shifts.
  CUTLASS_HOST_DEVICE PhiloxWords atom_words(int row, int col) const {
    uint32_t const r = uint32_t(row), c = uint32_t(col);
    uint64_t const index = (uint64_t(r / 16) * key_groups + c / 128) * 128 +
                           ((r % 8) * 16 + ((c % 32) / 8) * 4 + (c % 8) / 2);
    return philox4x32_10(seed, offset + index, subsequence);
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
    draw_keep_bits<kRows, kCols, kWarpsN, false>(bits, bits, coords, row_base, col_base);
  }

  // keep_bits() of a 64-key tile and, into partner_bits, of the other 64-key tile of its 128-key group (keys
  // col_base ^ 64 of the group, same rows): the atoms of a thread 64 keys apart share a Philox call, so a
  // kernel visiting both tiles draws each call once instead of using half of its words twice.
  template <int kRows, int kCols, int kWarpsN, class Coords>
  CUTLASS_HOST_DEVICE void keep_bits_with_partner(uint32_t (&bits)[kKeepWords<kRows, kCols>],
                                                  uint32_t (&partner_bits)[kKeepWords<kRows, kCols>],
                                                  Coords const& coords, int row_base, int col_base) const {
    draw_keep_bits<kRows, kCols, kWarpsN, true>(bits, partner_bits, coords, row_base, col_base);
  }

  // Whether score (r, c) of the tile is kept: byte a * 2 + c % 2 of its atom's word (a = r % 2) sits at bit
  // 8 + 16 a + c % 2, shifted by twice the atom's place in its word of bits.
  template <int kCols, int kWords>
  CUTLASS_HOST_DEVICE static bool kept(uint32_t const (&bits)[kWords], int r, int c) {
    int const atom = (r / 2) * (kCols / 2) + c / 2;
    int const bit = 8 + 16 * (r % 2) + c % 2 + 2 * (atom % 4);
    return (bits[atom / 4] >> bit) & 1u;
  }

 private:
  // Byte a * 2 + k of a word (the score at row + 8 a, key + k of an atom) becomes bit 8 + 16 a + k of the
  // atom's 2-bit-shifted place in its word of bits (see kept()): all four bytes at once, in two 16-bit lanes
  // per half: 0x100 + threshold - byte keeps bit 8 of its lane iff byte <= threshold, and never borrows from
  // the next lane.
  template <int kWords>
  CUTLASS_HOST_DEVICE void add_word(uint32_t (&bits)[kWords], int atom, uint32_t bytes) const {
    uint32_t const lanes = (0x100u + keep_threshold) * 0x00010001u;
    uint32_t const even = (lanes - (bytes & 0x00ff00ffu)) & 0x01000100u;         // bytes 0, 2 -> bits 8, 24
    uint32_t const odd = (lanes - ((bytes >> 8) & 0x00ff00ffu)) & 0x01000100u;  // bytes 1, 3 -> bits 8, 24
    bits[atom / 4] |= (even | (odd << 1)) << (2 * (atom % 4));
  }

  // The words of an atom are picked at compile time: a thread's first atom sits less than 8 kWarpsN keys into
  // the tile, so atom n's word is (8 kWarpsN n) / 32 in a tile at the start of its 128-key group, two more in a
  // 64-key tile at its second half.
  template <int kRows, int kCols, int kWarpsN, bool kWithPartner, class Coords>
  CUTLASS_HOST_DEVICE void draw_keep_bits(uint32_t (&bits)[kKeepWords<kRows, kCols>],
                                          uint32_t (&partner_bits)[kKeepWords<kRows, kCols>], Coords const& coords,
                                          int row_base, int col_base) const {
    using namespace cute;
    static_assert(kWarpsN == 1 || kWarpsN == 2 || kWarpsN == 4);
    constexpr int kAtoms = kCols / 2;        // along N
    constexpr int kTileKeys = 8 * kWarpsN * kAtoms;
    static_assert(kTileKeys == 64 || kTileKeys == 128, "a tile is one 128-key group or half of one");
    static_assert(!kWithPartner || kTileKeys == 64, "a partner tile needs 64-key tiles");
    constexpr int kCallSlots = 4 / kWarpsN;  // atoms n, n + kCallSlots, ... share a call
    constexpr int kSlots = kCallSlots < kAtoms ? kCallSlots : kAtoms;
    bool const second_half = kTileKeys == 64 && (col_base & 64) != 0;
    CUTE_UNROLL
    for (int i = 0; i < kKeepWords<kRows, kCols>; ++i) {
      bits[i] = 0;
      if constexpr (kWithPartner) { partner_bits[i] = 0; }
    }
    CUTE_UNROLL
    for (int m = 0; m < kRows / 2; ++m) {
      CUTE_UNROLL
      for (int slot = 0; slot < kSlots; ++slot) {
        auto const first = coords(2 * m, 2 * slot);
        PhiloxWords const words = atom_words(row_base + get<0>(first), col_base + get<1>(first));
        CUTE_UNROLL
        for (int n = slot; n < kAtoms; n += kCallSlots) {
          int const w = (8 * kWarpsN * n) / 32;
          if constexpr (kTileKeys == 128) {
            add_word(bits, m * kAtoms + n, words.w[w]);
          } else {
            add_word(bits, m * kAtoms + n, second_half ? words.w[w + 2] : words.w[w]);
            if constexpr (kWithPartner) {
              add_word(partner_bits, m * kAtoms + n, second_half ? words.w[w] : words.w[w + 2]);
            }
          }
        }
      }
    }
  }
};

// The Dropout of (batch, head) for this call, whose sequence has seqlen_k keys (the 16-row groups' stride in the
// counter: a sequence's own length, so that a varlen call's understated max_seqlen_k cannot make two row groups
// share counters); seed and offset come from device memory when params say so.
template <class Params>
CUTLASS_DEVICE Dropout make_dropout(Params const& params, int seqlen_k, int batch, int head) {
  Dropout d;
  d.seed = params.philox_seed_ptr != nullptr ? uint64_t(*params.philox_seed_ptr) : params.philox_seed;
  d.offset = params.philox_offset_ptr != nullptr ? uint64_t(*params.philox_offset_ptr) + params.philox_offset_extra
                                                 : params.philox_offset;
  d.subsequence = uint64_t(batch) * params.num_heads + head;
  d.key_groups = uint32_t((seqlen_k + 127) / 128);
  d.keep_threshold = params.dropout_keep_threshold;
  return d;
}

}  // namespace flash
