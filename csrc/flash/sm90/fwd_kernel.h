// FlashAttention forward on sm90a (TMA, wgmma, warp specialisation). A composition: the scheduler gives the CTA
// its (query block, head, batch) tile; warpgroup 0 gives its registers away and one of its threads runs the
// mainloop's loads; the consumer warpgroups take the registers, run the mainloop's GEMMs and softmax, finalise the
// softmax and run the epilogue.
#pragma once

#include <type_traits>

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
// consumer warpgroups) instead of FwdMainloop::mma. kPersistent: persistent CTAs (StaticPersistentScheduler) instead
// of one tile per CTA.
template <class Traits, bool kHasWindow, bool kOverlap, bool kPersistent>
struct FwdKernel {
  using Traits_ = Traits;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;
  using Mainloop = FwdMainloop<Traits, kHasWindow>;
  using Epilogue = FwdEpilogue<Traits>;
  using Scheduler = std::conditional_t<kPersistent, StaticPersistentScheduler, SingleTileScheduler>;
  using Range = typename Mainloop::Range;
  using SharedStorage = typename Mainloop::SharedStorage;
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));

  struct Arguments {
    FwdParams params;
    typename Mainloop::Arguments mainloop;
  };

  // The half-open range [min, max) of key blocks a tile visits.
  struct KeyBlocks {
    int min, max;
    CUTE_DEVICE KeyBlocks(FwdParams const& params, WorkTile const& tile) {
      Range::key_blocks(tile.block, params.seqlen_q, params.seqlen_k, params.window_left, params.window_right, min,
                        max);
    }
  };

  CUTE_DEVICE static void run(Arguments const& args, char* smem) {
    FwdParams const& params = args.params;
    SharedStorage& shared = *reinterpret_cast<SharedStorage*>(smem);
    int const warpgroup = cutlass::canonical_warp_group_idx();
    bool const is_producer = warpgroup == 0;
    if (threadIdx.x == 0) { Mainloop::prefetch_descriptors(args.mainloop); }
    Mainloop::template init_barriers<kPersistent>(shared);
    typename Mainloop::Pipeline pipeline_k(shared.pipeline_k, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    typename Mainloop::Pipeline pipeline_v(shared.pipeline_v, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    __syncthreads();  // barriers initialised before any thread uses them

    if constexpr (kPersistent) {
      int const num_m_blocks = (params.seqlen_q + kBlockM - 1) / kBlockM;
      Scheduler scheduler(num_m_blocks, params.num_heads, params.batch);
      if (is_producer) {
        cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
        if (threadIdx.x == 0) {
          auto state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
          int round = 0;
          for (WorkTile tile; scheduler.next(tile); ++round) {
            if (round > 0) { shared.barrier_q_empty.wait((round - 1) & 1); }  // the last tile's Q is consumed
            KeyBlocks const keys(params, tile);
            produce(params, args, shared, pipeline_k, pipeline_v, state, tile, keys);
          }
        }
      } else {
        cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
        typename Mainloop::PipelineState state_k, state_v;
        int round = 0;
        for (WorkTile tile; scheduler.next(tile); ++round) {
          KeyBlocks const keys(params, tile);
          consume(params, shared, pipeline_k, pipeline_v, state_k, state_v, tile, keys, round & 1);
        }
      }
    } else {
      WorkTile const tile = Scheduler::tile();
      KeyBlocks const keys(params, tile);
      if (is_producer) {
        cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
        if (threadIdx.x == 0) {
          auto state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
          produce(params, args, shared, pipeline_k, pipeline_v, state, tile, keys);
        }
      } else {
        cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
        typename Mainloop::PipelineState state_k, state_v;
        consume(params, shared, pipeline_k, pipeline_v, state_k, state_v, tile, keys, /*q_phase=*/0);
      }
    }
  }

  // The producer thread's loads of one tile.
  template <class State>
  CUTE_DEVICE static void produce(FwdParams const& params, Arguments const& args, SharedStorage& shared,
                                  typename Mainloop::Pipeline& pipeline_k, typename Mainloop::Pipeline& pipeline_v,
                                  State& state, WorkTile const& tile, KeyBlocks const& keys) {
    Mainloop::load(params, args.mainloop, shared, pipeline_k, pipeline_v, state, tile.block, tile.head, tile.batch,
                   keys.min, keys.max);
  }

  // One tile on the consumer warpgroups: mainloop, softmax finalisation, epilogue. state_v is used only by the
  // overlapped mainloop (the plain one keeps K and V in step with state_k).
  CUTE_DEVICE static void consume(FwdParams const& params, SharedStorage& shared,
                                  typename Mainloop::Pipeline& pipeline_k, typename Mainloop::Pipeline& pipeline_v,
                                  typename Mainloop::PipelineState& state_k,
                                  typename Mainloop::PipelineState& state_v, WorkTile const& tile,
                                  KeyBlocks const& keys, int q_phase) {
    int const mma_tidx = threadIdx.x - 128;
    typename Traits::TiledMmaPV mma_pv;
    Tensor acc_o = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_o);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    OnlineSoftmax<decltype(size<0>(acc_o_rows))::value> softmax(params.score_scale_log2);
    if constexpr (kOverlap) {
      Mainloop::mma_overlapped(params, shared, pipeline_k, pipeline_v, state_k, state_v, tile.block,
                               params.seqlen_q, params.seqlen_k, keys.min, keys.max, mma_tidx, acc_o, softmax,
                               q_phase);
    } else {
      Mainloop::mma(params, shared, pipeline_k, pipeline_v, state_k, tile.block, params.seqlen_q, params.seqlen_k,
                    keys.min, keys.max, mma_tidx, acc_o, softmax, q_phase);
    }
    if constexpr (kPersistent) { shared.barrier_q_empty.arrive(); }  // every S GEMM of the tile is done
    // Rows that saw no key end with output 0 and lse +inf.
    Tensor lse = softmax.finalize(acc_o_rows, params.score_scale);
    Epilogue::store(params, acc_o, lse, tile.block, tile.head, tile.batch, params.seqlen_q, mma_tidx);
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Traits_::kThreads, 1)
    fwd_kernel(__grid_constant__ const typename Kernel::Arguments args) {
  extern __shared__ __align__(1024) char smem[];
  Kernel::run(args, smem);
}

}  // namespace flash::sm90
