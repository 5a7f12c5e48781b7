// FlashAttention forward on sm80 instructions (cp.async, ldmatrix, mma.sync); runs on sm80+. A composition:
// the tile scheduler hands the CTA its (query block, head, batch) tiles, the mainloop (fwd_mainloop.h) computes a
// tile's unnormalised output and row statistics, the softmax finalises them and the epilogue (fwd_epilogue.h)
// stores O and lse.
#pragma once

#include <cute/tensor.hpp>

#include "../core/block.h"
#include "../core/block_loop.h"
#include "../core/dropout.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "../core/softmax.h"
#include "../core/tile_scheduler.h"
#include "fragment_layouts.h"
#include "fwd_epilogue.h"
#include "fwd_mainloop.h"
#include "tile_scheduler.h"

namespace flash::sm80 {

using namespace cute;

// kHasExtras: softcap, ALiBi and dropout are compiled in (each still switched on by params).
template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
struct FwdKernel {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  using Range = BlockRange<kBlockM, kBlockN, kHasWindow>;
  using Scheduler = SequenceBlockScheduler</*kLongestFirst=*/true>;  // grid: fwd_launch.h
  using Mainloop = FwdMainloop<Traits, kHasWindow, kEvenCols, kHasExtras>;
  using Epilogue = FwdEpilogue<Traits, kEvenCols>;

  CUTE_DEVICE static void run(FwdParams const& params, char* smem) {
    int const num_m_blocks = (params.seqlen_q + kBlockM - 1) / kBlockM;
    if (kHasExtras && params.rng_state_ptr != nullptr && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
      Dropout const d = make_dropout(params, 0, 0, 0);  // the backward replays this call's seed and offset
      params.rng_state_ptr[0] = int64_t(d.seed);
      params.rng_state_ptr[1] = int64_t(d.offset);
    }
    Scheduler::for_each_tile(num_m_blocks, [&](WorkTile const& tile) {
      SeqlenInfo const seq(params, tile.batch);
      if (tile.block * kBlockM >= seq.seqlen_q) { return false; }
      run_block(params, smem, seq, tile.batch, tile.head, tile.block);
      return true;
    });
  }

  CUTE_DEVICE static void run_block(FwdParams const& params, char* smem, SeqlenInfo const& seq, int batch, int head,
                                    int m_block) {
    int const tidx = opaque_thread_idx();
    int const row_base = m_block * kBlockM;
    int const rows_left = seq.seqlen_q - row_base;
    int n_block_min, n_block_max;
    Range::key_blocks(m_block, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, n_block_min,
                      n_block_max);

    typename Traits::TiledMma tiled_mma;
    auto const tile_q = Shape<Int<kBlockM>, Int<kHeadDim>>{};
    Tensor acc_o = partition_fragment_C(tiled_mma, tile_q);
    clear(acc_o);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    OnlineSoftmax<decltype(size<0>(acc_o_rows))::value> softmax(params.score_scale_log2);

    Mainloop::run(params, smem, seq, batch, head, m_block, n_block_min, n_block_max, tidx, acc_o, softmax);

    // Rows that saw no key (no key blocks at all, or all masked) end with output 0 and lse +inf.
    Tensor lse = softmax.finalize(acc_o_rows, params.score_scale);
    if (kHasExtras && params.has_dropout) {
      CUTE_UNROLL
      for (int i = 0; i < size(acc_o); ++i) { acc_o(i) *= params.dropout_scale; }
    }
    Element* o_base = static_cast<Element*>(params.o_ptr) +
                      seq.q_offset(params.o_batch_stride, params.o_row_stride, batch) +
                      head * params.o_head_stride + int64_t(row_base) * params.o_row_stride;
    float* lse_base = params.softmax_lse_ptr + seq.lse_offset(params.lse_batch_stride, batch) +
                      head * params.lse_head_stride + row_base;
    Tensor gO = make_tensor(make_gmem_ptr(o_base), tile_q, make_stride(params.o_row_stride, _1{}));
    Tensor gLse = make_tensor(make_gmem_ptr(lse_base), Shape<Int<kBlockM>>{});
    Epilogue::store(acc_o, lse, gO, gLse, reinterpret_cast<Element*>(smem), rows_left, params.head_dim, tidx);
  }
};

template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
__global__ void __launch_bounds__(Traits::kNThreads) fwd_kernel(__grid_constant__ const FwdParams params) {
  extern __shared__ __align__(128) char smem[];
  FwdKernel<Traits, kHasWindow, kEvenCols, kHasExtras>::run(params, smem);
}

}  // namespace flash::sm80
