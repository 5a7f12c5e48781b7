// Split-KV forward for short queries (decode, speculative steps) on sm80 instructions.
//
// Such calls are bound by reading K and V once, so the kernel is shaped for bandwidth, not for MMA throughput:
//  * GQA packing: the M tile holds kBlockM packed rows (query i, head j of the KV head's group) as row
//    i * group + j, so each KV head is read once for all the query heads that share it;
//  * the key range is split num_splits ways across CTAs (grid: m_blocks x splits, KV heads, batch), so that few
//    (batch, KV head) pairs still fill the GPU; a combine kernel (split_combine.h) merges the partial outputs;
//  * the four warps each take a quarter of every key tile and run their own online softmax, merged through shared
//    memory at the end, with kStages tiles in flight.
#pragma once

#include <cmath>
#include <type_traits>

#include <cute/tensor.hpp>

#include "../core/block.h"
#include "../core/block_loop.h"
#include "../core/lse_merge.h"
#include "../core/mask.h"
#include "../core/paged.h"
#include "../core/params.h"
#include "../core/reduce.h"
#include "../core/seqlen.h"
#include "../core/score_mods.h"
#include "../core/softmax.h"
#include "../core/split_combine.h"
#include "../core/uniform_branch.h"
#include "copy.h"
#include "fragment_layouts.h"
#include "fwd_split_config.h"
#include "gemm.h"
#include "kv_load.h"
#include "tile_layouts.h"
#include "tile_scheduler.h"

namespace flash::sm80 {

using namespace cute;

template <class Element_, int kHeadDim_>
struct FwdSplitTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kFwdSplitBlockM;
  static constexpr int kNWarps = kFwdSplitWarps;
  static constexpr int kNThreads = 32 * kNWarps;
  static constexpr int kBlockN = fwd_split_tile(kHeadDim).block_n;
  static constexpr int kStages = fwd_split_tile(kHeadDim).stages;
  static constexpr int kWarpN = kBlockN / kNWarps;  // keys of each tile one warp takes
  static_assert(kBlockM == 16 && kWarpN % 16 == 0);

  using TiledMma = WarpTiledMma<Element, 1, 1>;  // one warp: 16 rows x its key slice
  using SmemLayoutQ = SmemTile<kBlockM, kHeadDim>;
  using SmemLayoutKV = SmemTileStaged<kBlockN, kHeadDim, kStages>;
  using SmemLayoutVt = SmemTransposedStaged<SmemLayoutKV, kBlockN, kHeadDim, kStages>;
  using SmemCopyAtomQK = Copy_Atom<SmemCopyAtomN, Element>;
  using SmemCopyAtomVt = Copy_Atom<SmemCopyAtomT, Element>;

  // Q rows come from scattered heads: its copy uses as many threads as cover 16 rows once.
  static constexpr int kQThreads = kBlockM * GmemCopies<Element, kNThreads, kHeadDim>::kThreadsPerRow;
  using GmemCopyQ = typename GmemCopies<Element, kQThreads, kHeadDim>::Load;
  using GmemCopyKV = typename GmemCopies<Element, kNThreads, kHeadDim>::Load;

  static constexpr int kSmemQBytes = int(cosize(SmemLayoutQ{})) * int(sizeof(Element));
  static constexpr int kSmemKVBytes = int(cosize(SmemLayoutKV{})) * int(sizeof(Element));
  // The warps' merge reuses the K/V space: each warp's fp32 output rows (padded by 8 floats against bank
  // conflicts) and its row maxima and sums.
  static constexpr int kMergeRowStride = kHeadDim + 8;
  static constexpr int kSmemMergeBytes = (kNWarps * kBlockM * kMergeRowStride + 2 * kNWarps * kBlockM + kBlockM) * 4;
  static_assert(kSmemMergeBytes <= 2 * kSmemKVBytes);
  static constexpr int kSmemBytes = kSmemQBytes + 2 * kSmemKVBytes;
  static_assert(kSmemBytes == fwd_split_smem_bytes(kHeadDim));
};

template <class Traits>
struct FwdSplitKernel {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kStages = Traits::kStages;
  static constexpr int kWarpN = Traits::kWarpN;
  static constexpr int kNWarps = Traits::kNWarps;
  using Range = BlockRange<kBlockM, kBlockN, /*kHasWindow=*/true>;

  CUTE_DEVICE static void run(FwdParams const& params, char* smem) {
    // A varlen sequence longer than the grid's max_seqlen_q (an understated bound): the CTAs of its batch and
    // split take its extra query blocks in turn (tile_scheduler.h).
    SeqlenInfo const seq(params, blockIdx.z);
    SplitScheduler::for_each_tile(
        params.num_splits, [&](int m_block) { return m_block * kBlockM < seq.seqlen_q * params.head_ratio; },
        [&](WorkTile const& tile) { run_block(params, smem, seq, tile.block, tile.split, tile.head, tile.batch); });
  }

  CUTE_DEVICE static void run_block(FwdParams const& params, char* smem, SeqlenInfo const& seq, int m_block,
                                    int split, int kv_head, int batch) {
    int const tidx = opaque_thread_idx();
    int const warp = tidx / 32, lane = tidx % 32;
    int const num_splits = params.num_splits;
    int const group = params.head_ratio;
    int const row_base = m_block * kBlockM;
    int const rows_left = seq.seqlen_q * group - row_base;
    int const rows = rows_left < kBlockM ? rows_left : kBlockM;

    // Key blocks any row of the tile sees (block.h; the window is a runtime one, unbounded sides reaching past
    // every key), split evenly.
    PackedRows const packing{group};
    int const shift = seq.seqlen_k - seq.seqlen_q;
    int const q_first = packing.query(row_base), q_last = packing.query(row_base + rows - 1);
    int n_begin, n_end;
    Range::key_blocks_for_rows(q_first, q_last, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right,
                               n_begin, n_end);
    n_end = max(n_end, n_begin);
    int const per_split = (n_end - n_begin + num_splits - 1) / num_splits;
    n_begin += split * per_split;
    n_end = min(n_end, n_begin + per_split);

    // Shared memory: Q | K[stages] | V[stages]; after the loop the warps merge in the K/V space.
    Element* smem_q = reinterpret_cast<Element*>(smem);
    Tensor sQ = make_tensor(make_smem_ptr(smem_q), typename Traits::SmemLayoutQ{});
    Tensor sK = make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutKV{});
    Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
    Tensor sVt = make_tensor(sV.data(), typename Traits::SmemLayoutVt{});

    // Global K/V: (kBlockN, d, n_blocks) views of one (batch, KV head), as in the main forward kernel.
    int const num_kv_blocks = n_end > 0 ? n_end : 1;
    Element const* k_base = static_cast<Element const*>(params.k_ptr) +
                            seq.k_offset(params.k_batch_stride, params.k_row_stride) + kv_head * params.k_head_stride;
    Element const* v_base = static_cast<Element const*>(params.v_ptr) +
                            seq.k_offset(params.v_batch_stride, params.v_row_stride) + kv_head * params.v_head_stride;
    Tensor gK = make_tensor(make_gmem_ptr(k_base), make_shape(Int<kBlockN>{}, Int<kHeadDim>{}, num_kv_blocks),
                            make_stride(params.k_row_stride, _1{}, int64_t(kBlockN) * params.k_row_stride));
    Tensor gV = make_tensor(make_gmem_ptr(v_base), make_shape(Int<kBlockN>{}, Int<kHeadDim>{}, num_kv_blocks),
                            make_stride(params.v_row_stride, _1{}, int64_t(kBlockN) * params.v_row_stride));
    typename Traits::GmemCopyKV gmem_copy;
    auto gmem_thr_copy = gmem_copy.get_thread_slice(tidx);
    Tensor tKgK = gmem_thr_copy.partition_S(gK);  // (CPY, CPY_N, CPY_K, n_blocks)
    Tensor tKsK = gmem_thr_copy.partition_D(sK);  // (CPY, CPY_N, CPY_K, stages)
    Tensor tVgV = gmem_thr_copy.partition_S(gV);
    Tensor tVsV = gmem_thr_copy.partition_D(sV);
    Tensor tKVcKV = gmem_thr_copy.partition_S(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));
    Tensor kv_col_pred = make_col_predicate(tKVcKV, params.head_dim);
    // Paged caches: the block-table entries of a tile's rows are fetched one tile ahead (kv_load.h).
    bool const paged = params.block_table != nullptr;
    Element const* k_head = static_cast<Element const*>(params.k_ptr) + kv_head * params.k_head_stride;
    Element const* v_head = static_cast<Element const*>(params.v_ptr) + kv_head * params.v_head_stride;
    PagedRows<decltype(size<1>(tKVcKV))::value, kBlockN> page_rows;
    // Fused append: keys from new_begin on (sequence-relative) come from k_new/v_new, not from the cache.
    bool const appends = params.k_new_ptr != nullptr;
    int const new_begin = appends ? seq.appended_begin : seq.seqlen_k;
    Element const* k_new = appends ? static_cast<Element const*>(params.k_new_ptr) + batch * params.k_new_batch_stride +
                                         kv_head * params.k_new_head_stride
                                   : nullptr;
    Element const* v_new = appends ? static_cast<Element const*>(params.v_new_ptr) + batch * params.v_new_batch_stride +
                                         kv_head * params.v_new_head_stride
                                   : nullptr;
    // Where key pos (sequence-relative) of this (batch, KV head) lives in the cache (paged.h).
    int64_t const k_begin = seq.k_offset(params.k_batch_stride, params.k_row_stride);
    int64_t const v_begin = seq.k_offset(params.v_batch_stride, params.v_row_stride);
    auto k_cache_row = [&](int pos) {
      return k_head + cache_row(params, batch, k_begin, pos, params.k_batch_stride, params.k_row_stride).offset;
    };
    auto v_cache_row = [&](int pos) {
      return v_head + cache_row(params, batch, v_begin, pos, params.v_batch_stride, params.v_row_stride).offset;
    };
    auto load_stage = [&](int n_block, int stage) {
      int const rows_in_block = seq.seqlen_k - n_block * kBlockN;
      if ((n_block + 1) * kBlockN > new_begin) {  // a tile with appended keys: row by row from either source
        auto k_row = [&](int, int row) {
          int const pos = n_block * kBlockN + row;
          return pos >= new_begin ? k_new + int64_t(pos - new_begin) * params.k_new_row_stride : k_cache_row(pos);
        };
        auto v_row = [&](int, int row) {
          int const pos = n_block * kBlockN + row;
          return pos >= new_begin ? v_new + int64_t(pos - new_begin) * params.v_new_row_stride : v_cache_row(pos);
        };
        copy_rows<false, true, true>(gmem_copy, k_row, tKgK(_, 0, 0, 0).layout(), tKsK(_, _, _, stage), tKVcKV,
                                     kv_col_pred, rows_in_block);
        copy_rows<false, true, true>(gmem_copy, v_row, tVgV(_, 0, 0, 0).layout(), tVsV(_, _, _, stage), tKVcKV,
                                     kv_col_pred, rows_in_block);
      } else if (!paged) {
        copy_tile<false, true, true>(gmem_copy, tKgK(_, _, _, n_block), tKsK(_, _, _, stage), tKVcKV, kv_col_pred,
                                     rows_in_block);
        copy_tile<false, true, true>(gmem_copy, tVgV(_, _, _, n_block), tVsV(_, _, _, stage), tKVcKV, kv_col_pred,
                                     rows_in_block);
      } else {
        page_rows.copy(gmem_copy, tKgK, tKsK(_, _, _, stage), tKVcKV, kv_col_pred, k_head, params.k_batch_stride,
                       params.k_row_stride, rows_in_block);
        page_rows.copy(gmem_copy, tVgV, tVsV(_, _, _, stage), tKVcKV, kv_col_pred, v_head, params.v_batch_stride,
                       params.v_row_stride, rows_in_block);
      }
    };
    auto fetch_pages = [&](int n_block) {
      if (paged) { page_rows.fetch(params, batch, n_block, seq.seqlen_k, tKVcKV); }
    };

    // The appended keys go into the cache once per (batch, KV head), 16 bytes per thread at a time. Nothing in this
    // kernel reads them from there.
    if (appends && m_block == 0 && split == 0) {
      int const chunks_per_row = params.head_dim / 8;
      for (int c = tidx; c < params.seqused_k_extra * chunks_per_row; c += Traits::kNThreads) {
        int const j = c / chunks_per_row;
        int const col = (c - j * chunks_per_row) * 8;
        int const pos = new_begin + j;
        int const capacity = params.seqlen_k - seq.start_k;  // positions of this sequence's cache row
        CacheRow const k_at = append_row(params, batch, seq.kv_rows_exist, capacity, k_begin, pos,
                                         params.k_batch_stride, params.k_row_stride);
        if (!k_at.writable) { continue; }
        CacheRow const v_at = append_row(params, batch, seq.kv_rows_exist, capacity, v_begin, pos,
                                         params.v_batch_stride, params.v_row_stride);
        Element* k_dst = const_cast<Element*>(k_head) + k_at.offset;
        Element* v_dst = const_cast<Element*>(v_head) + v_at.offset;
        using Vec = cute::uint128_t;
        *reinterpret_cast<Vec*>(k_dst + col) =
            *reinterpret_cast<Vec const*>(k_new + int64_t(j) * params.k_new_row_stride + col);
        *reinterpret_cast<Vec*>(v_dst + col) =
            *reinterpret_cast<Vec const*>(v_new + int64_t(j) * params.v_new_row_stride + col);
      }
    }

    // Packed row r of the tile: query q = (row_base + r) / group of head kv_head * group + (row_base + r) % group.
    Element const* q_group = static_cast<Element const*>(params.q_ptr) +
                             seq.q_offset(params.q_batch_stride, params.q_row_stride, batch) +
                             int64_t(kv_head) * group * params.q_head_stride;

    if (n_begin < n_end) {
      if (tidx < Traits::kQThreads) {
        typename Traits::GmemCopyQ gmem_copy_q;
        auto q_thr_copy = gmem_copy_q.get_thread_slice(tidx);
        auto const tile_q = Shape<Int<kBlockM>, Int<kHeadDim>>{};
        Tensor tQcQ = q_thr_copy.partition_S(make_identity_tensor(tile_q));
        Tensor tQgQ = q_thr_copy.partition_S(
            make_tensor(make_gmem_ptr(q_group), tile_q, make_stride(params.q_row_stride, _1{})));
        auto q_row_ptr = [&](int, int r) {
          int const packed = row_base + r;
          return q_group + int64_t(packing.query(packed)) * params.q_row_stride +
                 int64_t(packing.head(packed, 0)) * params.q_head_stride;
        };
        copy_rows<false, true, true>(gmem_copy_q, q_row_ptr, tQgQ(_, 0, 0).layout(), q_thr_copy.partition_D(sQ),
                                     tQcQ, make_col_predicate(tQcQ, params.head_dim), rows);
      }
      // The first tiles' page numbers are all fetched before any of their copies is issued.
      PagedRows<decltype(size<1>(tKVcKV))::value, kBlockN> first_pages[kStages - 1];
      CUTE_UNROLL
      for (int s = 0; s < kStages - 1; ++s) {
        if (paged) { first_pages[s].fetch(params, batch, n_begin + s, seq.seqlen_k, tKVcKV); }
      }
      CUTE_UNROLL
      for (int s = 0; s < kStages - 1; ++s) {
        if (n_begin + s < n_end) {
          page_rows = first_pages[s];
          load_stage(n_begin + s, s);
        }
        cp_async_fence();
      }
      fetch_pages(n_begin + kStages - 1);
    }

    // Each warp multiplies all 16 rows of Q with its kWarpN keys of the tile.
    typename Traits::TiledMma tiled_mma;
    auto thr_mma = tiled_mma.get_thread_slice(lane);
    Tensor sKw = local_tile(sK, Shape<Int<kWarpN>, Int<kHeadDim>, Int<kStages>>{}, make_coord(warp, 0, 0));
    Tensor sVtw = local_tile(sVt, Shape<Int<kHeadDim>, Int<kWarpN>, Int<kStages>>{}, make_coord(0, warp, 0));
    Tensor tSrQ = thr_mma.partition_fragment_A(sQ);
    Tensor tSrK = thr_mma.partition_fragment_B(sKw(_, _, 0));
    Tensor tOrVt = thr_mma.partition_fragment_B(sVtw(_, _, 0));
    using GemmQK = SmemMma<typename Traits::TiledMma, typename Traits::SmemCopyAtomQK, typename Traits::SmemCopyAtomQK>;
    GemmQK const gemm_qk(lane);
    using GemmPV = SmemMma<typename Traits::TiledMma, typename Traits::SmemCopyAtomQK, typename Traits::SmemCopyAtomVt>;
    GemmPV const gemm_pv(lane);
    Tensor tSsQ = gemm_qk.partition_a(sQ);
    Tensor tSsK = gemm_qk.partition_b(sKw);  // (CPY, CPY_N, CPY_K, stages)
    Tensor tOsVt = gemm_pv.partition_b(sVtw);

    Tensor acc_o = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    clear(acc_o);
    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    constexpr int kRows = decltype(size<0>(acc_o_rows))::value;  // rows of the tile this thread holds (2)
    OnlineSoftmax<kRows> softmax(params.score_scale_log2);

    // Per held row: its query position, and its ALiBi slope in softmax-input units (0 = none).
    Tensor tScS = thr_mma.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kWarpN>>{}));
    Tensor score_coords = make_tensor(tScS.data(), acc_to_rowcol(tScS.layout()));
    int row_q[kRows];
    float row_slope[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      int const packed = row_base + get<0>(score_coords(r, 0));
      row_q[r] = packing.query(packed);
      row_slope[r] = alibi_slope(params, batch, packing.head(packed, kv_head));
    }
    auto query_of = [&](int r) { return row_q[r]; };

    for (int n_block = n_begin; n_block < n_end; ++n_block) {
      int const i = n_block - n_begin;
      int const stage = i % kStages;
      cp_async_wait<kStages - 2>();
      __syncthreads();  // tile n_block has landed; every warp is done with the stage the next load overwrites
      if (n_block + kStages - 1 < n_end) {
        load_stage(n_block + kStages - 1, (i + kStages - 1) % kStages);
        fetch_pages(n_block + kStages);
      }
      cp_async_fence();

      Tensor acc_s = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kWarpN>>{});
      clear(acc_s);
      gemm_qk.smem_smem(acc_s, tSrQ, tSrK, tSsQ, tSsK(_, _, _, stage));
      Tensor scores = make_tensor(acc_s.data(), acc_to_rowcol(acc_s.layout()));
      int const key_base = n_block * kBlockN + warp * kWarpN;
      apply_score_mods</*kMaySoftcap=*/true>(
          params, params.alibi_slopes_ptr != nullptr, scores, score_coords, query_of,
          [&](int r) { return row_slope[r]; }, shift, key_base);
      if (Range::needs_mask_for_rows(q_first, q_last, n_block, seq.seqlen_q, seq.seqlen_k, params.window_left,
                                     params.window_right)) {
        apply_mask_rows</*kHasWindow=*/true>(scores, score_coords, query_of, key_base, seq.seqlen_q, seq.seqlen_k,
                                             params.window_left, params.window_right);
      }
      softmax.template update</*kIsFirst=*/false>(scores, acc_o_rows);
      Tensor rP = convert_fragment<Element>(acc_s);
      Tensor tOrP = make_tensor(rP.data(), acc_to_a_operand(rP.layout()));
      gemm_pv.reg_smem(acc_o, tOrP, tOrVt, tOsVt(_, _, _, stage));
    }

    merge_and_store(params, seq, softmax, acc_o, thr_mma, smem + Traits::kSmemQBytes, tidx, batch, kv_head, split,
                    row_base, rows);
  }

  // The warps' partial results combine like splits (lse_merge.h). The tile's rows then go to o / softmax_lse (one
  // split) or to the split workspace.
  template <class Softmax, class AccO, class ThrMma>
  CUTE_DEVICE static void merge_and_store(FwdParams const& params, SeqlenInfo const& seq, Softmax& softmax,
                                          AccO& acc_o, ThrMma const& thr_mma, char* smem_merge, int tidx, int batch,
                                          int kv_head, int split, int row_base, int rows) {
    constexpr int kStride = Traits::kMergeRowStride;
    int const warp = tidx / 32, lane = tidx % 32;
    float* s_o = reinterpret_cast<float*>(smem_merge);  // (warp, row, col)
    float* s_part_lse = s_o + kNWarps * kBlockM * kStride;  // (warp, row)
    float* s_lse = s_part_lse + 2 * kNWarps * kBlockM;     // (row)
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with K/V

    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));
    Tensor coords = thr_mma.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor coords_rows = make_tensor(coords.data(), acc_to_rowcol(coords.layout()));
    constexpr int kRows = decltype(size<0>(acc_o_rows))::value;
    float row_sum[kRows], own_lse[kRows];
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      row_sum[r] = quad_allreduce(softmax.row_sum(r), SumOp{});
      own_lse[r] = softmax_lse(softmax.row_max(r), row_sum[r], params.score_scale);
      if (lane % 4 == 0) { s_part_lse[warp * kBlockM + get<0>(coords_rows(r, 0))] = own_lse[r]; }
    }
    __syncthreads();
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      int const row = get<0>(coords_rows(r, 0));
      float max_lse = -INFINITY;
      CUTE_UNROLL
      for (int w = 0; w < kNWarps; ++w) { max_lse = fmaxf(max_lse, s_part_lse[w * kBlockM + row]); }
      float sum_exp = 0.f;
      CUTE_UNROLL
      for (int w = 0; w < kNWarps; ++w) { sum_exp += lse_term(s_part_lse[w * kBlockM + row], max_lse); }
      float const lse = merged_lse(max_lse, sum_exp);
      // acc_o holds this warp's unnormalised output (sum row_sum): normalise and weigh in one factor.
      float const factor = own_lse[r] == -INFINITY ? 0.f : merge_weight(own_lse[r], lse) / row_sum[r];
      CUTE_UNROLL
      for (int c = 0; c < size<1>(acc_o_rows); ++c) {
        auto const rc = coords_rows(r, c);
        s_o[(warp * kBlockM + get<0>(rc)) * kStride + get<1>(rc)] = acc_o_rows(r, c) * factor;
      }
      if (warp == 0 && lane % 4 == 0) {
        // One split: a row with no key keeps lse +inf (as the main kernel); a split's empty part gets -inf,
        // which the combine gives no weight.
        s_lse[row] = lse == INFINITY && params.num_splits > 1 ? -INFINITY : lse;
      }
    }
    __syncthreads();

    // Sum the warps' rows, four columns per thread at a time, and write the tile's valid rows and columns.
    PackedRows const packing{params.head_ratio};
    int const head_dim = params.head_dim;
    bool const to_accum = params.num_splits > 1;
    int64_t const call_row_base = seq.q_offset(params.seqlen_q, 1, batch);  // the call's row of this batch's query 0
    constexpr int kChunksPerRow = kHeadDim / 4;
    CUTE_UNROLL
    for (int chunk = tidx; chunk < kBlockM * kChunksPerRow; chunk += Traits::kNThreads) {
      int const row = chunk / kChunksPerRow;
      int const col = (chunk - row * kChunksPerRow) * 4;
      if (row >= rows || col >= head_dim) { continue; }
      float4 sum = *reinterpret_cast<float4 const*>(&s_o[row * kStride + col]);
      CUTE_UNROLL
      for (int w = 1; w < kNWarps; ++w) {
        float4 const o = *reinterpret_cast<float4 const*>(&s_o[(w * kBlockM + row) * kStride + col]);
        sum.x += o.x, sum.y += o.y, sum.z += o.z, sum.w += o.w;
      }
      int const packed = row_base + row;
      int const q = packing.query(packed), head = packing.head(packed, kv_head);
      if (to_accum) {
        int64_t const accum_row = (int64_t(split) * params.num_heads + head) * params.accum_rows + call_row_base + q;
        *reinterpret_cast<float4*>(params.o_accum_ptr + accum_row * head_dim + col) = sum;
      } else {
        Element* o = static_cast<Element*>(params.o_ptr) +
                     seq.q_offset(params.o_batch_stride, params.o_row_stride, batch) +
                     int64_t(q) * params.o_row_stride + int64_t(head) * params.o_head_stride + col;
        store_float4(o, sum);
      }
    }
    if (tidx < rows) {
      int const packed = row_base + tidx;
      int const q = packing.query(packed), head = packing.head(packed, kv_head);
      if (to_accum) {
        params.lse_accum_ptr[(int64_t(split) * params.num_heads + head) * params.accum_rows + call_row_base + q] =
            s_lse[tidx];
      } else {
        params.softmax_lse_ptr[seq.lse_offset(params.lse_batch_stride, batch) + head * params.lse_head_stride + q] =
            s_lse[tidx];
      }
    }
  }
};

template <class Traits>
__global__ void __launch_bounds__(Traits::kNThreads) fwd_split_kernel(__grid_constant__ const FwdParams params) {
  extern __shared__ __align__(128) char smem[];
  FwdSplitKernel<Traits>::run(params, smem);
}

}  // namespace flash::sm80
