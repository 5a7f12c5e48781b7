// sm90 forward epilogue. The normalised output goes from the consumers' wgmma accumulators to shared memory
// (stmatrix, each warpgroup's 64 rows in a swizzled tile of their own) and leaves by TMA stores of 64-row boxes, which
// TMA clips at the tensor's row and head-dim extents: all of them issued by one thread once every consumer has
// written its rows, or (per_warpgroup) each warpgroup's by one of its threads as soon as the warpgroup has, so that
// the warpgroups need not meet. Where TMA cannot address the output (misaligned pointer or strides, a packed
// GQA tile's rows spread over the group's heads), or a varlen tile would reach into the next sequence's rows, the
// accumulators go straight to global memory instead: two adjacent columns (4 bytes) per store, predicated on the
// sequence end and the head dim. Each row's lse is written by the lane that holds column 0 of that row.
#pragma once

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>

#include "../core/block.h"
#include "../core/convert.h"
#include "../core/params.h"
#include "../core/seqlen.h"
#include "fragment_layouts.h"
#include "gmem_extents.h"

namespace flash::sm90 {

using namespace cute;

template <class Traits>
struct FwdEpilogue {
  using Element = typename Traits::Element;
  static constexpr int kBlockM = Traits::kBlockM;
  static constexpr int kHeadDim = Traits::kHeadDim;
  static constexpr int kBarrier = 3;  // named barrier id (PingPong has 0 and 1, the mainloop's V tail 2)
  // per_warpgroup: warpgroup w syncs its 128 threads on named barrier kFirstWarpgroupBarrier + w, the ids that
  // FwdMainloop::load_q_rows uses the same way (a warpgroup's own syncs, one after the other).
  static constexpr int kFirstWarpgroupBarrier = 4;
  static constexpr int kMmaWarpgroups = Traits::kMmaWarpgroups;
  static_assert(kFirstWarpgroupBarrier + kMmaWarpgroups <= 8, "CUTLASS reserves 8 of the 16 named barriers");
  using SmemLayoutO = typename Traits::SmemLayoutO;
  using SmemLayoutOWarpgroup = typename Traits::SmemLayoutOWarpgroup;
  static constexpr int kWarpgroupElements = int(cosize_v<SmemLayoutOWarpgroup>);
  using TmaO = decltype(make_tma_copy(SM90_TMA_STORE{}, GmemTensor<Element>{}, SmemLayoutOWarpgroup{}));

  struct Arguments {
    TmaO tma_o;
    bool tma_store;  // tma_o is set up: the output is TMA-addressable
  };

  struct OBuffer {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutO>> o;
  };
  struct NoBuffer {};
  // The staging buffer where it has its own (else Q's, see Traits::kOInQ).
  using SharedStorage = std::conditional_t<Traits::kOInQ, NoBuffer, OBuffer>;

  CUTE_DEVICE static Element* buffer(SharedStorage& shared, Element* q_buffer) {
    if constexpr (Traits::kOInQ) {
      return q_buffer;
    } else {
      return shared.o.data();
    }
  }

  // allow_tma: the FLASH_ATTN_SM90_FWD_TMA_STORE switch (fwd_launch.h). TMA needs 16-byte aligned addresses and
  // strides.
  static Arguments make_arguments(FwdParams const& params, bool allow_tma) {
    Arguments args{};
    bool const varlen = params.cu_seqlens_q != nullptr;
    int64_t const align = 16 / int64_t(sizeof(Element));
    args.tma_store = allow_tma && reinterpret_cast<uintptr_t>(params.o_ptr) % 16 == 0 &&
                     params.o_row_stride % align == 0 && params.o_head_stride % align == 0 &&
                     (varlen || params.o_batch_stride % align == 0);
    if (args.tma_store) {
      auto const o = gmem_tensor(static_cast<Element*>(params.o_ptr), q_extent(params), params.o_batch_stride,
                                 params.o_row_stride, params.o_head_stride);
      args.tma_o = make_tma_copy(SM90_TMA_STORE{}, o, SmemLayoutOWarpgroup{});
    }
    return args;
  }

  CUTE_DEVICE static void prefetch_descriptor(Arguments const& args) {
    if (args.tma_store) { cute::prefetch_tma_descriptor(args.tma_o.get_tma_descriptor()); }
  }

  // acc_o: the normalised (MMA, MMA_M, MMA_N) fragment of TiledMmaPV; lse: one value per row of its rowcol view.
  // smem_o: buffer(). Where smem_o is Q's buffer, the caller releases Q only after this returns: the TMA store has
  // read it by then. per_warpgroup: each consumer warpgroup stores its own rows without syncing with the others
  // (not where smem_o is Q's buffer, whose rows the other warpgroups' S GEMMs may still read).
  template <class AccO, class Lse>
  CUTE_DEVICE static void store(Arguments const& args, FwdParams const& params, Element* smem_o, SeqlenInfo const& seq,
                                AccO const& acc_o, Lse const& lse, int m_block, int head, int batch, int mma_tidx,
                                bool per_warpgroup) {
    int const seqlen_q = seq.seqlen_q;
    int const row_base = m_block * kBlockM;
    typename Traits::TiledMmaPV mma_pv;
    auto thr_pv = mma_pv.get_thread_slice(mma_tidx);
    Tensor rO = convert_fragment<Element>(acc_o);
    Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor coords = make_tensor(tOcO.data(), acc_to_rowcol(tOcO.layout()));
    // A varlen tile (or, per_warpgroup, a warpgroup's rows of it) may be stored whole only where its rows past the
    // sequence are past the tensor too. The choice is the same for every thread that syncs in store_by_tma.
    int const stored_rows = per_warpgroup ? 64 : kBlockM;
    int const first_row = per_warpgroup ? row_base + mma_tidx / 128 * 64 : row_base;
    bool const whole_tile = !seq.varlen_q || first_row + stored_rows <= seqlen_q ||
                            seq.start_q + seqlen_q >= get<0>(q_extent(params));
    if (args.tma_store && whole_tile) {
      store_by_tma(args, params, smem_o, seq, rO, m_block, head, batch, mma_tidx, per_warpgroup);
    } else {
      Element* o_base = static_cast<Element*>(params.o_ptr) +
                        seq.q_offset(params.o_batch_stride, params.o_row_stride, batch) +
                        int64_t(head) * params.o_head_stride;
      store_direct(params, rO, coords, [&](int row) -> Element* {
        int const q = row_base + row;
        return q < seqlen_q ? o_base + int64_t(q) * params.o_row_stride : nullptr;
      });
    }
    float* lse_base = params.softmax_lse_ptr + seq.lse_offset(params.lse_batch_stride, batch) +
                      int64_t(head) * params.lse_head_stride;
    CUTE_UNROLL
    for (int r = 0; r < size<0>(coords); ++r) {
      int const row = row_base + get<0>(coords(r, 0));
      if (row < seqlen_q && get<1>(coords(r, 0)) == 0) { lse_base[row] = lse(r); }
    }
  }

  // A packed GQA tile (tile_rows.h; m_block of the KV head kv_head's packed rows): O and lse row by row, each to
  // its (query, head).
  template <class AccO, class Lse>
  CUTE_DEVICE static void store_packed(FwdParams const& params, SeqlenInfo const& seq, AccO const& acc_o,
                                       Lse const& lse, int m_block, int kv_head, int batch, int mma_tidx) {
    PackedRows const packing{params.head_ratio};
    int const rows = seq.seqlen_q * packing.group;
    int const row_base = m_block * kBlockM;
    typename Traits::TiledMmaPV mma_pv;
    Tensor rO = convert_fragment<Element>(acc_o);
    Tensor tOcO = mma_pv.get_thread_slice(mma_tidx).partition_C(
        make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor coords = make_tensor(tOcO.data(), acc_to_rowcol(tOcO.layout()));
    Element* o_batch = static_cast<Element*>(params.o_ptr) +
                       seq.q_offset(params.o_batch_stride, params.o_row_stride, batch);
    store_direct(params, rO, coords, [&](int row) -> Element* {
      int const p = row_base + row;
      return p < rows ? o_batch + int64_t(packing.query(p)) * params.o_row_stride +
                            int64_t(packing.head(p, kv_head)) * params.o_head_stride
                      : nullptr;
    });
    float* lse_batch = params.softmax_lse_ptr + seq.lse_offset(params.lse_batch_stride, batch);
    CUTE_UNROLL
    for (int r = 0; r < size<0>(coords); ++r) {
      int const p = row_base + get<0>(coords(r, 0));
      if (p < rows && get<1>(coords(r, 0)) == 0) {
        lse_batch[int64_t(packing.head(p, kv_head)) * params.lse_head_stride + packing.query(p)] = lse(r);
      }
    }
  }

  // Before the CTA exits: its last TMA stores have read shared memory (each warpgroup's first thread issues some).
  CUTE_DEVICE static void drain(int mma_tidx) {
    if (mma_tidx % 128 == 0) { tma_store_wait<0>(); }
  }

 private:
  template <class FragO>
  CUTE_DEVICE static void store_by_tma(Arguments const& args, FwdParams const& params, Element* smem_o,
                                       SeqlenInfo const& seq, FragO const& rO, int m_block, int head, int batch,
                                       int mma_tidx, bool per_warpgroup) {
    Tensor sO = make_tensor(make_smem_ptr(smem_o), SmemLayoutO{});
    int const warpgroup = mma_tidx / 128;
    // Who meets and who stores: the warpgroup and its first thread, or every consumer and thread 0.
    int const threads = per_warpgroup ? 128 : Traits::kMmaThreads;
    int const barrier = per_warpgroup ? kFirstWarpgroupBarrier + warpgroup : kBarrier;
    bool const issues = per_warpgroup ? mma_tidx % 128 == 0 : mma_tidx == 0;
    // The rows are free: the stores that last read them have (the issuing thread waits, the barrier tells the
    // others), and every consumer's S GEMMs are done (where the buffer is Q's).
    if (issues) { tma_store_wait<0>(); }
    cutlass::arch::NamedBarrier::sync(threads, barrier);
    auto smem_copy = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, typename Traits::TiledMmaPV{});
    auto thr_copy = smem_copy.get_thread_slice(mma_tidx);
    copy(smem_copy, thr_copy.retile_S(rO), thr_copy.partition_D(sO));  // each thread's rows are its warpgroup's
    cutlass::arch::fence_view_async_shared();  // the stmatrix writes, visible to the TMA engine
    cutlass::arch::NamedBarrier::sync(threads, barrier);
    if (issues) {
      Tensor mO = args.tma_o.get_tma_tensor(q_extent(params))(_, _, head, seq.varlen_q ? 0 : batch);
      Tensor gO = local_tile(domain_offset(make_coord(seq.start_q, _0{}), mO), Shape<_64, Int<kHeadDim>>{},
                             make_coord(_, _0{}));  // (64, head dim, 64-row blocks)
      auto tma = args.tma_o.get_slice(0);
      int const first = per_warpgroup ? warpgroup : 0, end = per_warpgroup ? warpgroup + 1 : kMmaWarpgroups;
      for (int w = first; w < end; ++w) {
        int const rows = m_block * kMmaWarpgroups + w;  // 64-row block of the sequence
        if (rows * 64 >= seq.seqlen_q) { break; }  // past the sequence: nothing to store
        Tensor sO_w = make_tensor(make_smem_ptr(smem_o + w * kWarpgroupElements), SmemLayoutOWarpgroup{});
        copy(args.tma_o, tma.partition_S(sO_w), tma.partition_D(gO(_, _, rows)));
      }
      tma_store_arrive();
      if constexpr (Traits::kOInQ) { tma_store_wait<0>(); }  // Q's buffer is read before Q is released
    }
  }

  // row_ptr(row): the output row of tile row `row`, nullptr past the sequence.
  template <class FragO, class Coords, class RowPtr>
  CUTE_DEVICE static void store_direct(FwdParams const& params, FragO const& rO, Coords const& coords,
                                       RowPtr const& row_ptr) {
    Tensor rO_rows = make_tensor(rO.data(), acc_to_rowcol(rO.layout()));
    static_assert(decltype(size<1, 0>(rO_rows))::value == 2, "columns come in adjacent pairs");
    CUTE_UNROLL
    for (int r = 0; r < size<0>(rO_rows); ++r) {
      Element* o_row = row_ptr(get<0>(coords(r, 0)));
      if (o_row == nullptr) { continue; }
      CUTE_UNROLL
      for (int c = 0; c < size<1>(rO_rows); c += 2) {
        int const col = get<1>(coords(r, c));
        if (col < params.head_dim) {  // head_dim is a multiple of 8, so col + 1 is in range too
          Element pair[2] = {rO_rows(r, c), rO_rows(r, c + 1)};
          *reinterpret_cast<uint32_t*>(o_row + col) = *reinterpret_cast<uint32_t const*>(pair);
        }
      }
    }
  }
};

}  // namespace flash::sm90
