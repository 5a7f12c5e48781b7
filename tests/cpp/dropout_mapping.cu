// Host-side check of the dropout keep bits (csrc/flash/dropout.h) for every tile configuration the kernels use:
// for every thread of the forward and backward score tiles, Dropout::keep_bits (which shares Philox calls between
// a thread's atoms) must give each score the bit that the per-score definition gives: byte ((row % 16) / 8) * 2 +
// col % 2 of word (col / 32) % 4 of the call of the atom at (row - row % 16 + row % 8, col - col % 2). Forward and
// backward then drop the same scores whatever their tilings. With 64-key tiles Dropout::keep_bits_with_partner,
// which also returns the bits of the other 64 keys of the 128-key group, must agree too. Built and run by tests/test_dropout_mapping.py.
#include <cstdio>

#include <cute/tensor.hpp>

#include "flash/core/dropout.h"
#include "flash/sm80/bwd_tile_config.h"
#include "flash/sm80/bwd_traits.h"
#include "flash/sm80/fragment_layouts.h"
#include "flash/sm80/fwd_tile_config.h"
#include "flash/sm80/fwd_traits.h"

using namespace cute;
using Element = cutlass::bfloat16_t;

bool keep_reference(flash::Dropout const& d, int row, int col) {
  flash::PhiloxWords const words = d.atom_words(row - row % 16 + row % 8, col - col % 2);
  uint32_t const bytes = words.w[((col - col % 2) / 32) % 4];
  return ((bytes >> (8 * (((row % 16) / 8) * 2 + col % 2))) & 0xffu) <= d.keep_threshold;
}

template <class TiledMma, int kBlockM, int kBlockN, int kWarpsN>
int check(char const* name, int num_threads) {
  int mismatches = 0;
  flash::Dropout d;
  d.seed = 0x1234567890abcdefull;
  d.offset = 4096;
  d.subsequence = 77;
  d.key_groups = 9;  // seqlen_k up to 1152
  TiledMma mma;
  for (uint32_t threshold : {0u, 1u, 150u, 254u, 255u}) {  // the lane arithmetic's edges and a typical value
    d.keep_threshold = threshold;
    for (int row_base : {0, kBlockM, 5 * kBlockM}) {
      for (int col_base = 0; col_base < 1152; col_base += kBlockN) {
        for (int tidx = 0; tidx < num_threads; ++tidx) {
          auto thr = mma.get_thread_slice(tidx);
          Tensor c = thr.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
          Tensor coords = make_tensor(c.data(), flash::sm80::acc_to_rowcol(c.layout()));
          constexpr int kRows = decltype(size<0>(coords))::value, kCols = decltype(size<1>(coords))::value;
          uint32_t bits[flash::Dropout::kKeepWords<kRows, kCols>];
          d.keep_bits<kRows, kCols, kWarpsN>(bits, coords, row_base, col_base);
          for (int r = 0; r < kRows; ++r) {
            for (int col = 0; col < kCols; ++col) {
              int const row_abs = row_base + get<0>(coords(r, col)), col_abs = col_base + get<1>(coords(r, col));
              mismatches += flash::Dropout::kept<kCols>(bits, r, col) != keep_reference(d, row_abs, col_abs);
            }
          }
          if constexpr (kBlockN == 64) {  // one draw for this tile and the other half of its 128-key group
            uint32_t partner_bits[flash::Dropout::kKeepWords<kRows, kCols>];
            d.keep_bits_with_partner<kRows, kCols, kWarpsN>(bits, partner_bits, coords, row_base, col_base);
            int const partner_base = col_base ^ 64;
            for (int r = 0; r < kRows; ++r) {
              for (int col = 0; col < kCols; ++col) {
                int const row_abs = row_base + get<0>(coords(r, col));
                mismatches += flash::Dropout::kept<kCols>(bits, r, col) !=
                              keep_reference(d, row_abs, col_base + get<1>(coords(r, col)));
                mismatches += flash::Dropout::kept<kCols>(partner_bits, r, col) !=
                              keep_reference(d, row_abs, partner_base + get<1>(coords(r, col)));
              }
            }
          }
        }
      }
    }
  }
  printf("%-12s %3dx%-3d warps along N %d: %s\n", name, kBlockM, kBlockN, kWarpsN, mismatches ? "MISMATCH" : "ok");
  return mismatches;
}

template <int kHeadDim>
int check_head_dim() {
  using F = flash::sm80::FwdTileConfig<kHeadDim, false>;
  using FT = flash::sm80::FwdTraits<kHeadDim, F::kBlockM, F::kBlockN, F::kNWarps, Element>;
  using B = flash::sm80::BwdTileConfig<kHeadDim>;
  using BT = flash::sm80::BwdTraits<kHeadDim, B::kBlockM, B::kBlockN, B::kNWarps, B::kWarpsM_SdP, B::kWarpsN_dKV,
                                    B::kWarpsM_dQ, B::kStages, Element>;
  char name[32];
  snprintf(name, sizeof(name), "fwd d%d", kHeadDim);
  int bad = check<typename FT::TiledMma, FT::kBlockM, FT::kBlockN, FT::kWarpsN>(name, FT::kNThreads);
  snprintf(name, sizeof(name), "bwd d%d", kHeadDim);
  bad += check<typename BT::TiledMmaSdP, BT::kBlockM, BT::kBlockN, BT::kWarpsN_SdP>(name, BT::kNThreads);
  return bad;
}

int main() {
  int const bad = check_head_dim<32>() + check_head_dim<64>() + check_head_dim<96>() + check_head_dim<128>() +
                  check_head_dim<192>() + check_head_dim<256>();
  return bad == 0 ? 0 : 1;
}
