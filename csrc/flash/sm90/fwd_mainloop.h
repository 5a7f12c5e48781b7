// sm90 forward mainloop. The producer (one thread of warpgroup 0) loads the Q tile once and streams K and V tiles
// by TMA through a kStages-deep shared-memory ring, each stage guarded by the full/empty mbarriers of a
// PipelineTmaAsync. The consumer warpgroups compute S = Q·Kᵀ on wgmma from shared memory, mask it, run the online
// softmax on the accumulator and add P·V with P in registers.
#pragma once

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm80.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "../core/block.h"
#include "../core/convert.h"
#include "../core/paged.h"
#include "../core/params.h"
#include "../core/score_mods.h"
#include "../core/seqlen.h"
#include "../core/softmax.h"
#include "fragment_layouts.h"
#include "gmem_extents.h"
#include "pingpong.h"
#include "q_turn.h"
#include "tile_rows.h"
#include "wgmma.h"

namespace flash::sm90 {

using namespace cute;

// kQBuffers: Q buffers used in turn by a CTA's query blocks (1, or Traits::kQBuffersFit for persistent CTAs).
template <class Traits, bool kHasWindow, int kQBuffers = 1>
struct FwdMainloop {
  static_assert(kQBuffers == 1 || kQBuffers == 2);
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kStages = Traits::kStages;
  using Range = BlockRange<kBlockM, kBlockN, kHasWindow>;
  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  using PipelineState = cutlass::PipelineState<kStages>;

  // A paged cache in pages that the key tile does not divide: a key block is loaded in chunks of
  // Traits::kPageChunk rows, each within one page (page sizes are multiples of 16), by TMA boxes of a chunk's rows.
  static constexpr int kPageChunk = Traits::kPageChunk;
  static constexpr int kChunks = kBlockN / kPageChunk;
  using SmemLayoutKVChunk = typename Traits::SmemLayoutKVChunk;

  // Global tensors as TMA sees them (gmem_extents.h).
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor<Element const>{}, typename Traits::SmemLayoutQ{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor<Element const>{},
                                       take<0, 2>(typename Traits::SmemLayoutKV{})));
  using TmaKVChunk = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor<Element const>{}, SmemLayoutKVChunk{}));

  struct Arguments {  // kernel parameters (__grid_constant__): the TMA descriptors of q, k and v
    TmaQ tma_q;
    TmaKV tma_k;
    TmaKV tma_v;
    // k and v in chunk-sized boxes: built only for a paged cache whose page size kBlockN does not divide.
    TmaKVChunk tma_k_chunk;
    TmaKVChunk tma_v_chunk;
    bool chunked;
    float rescale_threshold_log2;  // OnlineSoftmax::update_scores' threshold: 0, or kLazyRescaleLog2
    int q_buffers_log2;  // the Q buffers in use: 1 << q_buffers_log2 of the kQBuffers
    bool exp_turns;  // mma(): the consumer warpgroups exponentiate in turns (kExpTurns)
  };

  using QTurn = flash::sm90::QTurn;

  // Whether a call's key blocks are loaded in chunks (a paged cache in pages that kBlockN does not divide).
  CUTE_HOST_DEVICE static bool loads_in_chunks(FwdParams const& params) {
    return params.block_table != nullptr && params.page_size % kBlockN != 0;
  }

  // The lazy rescale's threshold (FLASH_ATTN_SM90_FWD_LAZY_RESCALE, fwd_launch.h): a row's max moves only when it
  // grows by more than 2^8 in exp2's argument, so unnormalised probabilities stay within 256 (fp16 and bf16 hold
  // them; the fp32 sums and O accumulators have room to spare).
  static constexpr float kLazyRescaleLog2 = 8.f;

  static constexpr int kQElements = int(cosize_v<typename Traits::SmemLayoutQ>);

  // mma() with two consumer warpgroups: each takes a PingPong turn for its exponentials, so that the warpgroups'
  // exp2 phases (MUFU-bound: one warp of each warpgroup shares an SM sub-partition's MUFU unit) alternate and each
  // runs while the other warpgroup's GEMMs do, instead of both warpgroups waiting on their GEMMs at once. From d 128
  // up: d 128 gained 6-14% at 512-1k keys (H100, graph-timed). d 64 read 14% lower with them at 512, but in a
  // run's first cell, which reads low (benchmarks/NOTES.md, eighth session): to be measured again. With the turns
  // ptxas spills 144 B in d 96's producer (24 registers), and none without them.
  static constexpr bool kExpTurns = Traits::kMmaWarpgroups == 2 && Traits::kHeadDim >= 128;
  static_assert(kQElements * int(sizeof(Element)) % 1024 == 0, "each Q buffer keeps the swizzle's alignment");

  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, kQBuffers * kQElements> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<typename Traits::SmemLayoutKV>> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<typename Traits::SmemLayoutKV>> v;
    typename Pipeline::SharedStorage pipeline_k;
    typename Pipeline::SharedStorage pipeline_v;
    alignas(8) cutlass::arch::ClusterTransactionBarrier barrier_q[kQBuffers];
    // The consumers are done with the Q in a buffer (a later block of the CTA may load its own there).
    alignas(8) cutlass::arch::ClusterBarrier barrier_q_empty[kQBuffers];
  };

  CUTE_DEVICE static Element* q_smem(SharedStorage& shared, int buffer) {
    return shared.q.data() + buffer * kQElements;
  }

  // one_q_buffer: use one Q buffer even where kQBuffers has two (FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER=0, fwd_launch.h).
  // exp_turns: see kExpTurns (FLASH_ATTN_SM90_FWD_EXP_TURNS).
  static Arguments make_arguments(FwdParams const& params, bool lazy_rescale, bool one_q_buffer, bool exp_turns) {
    auto const q = gmem_tensor(static_cast<Element const*>(params.q_ptr), q_extent(params), params.q_batch_stride,
                               params.q_row_stride, params.q_head_stride);
    auto const k = gmem_tensor(static_cast<Element const*>(params.k_ptr), kv_extent(params), params.k_batch_stride,
                               params.k_row_stride, params.k_head_stride);
    auto const v = gmem_tensor(static_cast<Element const*>(params.v_ptr), kv_extent(params), params.v_batch_stride,
                               params.v_row_stride, params.v_head_stride);
    auto const kv_stage = take<0, 2>(typename Traits::SmemLayoutKV{});
    bool const chunked = loads_in_chunks(params);
    return {make_tma_copy(SM90_TMA_LOAD{}, q, typename Traits::SmemLayoutQ{}),
            make_tma_copy(SM90_TMA_LOAD{}, k, kv_stage),
            make_tma_copy(SM90_TMA_LOAD{}, v, kv_stage),
            chunked ? make_tma_copy(SM90_TMA_LOAD{}, k, SmemLayoutKVChunk{}) : TmaKVChunk{},
            chunked ? make_tma_copy(SM90_TMA_LOAD{}, v, SmemLayoutKVChunk{}) : TmaKVChunk{},
            chunked,
            lazy_rescale ? kLazyRescaleLog2 : 0.f,
            kQBuffers == 2 && !one_q_buffer ? 1 : 0,
            exp_turns && kExpTurns};
  }

  CUTE_DEVICE static void prefetch_descriptors(Arguments const& args) {
    cute::prefetch_tma_descriptor(args.tma_q.get_tma_descriptor());
    if (args.chunked) {
      cute::prefetch_tma_descriptor(args.tma_k_chunk.get_tma_descriptor());
      cute::prefetch_tma_descriptor(args.tma_v_chunk.get_tma_descriptor());
    } else {
      cute::prefetch_tma_descriptor(args.tma_k.get_tma_descriptor());
      cute::prefetch_tma_descriptor(args.tma_v.get_tma_descriptor());
    }
  }

  // Barrier set-up, by one thread, before the CTA-wide barrier that precedes any use.
  CUTE_DEVICE static void init_barriers(SharedStorage& shared) {
    if (threadIdx.x == 0) {
      for (int buffer = 0; buffer < kQBuffers; ++buffer) {
        shared.barrier_q[buffer].init(/*arrive_count=*/1);
        shared.barrier_q_empty[buffer].init(/*arrive_count=*/Traits::kMmaThreads);
      }
    }
  }

  CUTE_DEVICE static typename Pipeline::Params pipeline_params(bool is_producer) {
    typename Pipeline::Params p;
    p.transaction_bytes = Traits::kKVStageBytes;
    p.role = is_producer ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
    p.is_leader = threadIdx.x == 0;
    p.num_consumers = Traits::kMmaThreads;
    return p;
  }

  // Rows [row, row + kRows) of K or V (one head of batch entry or page `entry`) as TMA's source partition.
  template <class Tma, class MKV, int kRows>
  CUTE_DEVICE static auto kv_rows(Tma const& tma, MKV const& m_kv, Int<kRows>, int row, int kv_head, int entry) {
    Tensor g = local_tile(domain_offset(make_coord(row, _0{}), m_kv(_, _, kv_head, entry)),
                          Shape<Int<kRows>, Int<kHeadDim>>{}, make_coord(_0{}, _0{}));
    return tma.get_slice(0).partition_S(g);  // (TMA, TMA_N, TMA_K)
  }

  // The producer threads: thread 0, which loads Q and, one box per key block, K and V; for a chunked call also
  // threads 1 .. kChunks - 1 of its warp: thread c loads chunk c of every K and V block.
  CUTE_DEVICE static bool is_load_thread(Arguments const& args) {
    return threadIdx.x == 0 || (args.chunked && threadIdx.x < kChunks);
  }

  // Producer: run by the load threads (is_load_thread). Key blocks are visited last to first (the consumers' order).
  // q_by_tma: thread 0 loads the tile's Q (of query head `head`) into Q buffer q_buffer; else the consumers do (a
  // packed GQA tile, load_q_rows).
  CUTE_DEVICE static void load(FwdParams const& params, Arguments const& args, SharedStorage& shared,
                               Pipeline& pipeline_k, Pipeline& pipeline_v, PipelineState& state, SeqlenInfo const& seq,
                               bool q_by_tma, int q_buffer, int m_block, int head, int kv_head, int batch,
                               int n_block_min, int n_block_max) {
    if (q_by_tma && threadIdx.x == 0) {
      // The sequence's rows: from its start row (varlen, or left padding) of its batch entry.
      Tensor mQ = domain_offset(make_coord(seq.start_q, _0{}),
                                args.tma_q.get_tma_tensor(q_extent(params))(_, _, head, seq.varlen_q ? 0 : batch));
      Tensor gQ = local_tile(mQ, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m_block, _0{}));
      Tensor sQ = make_tensor(make_smem_ptr(q_smem(shared, q_buffer)), typename Traits::SmemLayoutQ{});
      auto tma_q = args.tma_q.get_slice(0);
      auto& barrier_q = shared.barrier_q[q_buffer];
      barrier_q.arrive_and_expect_tx(Traits::kQBytes);
      copy(args.tma_q.with(reinterpret_cast<uint64_t&>(barrier_q)), tma_q.partition_S(gQ),
           tma_q.partition_D(sQ));
    }
    if (args.chunked) {
      load_chunked(params, args, shared, pipeline_k, pipeline_v, state, seq, kv_head, batch, n_block_min,
                   n_block_max);
      return;
    }
    Tensor sK = make_tensor(make_smem_ptr(shared.k.data()), typename Traits::SmemLayoutKV{});
    Tensor sV = make_tensor(make_smem_ptr(shared.v.data()), typename Traits::SmemLayoutKV{});
    Tensor tKsK = args.tma_k.get_slice(0).partition_D(sK);  // (TMA, TMA_N, TMA_K, stages)
    Tensor tVsV = args.tma_v.get_slice(0).partition_D(sV);
    Tensor mK = args.tma_k.get_tma_tensor(kv_extent(params));
    Tensor mV = args.tma_v.get_tma_tensor(kv_extent(params));
    int const kv_batch = seq.varlen_k ? 0 : seq.kv_batch;
    for (int n_block = n_block_max - 1; n_block >= n_block_min; --n_block) {
      // A key block: kBlockN rows from the sequence's start of its batch entry (kv_batch), or, in a paged cache
      // whose page size kBlockN divides, the block's slots of its page.
      int row = seq.start_k + n_block * kBlockN, entry = kv_batch;
      if (params.block_table != nullptr) {
        PagedSlot const at = paged_slot(params, batch, n_block * kBlockN);
        row = at.slot, entry = at.page;
      }
      pipeline_k.producer_acquire(state);
      copy(args.tma_k.with(*pipeline_k.producer_get_barrier(state)),
           kv_rows(args.tma_k, mK, Int<kBlockN>{}, row, kv_head, entry), tKsK(_, _, _, state.index()));
      pipeline_v.producer_acquire(state);
      copy(args.tma_v.with(*pipeline_v.producer_get_barrier(state)),
           kv_rows(args.tma_v, mV, Int<kBlockN>{}, row, kv_head, entry), tVsV(_, _, _, state.index()));
      ++state;
    }
  }

  // K/V of a paged cache in pages that kBlockN does not divide: load thread c loads chunk c (kPageChunk rows, within
  // one page) of every key block. All load threads wait for the free stage; thread 0, the pipeline's leader, then
  // arrives expecting the whole stage's bytes, which the chunks' boxes add up to (a box that lands before that
  // arrival only takes the transaction count below zero for a while: the phase cannot complete without it). A chunk
  // that starts past the sequence's keys loads the sequence's last chunk again (its block-table entry may lie past
  // the table's row): those rows are masked out of S and zeroed in V (zero_v_tail).
  CUTE_DEVICE static void load_chunked(FwdParams const& params, Arguments const& args, SharedStorage& shared,
                                       Pipeline& pipeline_k, Pipeline& pipeline_v, PipelineState& state,
                                       SeqlenInfo const& seq, int kv_head, int batch, int n_block_min,
                                       int n_block_max) {
    int const chunk = threadIdx.x;
    Tensor mK = args.tma_k_chunk.get_tma_tensor(kv_extent(params));
    Tensor mV = args.tma_v_chunk.get_tma_tensor(kv_extent(params));
    // This thread's chunk of stage 0; stage s is s kBlockN x kHeadDim tiles further on.
    auto chunk_smem = [&](auto const& tma, Element* buffer, int stage) {
      return tma.get_slice(0).partition_D(
          make_tensor(make_smem_ptr(buffer + stage * (kBlockN * kHeadDim) + chunk * Traits::kKVChunkOffset),
                      SmemLayoutKVChunk{}));
    };
    int const last_chunk = (seq.seqlen_k - 1) / kPageChunk * kPageChunk;
    for (int n_block = n_block_max - 1; n_block >= n_block_min; --n_block) {
      PagedSlot const at = paged_slot(params, batch, min(n_block * kBlockN + chunk * kPageChunk, last_chunk));
      pipeline_k.producer_acquire(state);
      copy(args.tma_k_chunk.with(*pipeline_k.producer_get_barrier(state)),
           kv_rows(args.tma_k_chunk, mK, Int<kPageChunk>{}, at.slot, kv_head, at.page),
           chunk_smem(args.tma_k_chunk, shared.k.data(), state.index()));
      pipeline_v.producer_acquire(state);
      copy(args.tma_v_chunk.with(*pipeline_v.producer_get_barrier(state)),
           kv_rows(args.tma_v_chunk, mV, Int<kPageChunk>{}, at.slot, kv_head, at.page),
           chunk_smem(args.tma_v_chunk, shared.v.data(), state.index()));
      ++state;
    }
  }

  using TileS = Shape<Int<kBlockM>, Int<kBlockN>>;
  static constexpr int kVTailBarrier = 2;  // named barrier id of zero_v_tail (PingPong has 0 and 1)

  // A consumer thread's wgmma operands (descriptors of Q in buffer q_buffer, of the K stages (MMA, MMA_N, MMA_K,
  // stages) and of the Vᵀ stages) and the tile coordinates of its scores, as a rowcol view.
  CUTE_DEVICE static auto operands(SharedStorage& shared, int q_buffer, int mma_tidx) {
    Tensor sQ = make_tensor(make_smem_ptr(q_smem(shared, q_buffer)), typename Traits::SmemLayoutQ{});
    Tensor sK = make_tensor(make_smem_ptr(shared.k.data()), typename Traits::SmemLayoutKV{});
    Tensor sVt = make_tensor(make_smem_ptr(shared.v.data()), typename Traits::SmemLayoutVt{});
    auto thr_qk = typename Traits::TiledMmaQK{}.get_thread_slice(mma_tidx);
    auto thr_pv = typename Traits::TiledMmaPV{}.get_thread_slice(mma_tidx);
    Tensor tScS = thr_qk.partition_C(make_identity_tensor(TileS{}));
    return cute::make_tuple(thr_qk.partition_fragment_A(sQ), thr_qk.partition_fragment_B(sK),
                            thr_pv.partition_fragment_B(sVt),
                            make_tensor(tScS.data(), acc_to_rowcol(tScS.layout())));
  }

  // The rows of a plain tile: kBlockM consecutive queries of one head (block m_block), whose ALiBi slope is alibi's.
  struct PlainRows {
    int m_block;
    Alibi alibi;
  };

  // The scores of key block n_block as the softmax takes them (core/score_mods.h: softcap and ALiBi as runtime
  // switches, then the mask where the block crosses the sequence end or a window edge).
  template <class Scores, class Coords>
  CUTE_DEVICE static void prepare_scores(FwdParams const& params, PlainRows const& rows, Scores& scores,
                                         Coords const& score_coords, int n_block, int seqlen_q, int seqlen_k) {
    int const m_block = rows.m_block;
    prepare_score_tile</*kMods=*/true, /*kMaySoftcap=*/true, kHasWindow>(
        params, rows.alibi, scores, score_coords, m_block * kBlockM, n_block * kBlockN,
        [&] {
          return Range::needs_mask(m_block, n_block, seqlen_q, seqlen_k, params.window_left, params.window_right);
        },
        seqlen_q, seqlen_k);
  }

  // The same for a packed GQA tile (tile_rows.h: its rows' queries and slopes).
  template <int kRows, class Scores, class Coords>
  CUTE_DEVICE static void prepare_scores(FwdParams const& params, PackedTileRows<kRows> const& rows, Scores& scores,
                                         Coords const& score_coords, int n_block, int seqlen_q, int seqlen_k) {
    prepare_score_rows</*kMods=*/true, /*kMaySoftcap=*/true, kHasWindow>(
        params, params.alibi_slopes_ptr != nullptr, scores, score_coords, [&](int r) { return rows.query[r]; },
        [&](int r) { return rows.slope[r]; }, n_block * kBlockN,
        [&] {
          return Range::needs_mask_for_rows(rows.first_query, rows.last_query, n_block, seqlen_q, seqlen_k,
                                            params.window_left, params.window_right);
        },
        seqlen_q, seqlen_k);
  }

  // Named barriers 4 .. 4 + kMmaWarpgroups - 1, one per warpgroup (the epilogue has 3, and its per-warpgroup stores
  // use these ids too).
  static constexpr int kQRowsBarrier = 4;

  // A packed GQA tile's Q (its rows are spread over the group's heads, which one TMA box cannot address): each
  // consumer warpgroup copies its own 64 rows with cp.async, zero-filled past the sequence and the head dim, and
  // makes them visible to its wgmma. Called by every consumer thread before the tile's mainloop: the warpgroup's
  // GEMMs of its last tile are done by then, and no other warpgroup reads these rows.
  CUTE_DEVICE static void load_q_rows(FwdParams const& params, SharedStorage& shared, SeqlenInfo const& seq,
                                      int m_block, int kv_head, int batch, int mma_tidx) {
    static_assert(kQBuffers == 1, "packed tiles run one per CTA, in Q buffer 0");
    Tensor sQ = make_tensor(make_smem_ptr(q_smem(shared, 0)), typename Traits::SmemLayoutQ{});
    constexpr int kChunksPerRow = kHeadDim / 8;  // 16 bytes each; head_dim is a multiple of 8
    PackedRows const packing{params.head_ratio};
    int const warpgroup = mma_tidx / 128;
    int const rows = seq.seqlen_q * packing.group;
    Element const* q_batch = static_cast<Element const*>(params.q_ptr) +
                             seq.q_offset(params.q_batch_stride, params.q_row_stride, batch);
#pragma unroll 1
    for (int i = mma_tidx % 128; i < 64 * kChunksPerRow; i += 128) {
      int const row = warpgroup * 64 + i / kChunksPerRow, col = i % kChunksPerRow * 8;
      int const p = m_block * kBlockM + row;
      bool const valid = p < rows && col < params.head_dim;
      Element const* src = q_batch;  // a zero-filled copy reads nothing; any valid address stands in
      if (valid) {
        src += int64_t(packing.query(p)) * params.q_row_stride +
               int64_t(packing.head(p, kv_head)) * params.q_head_stride + col;
      }
      SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<uint128_t>::copy(*reinterpret_cast<uint128_t const*>(src),
                                                       *reinterpret_cast<uint128_t*>(&sQ(row, col)), valid);
    }
    cp_async_wait<0>();
    cutlass::arch::fence_view_async_shared();  // the copies, visible to wgmma's reads
    cutlass::arch::NamedBarrier::sync(128, kQRowsBarrier + warpgroup);
  }

  // A V tile that crosses its sequence's end holds rows of the tensor past the sequence (the next varlen
  // sequence, cache slots past seqused_k or in the last page, which may hold anything): P is 0 there, but 0 · NaN
  // is not, so the consumers zero them before P·V reads the tile. Where the sequence ends with the tensor (dense
  // K/V), TMA has filled those rows with zeros already. Called by every consumer thread right after the wait for
  // the first V tile of a query block, before its P·V.
  CUTE_DEVICE static void zero_v_tail(FwdParams const& params, SharedStorage& shared, SeqlenInfo const& seq,
                                      int n_block, int stage, int mma_tidx) {
    int const valid = seq.seqlen_k - n_block * kBlockN;
    bool const ends_with_tensor =
        params.block_table == nullptr && seq.start_k + seq.seqlen_k >= get<0>(kv_extent(params));
    if (valid >= kBlockN || ends_with_tensor) { return; }
    Tensor sV = make_tensor(make_smem_ptr(shared.v.data()), typename Traits::SmemLayoutKV{});
    // 16 bytes per store: the swizzle moves whole 16-byte chunks, so a row's 8-element chunks stay contiguous and
    // aligned (checked on the host by tests/cpp/sm90_smem_layouts.cu).
    constexpr int kChunk = 16 / int(sizeof(Element));
    constexpr int kChunksPerRow = kHeadDim / kChunk;
    for (int i = mma_tidx; i < (kBlockN - valid) * kChunksPerRow; i += Traits::kMmaThreads) {
      uint32_t const chunk = cute::cast_smem_ptr_to_uint(&sV(valid + i / kChunksPerRow, i % kChunksPerRow * kChunk,
                                                                 stage));
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};" ::"r"(chunk), "r"(0u) : "memory");
    }
    cutlass::arch::fence_view_async_shared();  // the generic-proxy stores, visible to wgmma's reads
    cutlass::arch::NamedBarrier::sync(Traits::kMmaThreads, kVTailBarrier);
  }

  // Consumer: mma_tidx in [0, kMmaThreads). rows: the tile's rows (PlainRows, or PackedTileRows). acc_o: cleared
  // (MMA, MMA_M, MMA_N) fragment of TiledMmaPV; on return it holds the unnormalised output and softmax the row
  // statistics. q: the block's Q buffer and the phase of its barrier_q that this block's Q completes (QTurn), or
  // phase -1 where the consumers have loaded Q themselves (load_q_rows, buffer 0).
  template <class Rows, class AccO, class Softmax>
  CUTE_DEVICE static void mma(FwdParams const& params, Arguments const& args, SharedStorage& shared,
                              Pipeline& pipeline_k, Pipeline& pipeline_v, PipelineState& state, SeqlenInfo const& seq,
                              Rows const& rows, int n_block_min, int n_block_max, int mma_tidx, AccO& acc_o,
                              Softmax& softmax, QTurn q, PingPong& turns) {
    int const seqlen_q = seq.seqlen_q, seqlen_k = seq.seqlen_k;
    typename Traits::TiledMmaQK mma_qk;
    typename Traits::TiledMmaPV mma_pv;
    auto [tSrQ, tSrK, tOrVt, score_coords] = operands(shared, q.buffer, mma_tidx);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));

    if (q.phase >= 0) { shared.barrier_q[q.buffer].wait(q.phase); }
    bool const exp_turns = kExpTurns && args.exp_turns;
    auto step = [&](int n_block, auto is_first) {
      constexpr bool kIsFirst = decltype(is_first)::value;
      Tensor acc_s = partition_fragment_C(mma_qk, TileS{});
      pipeline_k.consumer_wait(state);
      wgmma_gemm</*kClear=*/true>(mma_qk, tSrQ, tSrK(_, _, _, state.index()), acc_s);
      warpgroup_wait<0>();
      pipeline_k.consumer_release(state);
      Tensor scores = make_tensor(acc_s.data(), acc_to_rowcol(acc_s.layout()));
      prepare_scores(params, rows, scores, score_coords, n_block, seqlen_q, seqlen_k);
      auto const update =
          softmax.template new_maxima<kIsFirst, /*kMayKeepMax=*/true>(scores, args.rescale_threshold_log2);
      if (exp_turns) { turns.wait_turn(); }
      softmax.template exponentiate<kIsFirst>(scores, update);
      if (exp_turns) { turns.pass_turn(); }
      if constexpr (!kIsFirst) { Softmax::rescale_o_where_needed(acc_o_rows, update.correction); }
      Tensor rP = convert_fragment<Element>(acc_s);
      Tensor tOrP = make_tensor(rP.data(), acc_to_a_operand(rP.layout()));
      pipeline_v.consumer_wait(state);
      if constexpr (kIsFirst) { zero_v_tail(params, shared, seq, n_block, state.index(), mma_tidx); }
      wgmma_gemm</*kClear=*/false>(mma_pv, tOrP, tOrVt(_, _, _, state.index()), acc_o);
      warpgroup_wait<0>();
      pipeline_v.consumer_release(state);
      ++state;
    };
    int n_block = n_block_max - 1;
    if (exp_turns) { turns.begin_tile(n_block_max > n_block_min ? n_block_max - n_block_min : 0); }
    if (n_block >= n_block_min) {
      step(n_block, std::true_type{});
      for (--n_block; n_block >= n_block_min; --n_block) { step(n_block, std::false_type{}); }
    }
  }

  // Consumer with overlapped GEMMs: S(j) = Q·K(j)ᵀ is issued together with O += P(j-1)·V(j-1), and S(j)'s softmax
  // runs while P·V does (O is rescaled once it is done); the two consumer warpgroups take turns issuing (PingPong),
  // so one's softmax also runs under the other's GEMMs. Same contract as mma(); K and V keep their own pipeline
  // states because V trails K by one block. turns: the consumers' PingPong (one per CTA).
  template <class AccO, class Softmax>
  CUTE_DEVICE static void mma_overlapped(FwdParams const& params, Arguments const& args, SharedStorage& shared,
                                         Pipeline& pipeline_k, Pipeline& pipeline_v, PipelineState& state_k,
                                         PipelineState& state_v, SeqlenInfo const& seq, PlainRows const& rows,
                                         int n_block_min, int n_block_max, int mma_tidx, AccO& acc_o,
                                         Softmax& softmax, QTurn q, PingPong& turns) {
    int const seqlen_q = seq.seqlen_q, seqlen_k = seq.seqlen_k;
    typename Traits::TiledMmaQK mma_qk;
    typename Traits::TiledMmaPV mma_pv;
    auto [tSrQ, tSrK, tOrVt, score_coords] = operands(shared, q.buffer, mma_tidx);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    Tensor acc_s = partition_fragment_C(mma_qk, TileS{});
    Tensor scores = make_tensor(acc_s.data(), acc_to_rowcol(acc_s.layout()));
    Tensor rP = make_tensor<Element>(acc_s.layout());  // P of the previous block, the A operand of its P·V
    Tensor tOrP = make_tensor(rP.data(), acc_to_a_operand(rP.layout()));

    auto issue_s = [&]() {
      wgmma_gemm</*kClear=*/true>(mma_qk, tSrQ, tSrK(_, _, _, state_k.index()), acc_s);
    };
    auto issue_pv = [&]() {
      wgmma_gemm</*kClear=*/false>(mma_pv, tOrP, tOrVt(_, _, _, state_v.index()), acc_o);
    };

    shared.barrier_q[q.buffer].wait(q.phase);
    int const num_blocks = n_block_max - n_block_min;
    if (num_blocks <= 0) { return; }
    // Sections: the first S, then (S(j), P(j-1)·V(j-1)) for every later block, then the last P·V.
    turns.begin_tile(num_blocks + 1);
    int n_block = n_block_max - 1;
    pipeline_k.consumer_wait(state_k);
    turns.wait_turn();
    issue_s();
    turns.pass_turn();
    wgmma_wait<0>(acc_s);
    pipeline_k.consumer_release(state_k);
    ++state_k;
    prepare_scores(params, rows, scores, score_coords, n_block, seqlen_q, seqlen_k);
    softmax.template update_scores</*kIsFirst=*/true>(scores);
    convert_fragment_into(acc_s, rP);

    for (--n_block; n_block >= n_block_min; --n_block) {
      pipeline_k.consumer_wait(state_k);
      pipeline_v.consumer_wait(state_v);
      if (n_block == n_block_max - 2) { zero_v_tail(params, shared, seq, n_block + 1, state_v.index(), mma_tidx); }
      turns.wait_turn();
      issue_s();
      issue_pv();
      turns.pass_turn();
      wgmma_wait<1>(acc_s);  // S(j) is done; P(j-1)·V(j-1) may still run
      pipeline_k.consumer_release(state_k);
      ++state_k;
      prepare_scores(params, rows, scores, score_coords, n_block, seqlen_q, seqlen_k);
      auto const correction =
          softmax.template update_scores</*kIsFirst=*/false>(scores, args.rescale_threshold_log2);
      // P(j-1)·V(j-1) is done (waited for behind the softmax above, which ran under it): acc_o may be rescaled
      // and rP overwritten.
      wgmma_wait_behind<0>(softmax.row_sum, acc_o, rP);
      pipeline_v.consumer_release(state_v);
      ++state_v;
      Softmax::rescale_o_where_needed(acc_o_rows, correction);
      convert_fragment_into(acc_s, rP);
    }

    pipeline_v.consumer_wait(state_v);
    if (num_blocks == 1) { zero_v_tail(params, shared, seq, n_block_max - 1, state_v.index(), mma_tidx); }
    turns.wait_turn();
    issue_pv();
    turns.pass_turn();
    wgmma_wait<0>(acc_o, rP);
    pipeline_v.consumer_release(state_v);
    ++state_v;
  }
};

}  // namespace flash::sm90
