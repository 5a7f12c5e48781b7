// FlashAttention forward on sm90a (TMA, wgmma, warp specialisation). A composition: the scheduler gives the CTA
// its (query block, head, batch) tile; warpgroup 0 gives its registers away and one of its threads runs the
// mainloop's loads; the consumer warpgroups take the registers, run the mainloop's GEMMs and softmax, finalise the
// softmax and run the epilogue.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>

#include "../core/block.h"
#include "../core/params.h"
#include "../core/softmax.h"
#include "fragment_layouts.h"
#include "fwd_epilogue.h"
#include "fwd_mainloop.h"
#include "tile_scheduler.h"

namespace flash::sm90 {

using namespace cute;

// kOverlap: the consumers run FwdMainloop::mma_overlapped (GEMMs overlapped with the softmax, ping-pong between the
// consumer warpgroups) instead of FwdMainloop::mma.
template <class Traits, bool kHasWindow, bool kOverlap>
struct FwdKernel {
  using Traits_ = Traits;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;
  using Mainloop = FwdMainloop<Traits, kHasWindow>;
  using Epilogue = FwdEpilogue<Traits>;
  using Scheduler = SingleTileScheduler;
  using Range = typename Mainloop::Range;
  using SharedStorage = typename Mainloop::SharedStorage;
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));

  struct Arguments {
    FwdParams params;
    typename Mainloop::Arguments mainloop;
  };

  CUTE_DEVICE static void run(Arguments const& args, char* smem) {
    FwdParams const& params = args.params;
    SharedStorage& shared = *reinterpret_cast<SharedStorage*>(smem);
    int const warpgroup = cutlass::canonical_warp_group_idx();
    bool const is_producer = warpgroup == 0;
    if (threadIdx.x == 0) { Mainloop::prefetch_descriptors(args.mainloop); }
    Mainloop::init_barriers(shared);
    typename Mainloop::Pipeline pipeline_k(shared.pipeline_k, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    typename Mainloop::Pipeline pipeline_v(shared.pipeline_v, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    __syncthreads();  // barriers initialised before any thread uses them

    WorkTile const tile = Scheduler::tile();
    int n_block_min, n_block_max;
    Range::key_blocks(tile.block, params.seqlen_q, params.seqlen_k, params.window_left, params.window_right,
                      n_block_min, n_block_max);
    if (is_producer) {
      cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
      if (threadIdx.x == 0) {
        auto state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
        Mainloop::load(params, args.mainloop, shared, pipeline_k, pipeline_v, state, tile.block, tile.head,
                       tile.batch, n_block_min, n_block_max);
      }
    } else {
      cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
      int const mma_tidx = threadIdx.x - 128;
      typename Traits::TiledMmaPV mma_pv;
      Tensor acc_o = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});
      clear(acc_o);
      Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
      OnlineSoftmax<decltype(size<0>(acc_o_rows))::value> softmax(params.score_scale_log2);
      if constexpr (kOverlap) {
        typename Mainloop::PipelineState state_k, state_v;
        Mainloop::mma_overlapped(params, shared, pipeline_k, pipeline_v, state_k, state_v, tile.block,
                                 params.seqlen_q, params.seqlen_k, n_block_min, n_block_max, mma_tidx, acc_o,
                                 softmax);
      } else {
        typename Mainloop::PipelineState state;
        Mainloop::mma(params, shared, pipeline_k, pipeline_v, state, tile.block, params.seqlen_q, params.seqlen_k,
                      n_block_min, n_block_max, mma_tidx, acc_o, softmax);
      }
      // Rows that saw no key end with output 0 and lse +inf.
      Tensor lse = softmax.finalize(acc_o_rows, params.score_scale);
      Epilogue::store(params, acc_o, lse, tile.block, tile.head, tile.batch, params.seqlen_q, mma_tidx);
    }
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Traits_::kThreads, 1)
    fwd_kernel(__grid_constant__ const typename Kernel::Arguments args) {
  extern __shared__ __align__(1024) char smem[];
  Kernel::run(args, smem);
}

}  // namespace flash::sm90
