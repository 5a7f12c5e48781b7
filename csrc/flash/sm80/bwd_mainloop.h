// The sm80 backward mainloop: one key block of one (batch, KV head) with K and V resident in shared memory, walking
// every query block that sees them, for every query head of the GQA group. Per step it recomputes
// P = exp(scale·Q·Kᵀ - lse) from the forward's lse, then
//   dP = dO·Vᵀ,  dS = P ∘ (dP - D)  with D = rowsum(dO ∘ O) (bwd_prep.h),
//   dV += Pᵀ·dO, dK += dSᵀ·Q         accumulated in registers across all steps (so GQA groups sum there),
//   dQ += dS·K                        added to an fp32 accumulator in global memory (dq_accum.h; bwd_prep.h
//                                     zeroes and converts it).
// P and dS go through shared memory because the dV/dK/dQ MMAs read them transposed or with another warp
// tiling. With params.deterministic the dQ additions of the key blocks are sequenced in key-block order.
#pragma once

#include <cmath>
#include <type_traits>

#include <cute/tensor.hpp>

#include "../core/alibi.h"
#include "../core/block.h"
#include "../core/block_loop.h"
#include "../core/dropout.h"
#include "../core/mask.h"
#include "../core/params.h"
#include "../core/semaphore.h"
#include "../core/seqlen.h"
#include "../core/softcap.h"
#include "../core/softmax.h"
#include "copy.h"
#include "dq_accum.h"
#include "fragment_layouts.h"
#include "gemm.h"
#include "tile_store.h"

namespace flash::sm80 {

using namespace cute;

// kHasExtras: softcap, ALiBi and dropout are compiled in (each still switched on by params).
template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
struct BwdMainloop {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kStages = Traits::kStages;
  using Range = BlockRange<kBlockM, kBlockN, kHasWindow>;
  using TileQ = Shape<Int<kBlockM>, Int<kHeadDim>>;
  using TileK = Shape<Int<kBlockN>, Int<kHeadDim>>;
  using TileS = Shape<Int<kBlockM>, Int<kBlockN>>;

  // acc_dk, acc_dv: the cleared fp32 fragments of the dK/dV MMA (the key block's (kBlockN, d) tile); on return they
  // hold dK (before the softmax_scale factor) and dV summed over every query block and query head that sees the key
  // block. dQ contributions go to the accumulator on the way (add_dq).
  template <class AccdK, class AccdV>
  CUTE_DEVICE static void run(BwdParams const& params, char* smem, SeqlenInfo const& seq, int batch, int kv_head,
                              int n_block, int tidx, AccdK& acc_dk, AccdV& acc_dv) {
    int const key_base = n_block * kBlockN;
    int const keys_left = seq.seqlen_k - key_base;
    int m_block_min, m_block_max;
    Range::query_blocks(n_block, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, m_block_min,
                        m_block_max);
    int const num_m_steps = m_block_max > m_block_min ? m_block_max - m_block_min : 0;
    int const num_steps = num_m_steps * params.head_ratio;  // every query head of the group

    // Global tiles of this key block.
    auto kv_tile = [&](void const* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride) {
      Element const* ptr = static_cast<Element const*>(base) + seq.k_offset(batch_stride, row_stride) +
                           kv_head * head_stride + int64_t(key_base) * row_stride;
      return make_tensor(make_gmem_ptr(ptr), TileK{}, make_stride(row_stride, _1{}));
    };
    Tensor gK = kv_tile(params.k_ptr, params.k_batch_stride, params.k_row_stride, params.k_head_stride);
    Tensor gV = kv_tile(params.v_ptr, params.v_batch_stride, params.v_row_stride, params.v_head_stride);

    // Shared memory: K | V | Q[stages] | dO[stages] | P | dS.
    Tensor sK = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutKV{});
    Tensor sKt = make_tensor(sK.data(), typename Traits::SmemLayoutKt{});
    Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
    Tensor sQ = make_tensor(sV.data() + size(sV), typename Traits::SmemLayoutQdO{});
    Tensor sQt = make_tensor(sQ.data(), typename Traits::SmemLayoutQdOt{});
    Tensor sdO = make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutQdO{});
    Tensor sdOt = make_tensor(sdO.data(), typename Traits::SmemLayoutQdOt{});
    Tensor sP = make_tensor(sdO.data() + size(sdO), typename Traits::SmemLayoutPdS{});
    Tensor sPt = make_tensor(sP.data(), typename Traits::SmemLayoutPdSt{});
    Tensor sdS = make_tensor(sP.data() + size(sP), typename Traits::SmemLayoutPdS{});
    Tensor sdSt = make_tensor(sdS.data(), typename Traits::SmemLayoutPdSt{});
    // lse and D of the streamed rows, (kBlockM, stages) each.
    float* smem_lse = reinterpret_cast<float*>(
        smem + 2 * Traits::kSmemKVBytes + 2 * Traits::kSmemQdOBytes + 2 * Traits::kSmemPdSBytes);
    Tensor sLse = make_tensor(make_smem_ptr(smem_lse), Shape<Int<kBlockM>, Int<kStages>>{});
    Tensor sDsum = make_tensor(sLse.data() + size(sLse), Shape<Int<kBlockM>, Int<kStages>>{});

    // Global -> shared (cp.async), predicated on rows and on the real head dim.
    typename Traits::GmemTiledCopyLoad gmem_copy;
    auto gmem_thr = gmem_copy.get_thread_slice(tidx);
    Tensor tKVcKV = gmem_thr.partition_S(make_identity_tensor(TileK{}));
    Tensor tQcQ = gmem_thr.partition_S(make_identity_tensor(TileQ{}));
    Tensor kv_col_pred = make_col_predicate(tKVcKV, params.head_dim);
    Tensor q_col_pred = make_col_predicate(tQcQ, params.head_dim);
    Tensor tQsQ = gmem_thr.partition_D(sQ);    // (CPY, CPY_M, CPY_K, stages)
    Tensor tdOsdO = gmem_thr.partition_D(sdO);

    // The steps walk the query blocks last to first for each query head of the group in turn: every key block
    // of a head starts on the same query block (shared Q/dO tiles in L2; under causal masking the deterministic
    // turn order then keeps the key blocks in lockstep instead of stalling the short ones behind the long ones).
    // The cursor advances by one step without integer division.
    struct StepCursor {
      int head, m_block;
    };
    auto next_step = [&](StepCursor c) {
      if (--c.m_block < m_block_min) {
        c.m_block = m_block_max - 1;
        ++c.head;
      }
      return c;
    };
    auto load_q_do = [&](StepCursor at, int stage) {
      int const head = at.head;
      int const row_base = at.m_block * kBlockM;
      auto q_tile = [&](void const* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride) {
        Element const* ptr = static_cast<Element const*>(base) + seq.q_offset(batch_stride, row_stride, batch) +
                             head * head_stride + int64_t(row_base) * row_stride;
        return make_tensor(make_gmem_ptr(ptr), TileQ{}, make_stride(row_stride, _1{}));
      };
      Tensor tQgQ = gmem_thr.partition_S(
          q_tile(params.q_ptr, params.q_batch_stride, params.q_row_stride, params.q_head_stride));
      Tensor tdOgdO = gmem_thr.partition_S(
          q_tile(params.do_ptr, params.do_batch_stride, params.do_row_stride, params.do_head_stride));
      int const rows_left = seq.seqlen_q - row_base;
      // lse and D rows: one 4-byte cp.async per element (varlen rows need not be 16-byte aligned).
      if (tidx < 2 * kBlockM) {
        int const r = tidx % kBlockM;
        if (r < rows_left) {
          bool const is_lse = tidx < kBlockM;
          float const* src = is_lse ? params.softmax_lse_ptr + seq.lse_offset(params.lse_batch_stride, batch) +
                                          head * params.lse_head_stride + row_base + r
                                    : params.dsum_ptr + seq.lse_offset(params.dsum_batch_stride, batch) +
                                          head * params.dsum_head_stride + row_base + r;
          float& dst = is_lse ? sLse(r, stage) : sDsum(r, stage);
          SM80_CP_ASYNC_CACHEALWAYS<float>::copy(*src, dst);
        }
      }
      if (rows_left >= kBlockM) {
        copy_tile<kEvenCols, false, true>(gmem_copy, tQgQ, tQsQ(_, _, _, stage), tQcQ, q_col_pred, rows_left);
        copy_tile<kEvenCols, false, true>(gmem_copy, tdOgdO, tdOsdO(_, _, _, stage), tQcQ, q_col_pred, rows_left);
      } else {
        copy_tile<kEvenCols, true, true>(gmem_copy, tQgQ, tQsQ(_, _, _, stage), tQcQ, q_col_pred, rows_left);
        copy_tile<kEvenCols, true, true>(gmem_copy, tdOgdO, tdOsdO(_, _, _, stage), tQcQ, q_col_pred, rows_left);
      }
    };

    // Shared -> registers (ldmatrix) for the three MMAs.
    typename Traits::TiledMmaSdP mma_sdp;
    typename Traits::TiledMmadKV mma_dkv;
    typename Traits::TiledMmadQ mma_dq;
    auto thr_sdp = mma_sdp.get_thread_slice(tidx);
    auto thr_dkv = mma_dkv.get_thread_slice(tidx);
    auto thr_dq = mma_dq.get_thread_slice(tidx);

    using CopyN = typename Traits::SmemCopyN;
    using CopyT = typename Traits::SmemCopyT;
    SmemMma<typename Traits::TiledMmaSdP, CopyN, CopyN> const gemm_sdp(tidx);
    SmemMma<typename Traits::TiledMmadKV, CopyT, CopyT> const gemm_dkv(tidx);
    SmemMma<typename Traits::TiledMmadQ, CopyN, CopyT> const gemm_dq(tidx);
    Tensor tSrQ = thr_sdp.partition_fragment_A(sQ(_, _, 0));
    Tensor tSrK = thr_sdp.partition_fragment_B(sK);
    Tensor tdPrdO = thr_sdp.partition_fragment_A(sdO(_, _, 0));
    Tensor tdPrV = thr_sdp.partition_fragment_B(sV);
    Tensor tSsQ = gemm_sdp.partition_a(sQ);
    Tensor tdPsdO = gemm_sdp.partition_a(sdO);
    Tensor tSsK = gemm_sdp.partition_b(sK);
    Tensor tdPsV = gemm_sdp.partition_b(sV);

    Tensor tdVrPt = thr_dkv.partition_fragment_A(sPt);
    Tensor tdVrdOt = thr_dkv.partition_fragment_B(sdOt(_, _, 0));
    Tensor tdKrdSt = thr_dkv.partition_fragment_A(sdSt);
    Tensor tdKrQt = thr_dkv.partition_fragment_B(sQt(_, _, 0));
    Tensor tdVsPt = gemm_dkv.partition_a(sPt);
    Tensor tdKsdSt = gemm_dkv.partition_a(sdSt);
    Tensor tdVsdOt = gemm_dkv.partition_b(sdOt);
    Tensor tdKsQt = gemm_dkv.partition_b(sQt);

    Tensor tdQrdS = thr_dq.partition_fragment_A(sdS);
    Tensor tdQrKt = thr_dq.partition_fragment_B(sKt);
    Tensor tdQsdS = gemm_dq.partition_a(sdS);
    Tensor tdQsKt = gemm_dq.partition_b(sKt);


    // Tile-relative (row, col) of each S/dP element this thread holds.
    Tensor tScS = thr_sdp.partition_C(make_identity_tensor(TileS{}));
    Tensor score_coords = make_tensor(tScS.data(), acc_to_rowcol(tScS.layout()));
    constexpr int kRows = decltype(size<0>(score_coords))::value;
    constexpr int kCols = decltype(size<1>(score_coords))::value;

    copy_tile<kEvenCols, true, true>(gmem_copy, gmem_thr.partition_S(gK), gmem_thr.partition_D(sK), tKVcKV,
                                     kv_col_pred, keys_left);
    copy_tile<kEvenCols, true, true>(gmem_copy, gmem_thr.partition_S(gV), gmem_thr.partition_D(sV), tKVcKV,
                                     kv_col_pred, keys_left);
    StepCursor cursor{kv_head * params.head_ratio, m_block_max - 1};
    if (num_steps > 0) { load_q_do(cursor, 0); }
    cp_async_fence();

    // Dropout gets its own copy of the step loop: its keep bits and masking cost the loop spills (ptxas, d 64:
    // ~40 spill stores per step) that the softcap / ALiBi-only calls need not pay.
    auto step_loop = [&](auto with_dropout) __attribute__((always_inline)) {
      constexpr bool kDropout = decltype(with_dropout)::value;
      for (int step = 0; step < num_steps; ++step) {
        int const stage = kStages == 2 ? (step & 1) : 0;
        int const head = cursor.head;
        int const m_block = cursor.m_block;
        cursor = next_step(cursor);
        int const row_base = m_block * kBlockM;
        int const rows_left = seq.seqlen_q - row_base;
        cp_async_wait<0>();
        // Q, dO, lse, D of this step (and at step 0 K, V) have landed, and every warp is done with the previous
        // step: its Q/dO stage, P and dS may be overwritten.
        __syncthreads();
        if constexpr (kStages == 2) {
          if (step + 1 < num_steps) { load_q_do(cursor, stage ^ 1); }
          cp_async_fence();
        }

        // lse (in log2 units) and D of this thread's rows; rows past the sequence end get P = 0.
        Tensor lse_log2 = make_tensor<float>(Shape<Int<kRows>>{});
        Tensor dsum = make_tensor<float>(Shape<Int<kRows>>{});
        CUTE_UNROLL
        for (int r = 0; r < kRows; ++r) {
          int const row = get<0>(score_coords(r, 0));
          bool const valid = row < rows_left;
          lse_log2(r) = valid ? sLse(row, stage) * float(M_LOG2E) : INFINITY;
          dsum(r) = valid ? sDsum(row, stage) : 0.f;
        }

        // P = exp(scale·Q·Kᵀ - lse), masked.
        Tensor acc_s = partition_fragment_C(mma_sdp, TileS{});
        clear(acc_s);
        gemm_sdp.smem_smem(acc_s, tSrQ, tSrK, tSsQ(_, _, _, stage), tSsK);
        Tensor probs = make_tensor(acc_s.data(), acc_to_rowcol(acc_s.layout()));
        bool const softcap = kHasExtras && !kDropout && params.softcap > 0.f;  // never with dropout (API)
        Tensor cap_grad = make_tensor<float>(probs.layout());
        if (softcap) { apply_softcap_with_grad(probs, cap_grad, params.softcap_inner); }
        Alibi const alibi = kHasExtras ? make_alibi(params, batch, head, seq.seqlen_q, seq.seqlen_k) : Alibi{};
        if (kHasExtras && alibi.enabled()) { alibi.apply(probs, score_coords, row_base, key_base); }
        if (Range::needs_mask(m_block, n_block, seq.seqlen_q, seq.seqlen_k, params.window_left,
                              params.window_right)) {
          apply_mask<kHasWindow>(probs, score_coords, row_base, key_base, seq.seqlen_q, seq.seqlen_k,
                                 params.window_left, params.window_right);
        }
        scores_to_probs(probs, lse_log2, params.score_scale_log2);
        uint32_t keep[Dropout::kKeepWords<kRows, kCols>];  // dropout keep bits, drawn before dP's registers are live
        if constexpr (kDropout) {
          Dropout const dropout = make_dropout(params, seq.seqlen_k, batch, head);
          dropout.template keep_bits<kRows, kCols, Traits::kWarpsN_SdP>(keep, score_coords, row_base, key_base);
        }

        if (softcap) {  // P goes to shared memory now, and the cap's derivative into the registers dS reads
          acc_to_smem<Element>(mma_sdp, acc_s, sP, tidx);
          CUTE_UNROLL
          for (int i = 0; i < size(probs); ++i) { probs(i) *= cap_grad(i); }
        }

        // dS = P ∘ (dO·Vᵀ - D) (P times the cap's derivative with softcap).
        Tensor acc_dp = partition_fragment_C(mma_sdp, TileS{});
        clear(acc_dp);
        gemm_sdp.smem_smem(acc_dp, tdPrdO, tdPrV, tdPsdO(_, _, _, stage), tdPsV);
        Tensor dscores = make_tensor(acc_dp.data(), acc_to_rowcol(acc_dp.layout()));
        if (!kDropout && !softcap) { acc_to_smem<Element>(mma_sdp, acc_s, sP, tidx); }
        if constexpr (kDropout) {
          // O = (P ∘ Z / (1 - p)) V for the keep mask Z.
          CUTE_UNROLL
          for (int r = 0; r < kRows; ++r) {
            CUTE_UNROLL
            for (int c = 0; c < kCols; ++c) {
              // dS = P ∘ (Z ∘ dP / (1 - p) - D) = kept_p dP - P D, with kept_p = P ∘ Z / (1 - p) what dV needs
              float const p = probs(r, c);
              float const kept_p = Dropout::kept<kCols>(keep, r, c) ? p * params.dropout_scale : 0.f;
              dscores(r, c) = kept_p * dscores(r, c) - p * dsum(r);
              probs(r, c) = kept_p;
            }
          }
        } else {
          CUTE_UNROLL
          for (int r = 0; r < kRows; ++r) {
            CUTE_UNROLL
            for (int c = 0; c < kCols; ++c) { dscores(r, c) = probs(r, c) * (dscores(r, c) - dsum(r)); }
          }
        }
        if constexpr (kDropout) { acc_to_smem<Element>(mma_sdp, acc_s, sP, tidx); }  // P ∘ Z/(1-p)
        acc_to_smem<Element>(mma_sdp, acc_dp, sdS, tidx);
        __syncthreads();  // P and dS are in shared memory

        gemm_dkv.smem_smem(acc_dv, tdVrPt, tdVrdOt, tdVsPt, tdVsdOt(_, _, _, stage));

        Tensor acc_dq = partition_fragment_C(mma_dq, TileQ{});
        clear(acc_dq);
        gemm_dq.smem_smem(acc_dq, tdQrdS, tdQrKt, tdQsdS, tdQsKt);
        add_dq(params, seq, batch, head, m_block, n_block, acc_dq, tidx);

        gemm_dkv.smem_smem(acc_dk, tdKrdSt, tdKrQt, tdKsdSt, tdKsQt(_, _, _, stage));
        if constexpr (kStages == 1) {
          __syncthreads();  // every warp is done with this step's Q and dO before the next ones land there
          if (step + 1 < num_steps) { load_q_do(cursor, 0); }
          cp_async_fence();
        }
      }
    };
    if constexpr (kHasExtras) {
      if (params.has_dropout) {
        step_loop(std::true_type{});
      } else {
        step_loop(std::false_type{});
      }
    } else {
      step_loop(std::false_type{});
    }

  }

  // dQ(query block) += this key block's contribution, with coalesced fp32 atomics into the thread-major
  // accumulator tile (rows past the sequence end add zeros). In deterministic mode the key blocks take turns
  // in key-block order, so every element sees the same sequence of additions.
  template <class AccdQ>
  CUTE_DEVICE static void add_dq(BwdParams const& params, SeqlenInfo const& seq, int batch, int head, int m_block,
                                 int n_block, AccdQ const& acc_dq, int tidx) {
    float* tile = dq_accum_tile<kBlockM>(params, seq, batch, head, m_block);
    Tensor accum = dq_accum_fragment<Traits::kNThreads>(tile, acc_dq, tidx);
    int* turn = nullptr;
    int order = 0;  // this key block's place among the key blocks that see the query block
    if (params.deterministic) {
      // With a left window the first key blocks may not see this query block: count from the first that does.
      int n_block_min, n_block_max;
      Range::key_blocks(m_block, seq.seqlen_q, seq.seqlen_k, params.window_left, params.window_right, n_block_min,
                        n_block_max);
      order = n_block - n_block_min;
      turn = dq_turn_counter(params, tile);
      wait_for_turn(turn, order);
    }
    reduce_add_fragment(accum, acc_dq);
    if (params.deterministic) { pass_turn(turn); }
  }
};

}  // namespace flash::sm80
