// The sm80 forward mainloop: for one query block, Q and the visited K/V tiles through shared memory (cp.async),
// S = Q·Kᵀ and O += P·V on mma.sync, with the score modifiers, masking, online softmax and dropout of the core.
// Key blocks are visited from the last to the first so that the only tiles needing element-wise masks (the
// sequence end, the causal diagonal) come first. K and V each have one shared-memory buffer: V(n) is fetched while
// S = Q·K(n)ᵀ is computed, and K(n-1) while softmax and P·V(n) run.
#pragma once

#include <type_traits>

#include <cute/tensor.hpp>

#include "../core/alibi.h"
#include "../core/block.h"
#include "../core/block_loop.h"
#include "../core/dropout.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "../core/score_mods.h"
#include "../core/softmax.h"
#include "../core/uniform_branch.h"
#include "copy.h"
#include "fragment_layouts.h"
#include "gemm.h"
#include "kv_load.h"

namespace flash::sm80 {

using namespace cute;

// kHasExtras: softcap, ALiBi and dropout are compiled in (each still switched on by params).
template <class Traits, bool kHasWindow, bool kEvenCols, bool kHasExtras>
struct FwdMainloop {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kBlockN = Traits::kBlockN;
  static constexpr int kHeadDim = Traits::kHeadDim;
  // The copies of the key-block loop (see key_block_loop): without dropout; a paged KV cache (no dropout);
  // dropout; dropout writing S_dmask.
  enum LoopMode : int { kNoDropout, kPagedKv, kDropoutOnly, kDropoutWritingDmask };
  // Where a key block's dropout keep bits come from: its own Philox calls, the calls that also serve the other
  // 64-key block of its 128-key group (kept in next_keep), or next_keep, drawn with the block visited before.
  enum KeepSource : int { kDraw, kDrawWithPartner, kCarried };
  // A thread's scores in the (rows, cols) view of its accumulator, and the words of dropout keep bits for them.
  static constexpr int kScoreRows = 2 * kBlockM / (16 * Traits::kNWarps / Traits::kWarpsN);
  static constexpr int kScoreCols = 2 * kBlockN / (8 * Traits::kWarpsN);
  static constexpr int kKeepWords = Dropout::kKeepWords<kScoreRows, kScoreCols>;
  using Range = BlockRange<kBlockM, kBlockN, kHasWindow>;

  // Unnormalised probabilities of one key tile (the row sums already include every key): dropped entries
  // become 0 before P·V; with return_attn_probs they are also written to S_dmask, dropped ones negated.
  template <bool kWritesDmask, int kWords, class Scores, class Coords>
  CUTE_DEVICE static void apply_dropout(FwdParams const& params, uint32_t const (&keep)[kWords], Scores& scores,
                                        Coords const& coords, int batch, int head, int row_base, int col_base) {
    constexpr int kRows = decltype(size<0>(scores))::value, kCols = decltype(size<1>(scores))::value;
    // S_dmask addresses: one 64-bit tile base and 32-bit in-tile offsets (the binding keeps a tile's span
    // below 2^31 elements), so that no per-row 64-bit offsets stay live across the key-block loop.
    Element* s_dmask = !kWritesDmask
                           ? nullptr
                           : static_cast<Element*>(params.s_dmask_ptr) + batch * params.s_dmask_batch_stride +
                                 head * params.s_dmask_head_stride + int64_t(row_base) * params.s_dmask_row_stride +
                                 col_base;
    int const s_dmask_row_stride = int(params.s_dmask_row_stride);
    CUTE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTE_UNROLL
      for (int c = 0; c < kCols; ++c) {
        bool const kept = Dropout::kept<kCols>(keep, r, c);
        float const p = scores(r, c);
        if constexpr (kWritesDmask) {
          auto const rc = coords(r, c);
          // A varlen sequence longer than max_seqlen (the buffer's extent) keeps to the buffer.
          if (row_base + get<0>(rc) < params.s_dmask_rows && col_base + get<1>(rc) < params.s_dmask_cols) {
            s_dmask[get<0>(rc) * s_dmask_row_stride + get<1>(rc)] = Element(kept ? p : -p);
          }
        }
        scores(r, c) = kept ? p : 0.f;
      }
    }
  }

  // acc_o, softmax: the cleared output fragment (the TiledMma's C of the (kBlockM, d) tile) and the online-softmax
  // state of its rows; on return they hold the unnormalised output and the row statistics of keys
  // [n_block_min, n_block_max) * kBlockN (nothing when the range is empty).
  template <class AccO, class Softmax>
  CUTE_DEVICE static void run(FwdParams const& params, char* smem, SeqlenInfo const& seq, int batch, int head,
                              int m_block, int n_block_min, int n_block_max, int tidx, AccO& acc_o, Softmax& softmax) {
    int const row_base = m_block * kBlockM;
    int const rows_left = seq.seqlen_q - row_base;
    // Global tiles. Offsets are 64-bit; K/V are (kBlockN, d, n_blocks) views of one (batch, kv head).
    int const kv_head = head / params.head_ratio;
    Element const* q_base = static_cast<Element const*>(params.q_ptr) +
                            seq.q_offset(params.q_batch_stride, params.q_row_stride, batch) +
                            head * params.q_head_stride + int64_t(row_base) * params.q_row_stride;
    Element const* k_base = static_cast<Element const*>(params.k_ptr) +
                            seq.k_offset(params.k_batch_stride, params.k_row_stride) +
                            kv_head * params.k_head_stride;
    Element const* v_base = static_cast<Element const*>(params.v_ptr) +
                            seq.k_offset(params.v_batch_stride, params.v_row_stride) +
                            kv_head * params.v_head_stride;
    auto const tile_q = Shape<Int<kBlockM>, Int<kHeadDim>>{};
    int const num_kv_blocks = n_block_max > 0 ? n_block_max : 1;
    Tensor gQ = make_tensor(make_gmem_ptr(q_base), tile_q, make_stride(params.q_row_stride, _1{}));
    Tensor gK = make_tensor(make_gmem_ptr(k_base), make_shape(Int<kBlockN>{}, Int<kHeadDim>{}, num_kv_blocks),
                            make_stride(params.k_row_stride, _1{}, int64_t(kBlockN) * params.k_row_stride));
    Tensor gV = make_tensor(make_gmem_ptr(v_base), make_shape(Int<kBlockN>{}, Int<kHeadDim>{}, num_kv_blocks),
                            make_stride(params.v_row_stride, _1{}, int64_t(kBlockN) * params.v_row_stride));

    // Shared memory: Q | K | V.
    Element* smem_q = reinterpret_cast<Element*>(smem);
    Tensor sQ = make_tensor(make_smem_ptr(smem_q), typename Traits::SmemLayoutQ{});
    Tensor sK = make_tensor(sQ.data() + size(sQ), typename Traits::SmemLayoutKV{});
    Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
    Tensor sVt = make_tensor(sV.data(), typename Traits::SmemLayoutVt{});

    // Global -> shared (cp.async), with predicates on rows and on the real head dim.
    typename Traits::GmemTiledCopyQKV gmem_copy;
    auto gmem_thr_copy = gmem_copy.get_thread_slice(tidx);
    Tensor tQgQ = gmem_thr_copy.partition_S(gQ);
    Tensor tQsQ = gmem_thr_copy.partition_D(sQ);
    Tensor tKgK = gmem_thr_copy.partition_S(gK);  // (CPY, CPY_N, CPY_K, n_blocks)
    Tensor tKsK = gmem_thr_copy.partition_D(sK);
    Tensor tVgV = gmem_thr_copy.partition_S(gV);
    Tensor tVsV = gmem_thr_copy.partition_D(sV);
    Tensor tQcQ = gmem_thr_copy.partition_S(make_identity_tensor(tile_q));
    Tensor tKVcKV = gmem_thr_copy.partition_S(make_identity_tensor(Shape<Int<kBlockN>, Int<kHeadDim>>{}));
    Tensor q_col_pred = make_col_predicate(tQcQ, params.head_dim);
    Tensor kv_col_pred = make_col_predicate(tKVcKV, params.head_dim);
    // K or V tile n_block into shared memory: a strided view, or row by row through the block table of a paged
    // cache (rows_left: the tile's rows that exist, checked when kCheckRows). Paged calls run the windowed
    // kHasExtras kernel (needs_score_extras; the binding sets has_window) in a copy of the loop of their own: in
    // the plain kernel's loop the paged path cost 400 instructions of code and 160 bytes of spills, and beside
    // the softcap / ALiBi loop of the unwindowed kernel those calls ran 8% slower.
    constexpr bool kMayPage = kHasExtras && kHasWindow;
    Element const* k_cache = static_cast<Element const*>(params.k_ptr);
    Element const* v_cache = static_cast<Element const*>(params.v_ptr);
    auto load_k = [&](int n_block, auto check_rows, auto may_page, int rows_left) __attribute__((always_inline)) {
      load_kv_tile<kEvenCols, decltype(check_rows)::value, decltype(may_page)::value, kBlockN>(
          params, gmem_copy, tKgK, tKsK, tKVcKV, kv_col_pred, k_cache, params.k_batch_stride, params.k_row_stride, params.k_head_stride,
          batch, kv_head, n_block, rows_left);
    };
    auto load_v = [&](int n_block, auto check_rows, auto may_page, int rows_left) __attribute__((always_inline)) {
      load_kv_tile<kEvenCols, decltype(check_rows)::value, decltype(may_page)::value, kBlockN>(
          params, gmem_copy, tVgV, tVsV, tKVcKV, kv_col_pred, v_cache, params.v_batch_stride, params.v_row_stride, params.v_head_stride,
          batch, kv_head, n_block, rows_left);
    };

    // Shared -> registers (ldmatrix) and the MMAs.
    typename Traits::TiledMma tiled_mma;
    auto thr_mma = tiled_mma.get_thread_slice(tidx);
    Tensor tSrQ = thr_mma.partition_fragment_A(sQ);
    Tensor tSrK = thr_mma.partition_fragment_B(sK);
    Tensor tOrVt = thr_mma.partition_fragment_B(sVt);
    using GemmQK = SmemMma<typename Traits::TiledMma, typename Traits::SmemCopyAtomQK, typename Traits::SmemCopyAtomQK>;
    GemmQK const gemm_qk(tidx);
    using GemmPV = SmemMma<typename Traits::TiledMma, typename Traits::SmemCopyAtomQK, typename Traits::SmemCopyAtomVt>;
    GemmPV const gemm_pv(tidx);
    Tensor tSsQ = gemm_qk.partition_a(sQ);
    Tensor tSsK = gemm_qk.partition_b(sK);
    Tensor tOsVt = gemm_pv.partition_b(sVt);

    Tensor acc_o_rows = make_tensor(acc_o.data(), acc_to_rowcol(acc_o.layout()));

    // Tile-relative (row, col) of each score this thread holds, for masking.
    Tensor tScS = thr_mma.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    Tensor score_coords = make_tensor(tScS.data(), acc_to_rowcol(tScS.layout()));
    Alibi const alibi = kHasExtras ? make_alibi(params, batch, head, seq.seqlen_q, seq.seqlen_k) : Alibi{};
    Dropout const dropout = kHasExtras ? make_dropout(params, seq.seqlen_k, batch, head) : Dropout{};
    static_assert(decltype(size<0>(score_coords))::value == kScoreRows &&
                  decltype(size<1>(score_coords))::value == kScoreCols);

    // always_inline: with the extras compiled in the body outgrows NVVM's inlining budget, and an outlined call
    // would put every fragment it touches (acc_o, the MMA operands) in local memory.
    // loop_mode: a LoopMode, one copy of the loop each (see key_block_loop).
    // keep_source: a KeepSource, where the block's dropout keep bits come from.
    auto process_key_block = [&](int n_block, auto is_first, auto loop_mode, auto keep_source,
                                 uint32_t (&next_keep)[kKeepWords]) __attribute__((always_inline)) {
      constexpr bool kIsFirst = decltype(is_first)::value;
      constexpr int kMode = decltype(loop_mode)::value;
      constexpr bool kDropout = kMode == kDropoutOnly || kMode == kDropoutWritingDmask;
      constexpr int kKeepSource = decltype(keep_source)::value;
      // Dropout's keep bits first: the Philox rounds then run while only acc_o is live, not acc_s and the
      // softmax state as well.
      uint32_t keep[kKeepWords];
      // The runtime test (always true in this copy) keeps the Philox rounds in their own basic block: with
      // them in the GEMM's block ptxas interleaves them with the MMAs and spills (d 128: ~90 spill ops per
      // key block instead of ~30).
      if (kDropout && params.has_dropout) {
        if constexpr (kKeepSource == kDrawWithPartner) {
          dropout.template keep_bits_with_partner<kScoreRows, kScoreCols, Traits::kWarpsN>(
              keep, next_keep, score_coords, row_base, n_block * kBlockN);
        } else if constexpr (kKeepSource == kCarried) {
          CUTE_UNROLL
          for (int i = 0; i < kKeepWords; ++i) { keep[i] = next_keep[i]; }
        } else {
          dropout.template keep_bits<kScoreRows, kScoreCols, Traits::kWarpsN>(keep, score_coords, row_base,
                                                                            n_block * kBlockN);
        }
      }
      Tensor acc_s = partition_fragment_C(tiled_mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
      clear(acc_s);
      cp_async_wait<0>();
      __syncthreads();  // K(n) has landed; every warp is done reading V(n+1)
      // Only the first block visited can end past seqlen_k.
      using MayPage = std::bool_constant<kMode == kPagedKv>;
      load_v(n_block, is_first, MayPage{}, seq.seqlen_k - n_block * kBlockN);
      cp_async_fence();

      gemm_qk.smem_smem(acc_s, tSrQ, tSrK, tSsQ, tSsK);
      Tensor scores = make_tensor(acc_s.data(), acc_to_rowcol(acc_s.layout()));
      prepare_score_tile<kHasExtras, /*kMaySoftcap=*/!kDropout, kHasWindow>(
          params, alibi, scores, score_coords, row_base, n_block * kBlockN,
          [&] {
            return Range::needs_mask(m_block, n_block, seq.seqlen_q, seq.seqlen_k, params.window_left,
                                     params.window_right);
          },
          seq.seqlen_q, seq.seqlen_k);

      cp_async_wait<0>();
      __syncthreads();  // V(n) has landed; every warp is done reading K(n)
      if (n_block > n_block_min) {
        load_k(n_block - 1, std::false_type{}, MayPage{}, kBlockN);
        cp_async_fence();
      }

      softmax.template update<kIsFirst>(scores, acc_o_rows);
      if (kDropout && params.has_dropout) {
        constexpr bool kWritesDmask = kMode == kDropoutWritingDmask;
        apply_dropout<kWritesDmask>(params, keep, scores, score_coords, batch, head, row_base, n_block * kBlockN);
      }
      Tensor rP = convert_fragment<Element>(acc_s);
      Tensor tOrP = make_tensor(rP.data(), acc_to_a_operand(rP.layout()));
      gemm_pv.reg_smem(acc_o, tOrP, tOrVt, tOsVt);
    };

    if (n_block_max > n_block_min) {
      copy_tile<kEvenCols, true, true>(gmem_copy, tQgQ, tQsQ, tQcQ, q_col_pred, rows_left);
      load_k(n_block_max - 1, std::true_type{}, std::bool_constant<kMayPage>{},
             seq.seqlen_k - (n_block_max - 1) * kBlockN);
      cp_async_fence();
      // Dropout, S_dmask (return_attn_probs with dropout, a debug output) and paged K/V get their own copies of
      // the loop: the keep bits and Philox rounds would otherwise cost softcap / ALiBi calls registers and
      // scheduling (forward ALiBi alone ran at 0.76x plain with dropout's code in its loop), and S_dmask's stores
      // every dropout call spills (ptxas: 620 instead of ~160 bytes at d 128).
      using Draw = std::integral_constant<int, kDraw>;
      using DrawWithPartner = std::integral_constant<int, kDrawWithPartner>;
      using Carried = std::integral_constant<int, kCarried>;
      uint32_t next_keep[kKeepWords];
      auto key_block_loop = [&](auto loop_mode) __attribute__((always_inline)) {
        process_key_block(n_block_max - 1, std::true_type{}, loop_mode, Draw{}, next_keep);
        for (int n_block = n_block_max - 2; n_block >= n_block_min; --n_block) {
          process_key_block(n_block, std::false_type{}, loop_mode, Draw{}, next_keep);
        }
      };
      if (kHasExtras && params.has_dropout && params.s_dmask_ptr != nullptr) {
        key_block_loop(std::integral_constant<int, kDropoutWritingDmask>{});
      } else if (kHasExtras && params.has_dropout) {
        using DropoutOnly = std::integral_constant<int, kDropoutOnly>;
        if constexpr (kBlockN == 64) {
          // One Philox call serves a thread's atoms in both 64-key blocks of a 128-key group: the first block
          // and every odd one draw the bits of their partner too, which is the next block visited when even.
          // Two copies of the block, not a branch around the draw: ptxas predicates such a branch, and every
          // block would issue the Philox rounds.
          process_key_block(n_block_max - 1, std::true_type{}, DropoutOnly{}, DrawWithPartner{}, next_keep);
          for (int n_block = n_block_max - 2; n_block >= n_block_min; --n_block) {
            if (n_block % 2 == 1) {
              process_key_block(n_block, std::false_type{}, DropoutOnly{}, DrawWithPartner{}, next_keep);
            } else {
              process_key_block(n_block, std::false_type{}, DropoutOnly{}, Carried{}, next_keep);
            }
          }
        } else {
          key_block_loop(DropoutOnly{});
        }
      } else if (kMayPage && params.block_table != nullptr) {
        key_block_loop(std::integral_constant<int, kPagedKv>{});
      } else {
        key_block_loop(std::integral_constant<int, kNoDropout>{});
      }
    }
  }
};

}  // namespace flash::sm80
