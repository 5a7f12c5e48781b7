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
#include "tile_rows.h"
#include "tile_scheduler.h"

namespace flash::sm90 {

using namespace cute;

// kOverlap: the consumers run FwdMainloop::mma_overlapped (GEMMs overlapped with the softmax, ping-pong between the
// consumer warpgroups) instead of FwdMainloop::mma. kPersistent: persistent CTAs (StaticPersistentScheduler) instead
// of one tile per CTA. kPacked: packed GQA tiles (tile_rows.h; plain consumers): the scheduler's heads are KV heads
// and its blocks run over a sequence's queries times the group, Q is gathered by the consumers and O stored row by
// row. Either way a CTA may compute several query blocks in turn (rounds), so the producer loads a block's Q into
// a buffer only once the consumers are done with the buffer's last block (barrier_q_empty). Persistent CTAs have two
// Q buffers where they fit, so that a block's Q loads while the last block's S GEMMs still run. kCrossTile: the
// consumer warpgroups of persistent CTAs do not meet at a block's end: each stores its own rows, and overlapped ones
// keep one PingPong for all their blocks, so one warpgroup's epilogue runs under another's GEMMs (switchable:
// Arguments::cross_tile).
template <class Traits, bool kHasWindow, bool kOverlap, bool kPersistent, bool kPacked = false>
struct FwdKernel {
  static_assert(!(kPacked && kOverlap), "packed tiles run the plain consumers");
  using Traits_ = Traits;
  static constexpr bool kPersistent_ = kPersistent;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;
  // Persistent CTAs take their blocks' Q in turn from two buffers where they fit (Traits::kQBuffersFit).
  using Mainloop = FwdMainloop<Traits, kHasWindow, kPersistent && !kPacked ? Traits::kQBuffersFit : 1>;
  using QTurn = typename Mainloop::QTurn;
  // Not where the output is staged in Q's buffer: a warpgroup could not store its rows before the others' S GEMMs
  // are done with Q. (In the three-warpgroup tile, whose consumers have 160 registers, the per-warpgroup stores
  // cost 60 B of spills, tile state loaded twice per key block: to be weighed against what they gain.)
  static constexpr bool kCrossTile = kPersistent && !kPacked && !Traits::kOInQ;
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
    bool cross_tile;  // kCrossTile's switch (FLASH_ATTN_SM90_FWD_CROSS_TILE)
  };

  // A tile's rows in a sequence of seqlen_q queries: packed tiles hold each query once per head of the group.
  CUTE_HOST_DEVICE static int rows_of(FwdParams const& params, int seqlen_q) {
    return kPacked ? seqlen_q * params.head_ratio : seqlen_q;
  }

  // The half-open range [min, max) of key blocks a tile visits.
  struct KeyBlocks {
    int min, max;
    CUTE_DEVICE KeyBlocks(FwdParams const& params, SeqlenInfo const& seq, WorkTile const& tile) {
      if constexpr (kPacked) {  // the keys of the queries of the tile's first and last rows
        PackedRows const packing{params.head_ratio};
        Range::key_blocks_for_rows(packing.query(tile.block * kBlockM), packing.query((tile.block + 1) * kBlockM - 1),
                                   seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, min, max);
      } else {
        Range::key_blocks(tile.block, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, min, max);
      }
    }
  };

  // compact_varlen: a varlen call's tile counts carry its query prefix sums, so that the one-tile-per-CTA
  // scheduler may launch its real query blocks only (SingleTileScheduler; not for packed tiles, whose rows it does
  // not count).
  static TileCounts make_tile_counts(FwdParams const& params, bool compact_varlen) {
    bool const compact = compact_varlen && !kPacked;
    return TileCounts{(rows_of(params, params.seqlen_q) + kBlockM - 1) / kBlockM,
                      kPacked ? params.num_heads_k : params.num_heads, params.batch,
                      compact ? params.cu_seqlens_q : nullptr, params.total_q, kBlockM};
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
      for (; tile.block * kBlockM < rows_of(args.params, seq.seqlen_q); tile.block += stride) {
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

    // Query blocks this CTA has started: block `round` takes Q buffer QTurn::of_round(round).buffer, whose barrier_q
    // and barrier_q_empty complete once per block that uses it.
    int round = 0;
    int const q_buffers_log2 = args.mainloop.q_buffers_log2;
    if (is_producer) {
      cutlass::arch::warpgroup_reg_dealloc<Traits::kProducerRegs>();
      if (Mainloop::is_load_thread(args.mainloop)) {
        auto state = cutlass::make_producer_start_state<typename Mainloop::Pipeline>();
        for_each_block(args, scheduler, [&](SeqlenInfo const& seq, WorkTile const& tile) {
          // The Q buffer's last block is done with it (packed tiles: the consumers load their own).
          QTurn const q = QTurn::of_round(round, q_buffers_log2);
          if (!kPacked && QTurn::reuses(round, q_buffers_log2)) {
            shared.barrier_q_empty[q.buffer].wait(q.phase ^ 1);
          }
          KeyBlocks const keys(params, seq, tile);
          int const kv_head = kPacked ? tile.head : tile.head / params.head_ratio;
          Mainloop::load(params, args.mainloop, shared, pipeline_k, pipeline_v, state, seq, /*q_by_tma=*/!kPacked,
                         q.buffer, tile.block, tile.head, kv_head, tile.batch, keys.min, keys.max);
          ++round;
        });
      }
    } else {
      cutlass::arch::warpgroup_reg_alloc<Traits::kConsumerRegs>();
      typename Mainloop::PipelineState state_k, state_v;
      // Overlapped consumers take turns to issue GEMMs, plain ones to exponentiate (FwdMainloop::kExpTurns).
      PingPong turns(warpgroup - 1, /*across_tiles=*/kOverlap && kCrossTile && args.cross_tile);
      for_each_block(args, scheduler, [&](SeqlenInfo const& seq, WorkTile const& tile) {
        consume(args, storage, pipeline_k, pipeline_v, state_k, state_v, seq, tile, KeyBlocks(params, seq, tile),
                QTurn::of_round(round, q_buffers_log2), turns);
        ++round;
      });
      turns.finish();
      Epilogue::drain(threadIdx.x - 128);
    }
  }

  // One query block on the consumer warpgroups: mainloop, softmax finalisation, epilogue. state_v is used only by
  // the overlapped mainloop (the plain one keeps K and V in step with state_k), and turns (the CTA's PingPong).
  CUTE_DEVICE static void consume(Arguments const& args, SharedStorage& storage,
                                  typename Mainloop::Pipeline& pipeline_k, typename Mainloop::Pipeline& pipeline_v,
                                  typename Mainloop::PipelineState& state_k,
                                  typename Mainloop::PipelineState& state_v, SeqlenInfo const& seq,
                                  WorkTile const& tile, KeyBlocks const& keys, QTurn q, PingPong& turns) {
    FwdParams const& params = args.params;
    typename Mainloop::SharedStorage& shared = storage.mainloop;
    int const mma_tidx = threadIdx.x - 128;
    typename Traits::TiledMmaPV mma_pv;
    Tensor acc_o = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_o);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    constexpr int kRows = decltype(size<0>(acc_o_rows))::value;
    OnlineSoftmax<kRows> softmax(params.score_scale_log2);
    if constexpr (kPacked) {
      Tensor coords = mma_pv.get_thread_slice(mma_tidx).partition_C(
          make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
      PackedTileRows<kRows> const rows(params, make_tensor(coords.data(), acc_to_rowcol(coords.layout())),
                                       Int<kBlockM>{}, tile.block, tile.head, tile.batch);
      Mainloop::load_q_rows(params, shared, seq, tile.block, tile.head, tile.batch, mma_tidx);
      Mainloop::mma(params, args.mainloop, shared, pipeline_k, pipeline_v, state_k, seq, rows, keys.min, keys.max,
                    mma_tidx, acc_o, softmax, QTurn{0, -1}, turns);
    } else {
      typename Mainloop::PlainRows const rows{tile.block,
                                              make_alibi(params, tile.batch, tile.head, seq.seqlen_q, seq.seqlen_k)};
      if constexpr (kOverlap) {
        Mainloop::mma_overlapped(params, args.mainloop, shared, pipeline_k, pipeline_v, state_k, state_v, seq, rows,
                                 keys.min, keys.max, mma_tidx, acc_o, softmax, q, turns);
      } else {
        Mainloop::mma(params, args.mainloop, shared, pipeline_k, pipeline_v, state_k, seq, rows, keys.min, keys.max,
                      mma_tidx, acc_o, softmax, q, turns);
      }
    }
    // Every S GEMM of the block is done: the producer may load the next Q, unless the epilogue stages the output
    // in Q's buffer (then after the epilogue, whose TMA store has read it by then).
    if constexpr (!Traits::kOInQ) { shared.barrier_q_empty[q.buffer].arrive(); }
    // Rows that saw no key end with output 0 and lse +inf.
    Tensor lse = softmax.finalize(acc_o_rows, params.score_scale);
    if constexpr (kPacked) {
      Epilogue::store_packed(params, seq, acc_o, lse, tile.block, tile.head, tile.batch, mma_tidx);
    } else {
      Epilogue::store(args.epilogue, params, Epilogue::buffer(storage.epilogue, Mainloop::q_smem(shared, q.buffer)),
                      seq, acc_o, lse, tile.block, tile.head, tile.batch, mma_tidx,
                      /*per_warpgroup=*/kCrossTile && args.cross_tile);
    }
    if constexpr (Traits::kOInQ) { shared.barrier_q_empty[q.buffer].arrive(); }
  }
};

template <class Kernel>
__global__ void __launch_bounds__(Kernel::Traits_::kThreads, 1)
    fwd_kernel(__grid_constant__ const typename Kernel::Arguments args) {
  extern __shared__ __align__(1024) char smem[];
  Kernel::run(args, smem);
}

}  // namespace flash::sm90
