// FlashAttention backward on sm80 instructions (cp.async, ldmatrix, mma.sync); runs on sm80+. A composition: the tile
// scheduler hands the CTA its (key block, KV head, batch) tiles, the mainloop (bwd_mainloop.h) accumulates the key
// block's dK and dV (and adds its dQ contributions), the epilogue (bwd_epilogue.h) stores dK and dV. The prep and
// dQ conversion kernels around it are in bwd_prep.h.
#pragma once

#include <cute/tensor.hpp>

#include "../core/block_loop.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "../core/tile_scheduler.h"
#include "bwd_epilogue.h"
#include "bwd_mainloop.h"
#include "tile_scheduler.h"

namespace flash::sm80 {

using namespace cute;

// kHasExtras: softcap, ALiBi and dropout are compiled in (each still switched on by params).
template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
struct BwdKernel {
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  using Scheduler = SequenceBlockScheduler</*kLongestFirst=*/false>;  // grid: bwd_launch.h
  using Mainloop = BwdMainloop<Traits, kHasWindow, kEvenCols, kHasExtras>;
  using Epilogue = BwdEpilogue<Traits, kEvenCols>;

  CUTE_DEVICE static void run(BwdParams const& params, char* smem) {
    // Key blocks of one sequence are consecutive CTAs, so the dQ turn order (key-block order) is also the launch
    // order. An understated max_seqlen_k leaves blocks beyond the grid (tile_scheduler.h): each CTA's blocks ascend,
    // and every block it waits for in deterministic mode is lower, handled by a CTA of the same batch and head, so
    // the turns still cannot deadlock.
    int const num_n_blocks = (params.seqlen_k + kBlockN - 1) / kBlockN;
    Scheduler::for_each_tile(num_n_blocks, [&](WorkTile const& tile) {
      SeqlenInfo const seq(params, tile.batch);
      if (tile.block * kBlockN >= seq.seqlen_k) { return false; }
      run_block(params, smem, seq, tile.batch, tile.head, tile.block);
      return true;
    });
  }

  CUTE_DEVICE static void run_block(BwdParams const& params, char* smem, SeqlenInfo const& seq, int batch,
                                    int kv_head, int n_block) {
    int const tidx = opaque_thread_idx();
    typename Traits::TiledMmadKV mma_dkv;
    Tensor acc_dk = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
    Tensor acc_dv = partition_fragment_C(mma_dkv, Shape<Int<kBlockN>, Int<kHeadDim>>{});
    clear(acc_dk);
    clear(acc_dv);
    Mainloop::run(params, smem, seq, batch, kv_head, n_block, tidx, acc_dk, acc_dv);
    // A key block no query sees (no steps) writes zeros.
    int const key_base = n_block * kBlockN;
    Epilogue::store(params, seq, acc_dk, acc_dv, smem, kv_head, key_base, seq.seqlen_k - key_base, tidx);
  }
};

template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
__global__ void __launch_bounds__(Traits::kNThreads) bwd_kernel(__grid_constant__ const BwdParams params) {
  extern __shared__ __align__(128) char smem[];
  BwdKernel<Traits, kHasWindow, kEvenCols, kHasExtras>::run(params, smem);
}

}  // namespace flash::sm80
