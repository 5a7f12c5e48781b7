// Forward epilogue: the normalised output tile goes registers -> shared memory (reusing Q's space)
// -> global memory in 16-byte row-contiguous vectors; each row's lse is written by the lane that
// owns column 0 of that row.
#pragma once

#include <cute/tensor.hpp>

#include "fragment_layouts.h"
#include "tile_store.h"

namespace flash::sm80 {

using namespace cute;

template <class Traits, bool kEvenCols>
struct FwdEpilogue {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;

  // acc_o: the thread's (MMA, MMA_M, MMA_N) fp32 output fragment, already normalised.
  // lse: one value per row of acc_to_rowcol(acc_o). rows_left: valid rows in this tile.
  template <class AccO, class Lse, class GmemO, class GmemLse>
  CUTE_DEVICE static void store(AccO const& acc_o, Lse const& lse, GmemO& gO, GmemLse& gLse,
                                Element* smem, int rows_left, int head_dim, int tidx) {
    typename Traits::TiledMma tiled_mma;
    auto thr_mma = tiled_mma.get_thread_slice(tidx);

    // Registers -> shared memory. The caller has synchronised since the last read of Q.
    Tensor sO = make_tensor(make_smem_ptr(smem), typename Traits::SmemLayoutO{});
    acc_to_smem<Element>(tiled_mma, acc_o, sO, tidx);

    // lse: rows this thread holds; only the lane holding column 0 of a row writes it.
    Tensor cO = make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{});
    Tensor acc_coords = thr_mma.partition_C(cO);
    Tensor row_coords = make_tensor(acc_coords.data(), acc_to_rowcol(acc_coords.layout()));
    if (get<1>(row_coords(0, 0)) == 0) {
      CUTE_UNROLL
      for (int r = 0; r < size<0>(row_coords); ++r) {
        int const row = get<0>(row_coords(r, 0));
        if (row < rows_left) { gLse(row) = lse(r); }
      }
    }
    __syncthreads();

    // Shared memory -> global memory, 16 bytes per access.
    smem_to_gmem<kEvenCols>(typename Traits::GmemTiledCopyO{}, sO, gO, rows_left, head_dim, tidx);
  }
};

}  // namespace flash::sm80
