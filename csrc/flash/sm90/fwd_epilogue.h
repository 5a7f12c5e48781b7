// sm90 forward epilogue: the normalised output goes from the consumers' wgmma accumulators straight to global
// memory, two adjacent columns (4 bytes) per store, predicated on the sequence end and the head dim; each row's lse
// is written by the lane that holds column 0 of that row.
#pragma once

#include <cute/tensor.hpp>

#include "../core/convert.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "fragment_layouts.h"

namespace flash::sm90 {

using namespace cute;

template <class Traits>
struct FwdEpilogue {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;

  // acc_o: the normalised (MMA, MMA_M, MMA_N) fragment of TiledMmaPV; lse: one value per row of its rowcol view.
  template <class AccO, class Lse>
  CUTE_DEVICE static void store(FwdParams const& params, SeqlenInfo const& seq, AccO const& acc_o, Lse const& lse,
                                int m_block, int head, int batch, int mma_tidx) {
    int const seqlen_q = seq.seqlen_q;
    typename Traits::TiledMmaPV mma_pv;
    auto thr_pv = mma_pv.get_thread_slice(mma_tidx);
    Tensor rO = convert_fragment<Element>(acc_o);
    Tensor rO_rows = make_tensor(rO.data(), acc_to_rowcol(rO.layout()));
    Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor coords = make_tensor(tOcO.data(), acc_to_rowcol(tOcO.layout()));
    int const row_base = m_block * kBlockM;
    Element* o_base = static_cast<Element*>(params.o_ptr) +
                      seq.q_offset(params.o_batch_stride, params.o_row_stride, batch) +
                      int64_t(head) * params.o_head_stride;
    float* lse_base = params.softmax_lse_ptr + seq.lse_offset(params.lse_batch_stride, batch) +
                      int64_t(head) * params.lse_head_stride;
    static_assert(decltype(size<1, 0>(rO_rows))::value == 2, "columns come in adjacent pairs");
    CUTE_UNROLL
    for (int r = 0; r < size<0>(rO_rows); ++r) {
      int const row = row_base + get<0>(coords(r, 0));
      if (row >= seqlen_q) { continue; }
      Element* o_row = o_base + int64_t(row) * params.o_row_stride;
      CUTE_UNROLL
      for (int c = 0; c < size<1>(rO_rows); c += 2) {
        int const col = get<1>(coords(r, c));
        if (col < params.head_dim) {  // head_dim is a multiple of 8, so col + 1 is in range too
          Element pair[2] = {rO_rows(r, c), rO_rows(r, c + 1)};
          *reinterpret_cast<uint32_t*>(o_row + col) = *reinterpret_cast<uint32_t const*>(pair);
        }
      }
      if (get<1>(coords(r, 0)) == 0) { lse_base[row] = lse(r); }
    }
  }
};

}  // namespace flash::sm90
