// FlashAttention forward on sm90a (TMA, wgmma, warp specialisation). A composition: the scheduler gives the CTA
// its (query block, head, batch) tile; warpgroup 0 gives its registers away and one of its threads (a few, for a
// paged cache loaded in chunks) runs the mainloop's loads; the consumer warpgroups take the registers, run the
// mainloop's GEMMs and softmax, finalise the softmax and run the epilogue.
#pragma once

#include <type_traits>

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>

#include "../core/block.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "../core/softmax.h"
#include "fragment_layouts.h"
#include "fwd_epilogue.h"
#include "fwd_mainloop.h"
#include "tile_scheduler.h"

namespace flash::sm90 {

using namespace cute;

// kOverlap: the consumers run FwdMainloop::mma_overlapped (GEMMs overlapped with the softmax, ping-pong between the
// consumer warpgroups) instead of FwdMainloop::mma. kPersistent: persistent CTAs (StaticPersistentScheduler) instead
// of one tile per CTA. Either way a CTA may compute several query blocks in turn (rounds), so the producer loads a
// block's Q only once the consumers are done with the last one's (barrier_q_empty).
template <class Traits, bool kHasWindow, bool kOverlap, bool kPersistent>
struct FwdKernel {
  using Traits_ = Traits;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;
  using Mainloop = FwdMainloop<Traits, kHasWindow>;
  using Epilogue = FwdEpilogue<Traits>;
  using Scheduler = std::conditional_t<kPersistent, StaticPersistentScheduler, SingleTileScheduler>;
  using Range = typename Mainloop::Range;
  struct SharedStorage {
    typename Mainloop::SharedStorage mainloop;
    typename Epilogue::SharedStorage epilogue;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));

  struct Arguments {
    FwdParams params;
    typename Mainloop::Arguments mainloop;
    typename Epilogue::Arguments epilogue;
    TileCounts tile_counts;
    typename Scheduler::Arguments scheduler;
  };

  // The half-open range [min, max) of key blocks a tile visits.
  struct KeyBlocks {
    int min, max;
    CUTE_DEVICE KeyBlocks(FwdParams const& params, SeqlenInfo const& seq, WorkTile const& tile) {
      Range::key_blocks(tile.block, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, min, max);
    }
  };

  // compact_varlen: a varlen call's tile counts carry its query prefix sums, so that the one-tile-per-CTA
  // scheduler may launch its real query blocks only (SingleTileScheduler).
  static TileCounts make_tile_counts(FwdParams const& params, bool compact_varlen) {
    return TileCounts{(params.seqlen_q + kBlockM - 1) / kBlockM, params.num_heads, params.batch,
                      compact_varlen ? params.cu_seqlens_q : nullptr, params.total_q, kBlockM};
  }

  // Calls fn(seq, tile) for each query block the CTA computes, in order: each tile the scheduler gives and, where
  // a varlen sequence is longer than the grid holds blocks for (an understated max_seqlen_q), its blocks one
  // scheduler stride, two strides, ... further on; blocks past the sequence's end are skipped. The producer and
  // the consumers walk the same list.
  template <class Fn>
  CUTE_DEVICE static void for_each_block(Arguments const& args, Scheduler& scheduler, Fn&& fn) {
    int const stride = scheduler.block_stride();
    for (WorkTile tile; scheduler.next(tile);) {
      SeqlenInfo const seq(args.params, tile.batch);
      for (; tile.block * kBlockM < seq.seqlen_q; tile.block += stride) {
        fn(seq, tile);
        if (stride == 0) { break; }
      }
    }
  }

  CUTE_DEVICE static void run(Arguments const& args, char* smem) {
    FwdParams const& params = args.params;
    SharedStorage& storage = *reinterpret_cast<SharedStorage*>(smem);
    typename Mainloop::SharedStorage& shared = storage.mainloop;
    int const warpgroup = cutlass::canonical_warp_group_idx();
    bool const is_producer = warpgroup == 0;
    if (threadIdx.x == 0) {
      Mainloop::prefetch_descriptors(args.mainloop);
      Epilogue::prefetch_descriptor(args.epilogue);
    }
    Mainloop::init_barriers(shared);
    typename Mainloop::Pipeline pipeline_k(shared.pipeline_k, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    typename Mainloop::Pipeline pipeline_v(shared.pipeline_v, Mainloop::pipeline_params(is_producer),
                                           Shape<_1, _1, _1>{});
    Scheduler scheduler(args.tile_counts, args.scheduler);
    scheduler.prepare();  // every warp, before the roles split
    __syncthreads();  // barriers initialised before any thread uses them

    int round = 0;  // query blocks this CTA has started: barrier_q and barrier_q_empty complete once per block
    if (is_producer) {
      cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
      if (Mainloop::is_load_thread(args.mainloop)) {
        auto state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
        for_each_block(args, scheduler, [&](SeqlenInfo const& seq, WorkTile const& tile) {
          if (round > 0) { shared.barrier_q_empty.wait((round - 1) & 1); }  // the last block's Q is consumed
          KeyBlocks const keys(params, seq, tile);
          Mainloop::load(params, args.mainloop, shared, pipeline_k, pipeline_v, state, seq, tile.block, tile.head,
                         tile.batch, keys.min, keys.max);
          ++round;
        });
      }
    } else {
      cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
      typename Mainloop::PipelineState state_k, state_v;
      for_each_block(args, scheduler, [&](SeqlenInfo const& seq, WorkTile const& tile) {
        consume(args, storage, pipeline_k, pipeline_v, state_k, state_v, seq, tile, KeyBlocks(params, seq, tile),
                round & 1);
        ++round;
      });
      Epilogue::drain(threadIdx.x - 128);
    }
  }

  // One query block on the consumer warpgroups: mainloop, softmax finalisation, epilogue. state_v is used only by
  // the overlapped mainloop (the plain one keeps K and V in step with state_k).
  CUTE_DEVICE static void consume(Arguments const& args, SharedStorage& storage,
                                  typename Mainloop::Pipeline& pipeline_k, typename Mainloop::Pipeline& pipeline_v,
                                  typename Mainloop::PipelineState& state_k,
                                  typename Mainloop::PipelineState& state_v, SeqlenInfo const& seq,
                                  WorkTile const& tile, KeyBlocks const& keys, int q_phase) {
    FwdParams const& params = args.params;
    typename Mainloop::SharedStorage& shared = storage.mainloop;
    int const mma_tidx = threadIdx.x - 128;
    typename Traits::TiledMmaPV mma_pv;
    Tensor acc_o = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_o);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    OnlineSoftmax<decltype(size<0>(acc_o_rows))::value> softmax(params.score_scale_log2);
    Alibi const alibi = make_alibi(params, tile.batch, tile.head, seq.seqlen_q, seq.seqlen_k);
    if constexpr (kOverlap) {
      Mainloop::mma_overlapped(params, args.mainloop, shared, pipeline_k, pipeline_v, state_k, state_v, seq,
                               tile.block, keys.min, keys.max, alibi, mma_tidx, acc_o, softmax, q_phase);
    } else {
      Mainloop::mma(params, args.mainloop, shared, pipeline_k, pipeline_v, state_k, seq, tile.block, keys.min,
                    keys.max, alibi, mma_tidx, acc_o, softmax, q_phase);
    }
    // Every S GEMM of the block is done: the producer may load the next Q, unless the epilogue stages the output
    // in Q's buffer (then after the epilogue, whose TMA store has read it by then).
    if constexpr (!Traits::kOInQ) { shared.barrier_q_empty.arrive(); }
    // Rows that saw no key end with output 0 and lse +inf.
    Tensor lse = softmax.finalize(acc_o_rows, params.score_scale);
    Epilogue::store(args.epilogue, params, Epilogue::buffer(storage.epilogue, shared.q.data()), seq, acc_o, lse,
                    tile.block, tile.head, tile.batch, mma_tidx);
    if constexpr (Traits::kOInQ) { shared.barrier_q_empty.arrive(); }
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Traits_::kThreads, 1)
    fwd_kernel(__grid_constant__ const typename Kernel::Arguments args) {
  extern __shared__ __align__(1024) char smem[];
  Kernel::run(args, smem);
}

}  // namespace flash::sm90
