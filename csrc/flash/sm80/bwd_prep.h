// The two light kernels around the backward mainloop, one CTA per (query block, batch, head) like the
// accumulator's tiles (dq_accum.h):
//   before: D = rowsum(dO ∘ O) in fp32 (the softmax-gradient correction term) and a zeroed dQ accumulator tile;
//   after:  dQ = softmax_scale · accumulator, read back in the dQ MMA's fragment layout, converted to the element
//           dtype and written through shared memory into the caller's (possibly strided) dq.
// Both are memory-bound and touch each element once.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/array.h>

#include "../core/params.h"
#include "../core/seqlen.h"
#include "dq_accum.h"
#include "tile_store.h"

namespace flash::sm80 {

using namespace cute;

// One query block of a (batch, head): grid = (num_m_blocks * batch, heads).
template <int kBlockM>
struct QueryBlock {
  int batch, head, m_block, row_base, rows_left;
  SeqlenInfo seq;

  template <class T>
  CUTE_DEVICE T* row_ptr(T* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride, int row) const {
    return base + seq.q_offset(batch_stride, row_stride, batch) + head * head_stride +
           int64_t(row_base + row) * row_stride;
  }
};

// fn(block) for this CTA's query block and, when a varlen sequence is longer than the grid's max_seqlen_q (an
// understated bound), for every num_m_blocks-th block after it; nothing for a block past the sequence's end.
template <int kBlockM, class Fn>
CUTE_DEVICE void for_each_query_block(BwdParams const& params, Fn&& fn) {
  int const num_m_blocks = (params.seqlen_q + kBlockM - 1) / kBlockM;
  int const batch = int(blockIdx.x) / num_m_blocks;
  int const first = int(blockIdx.x) - batch * num_m_blocks;
  SeqlenInfo const seq(params, batch);
  for (int m_block = first; m_block * kBlockM < seq.seqlen_q; m_block += num_m_blocks) {
    if (m_block != first) { __syncthreads(); }  // the previous block is done with shared memory
    fn(QueryBlock<kBlockM>{batch, int(blockIdx.y), m_block, m_block * kBlockM, seq.seqlen_q - m_block * kBlockM, seq});
  }
}

template <class Traits>
CUTE_DEVICE void bwd_prep_block(BwdParams const& params, QueryBlock<Traits::kBlockM> const& blk) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  int const tidx = threadIdx.x;
  float4* tile = reinterpret_cast<float4*>(dq_accum_tile<kBlockM>(params, blk.seq, blk.batch, blk.head, blk.m_block));
  for (int i = tidx; i < kBlockM * Traits::kHeadDim / 4; i += Traits::kNThreads) {
    tile[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  }

  // D: a group of kThreadsPerRow lanes per row, one 16-byte vector of O and dO per lane; every row of the tile
  // is loaded before any reduction so that all loads are in flight together.
  constexpr int kVec = 8;
  constexpr int kThreadsPerRow = cute::min(32, int(cute::bit_ceil(unsigned(Traits::kHeadDim / kVec))));
  constexpr int kRowsPerPass = Traits::kNThreads / kThreadsPerRow;
  constexpr int kPasses = (kBlockM + kRowsPerPass - 1) / kRowsPerPass;
  static_assert(Traits::kHeadDim <= 32 * kVec, "one vector per lane covers the head dim");
  int const col = (tidx % kThreadsPerRow) * kVec;
  float sums[kPasses];
  CUTE_UNROLL
  for (int p = 0; p < kPasses; ++p) {
    int const r = tidx / kThreadsPerRow + p * kRowsPerPass;
    sums[p] = 0.f;
    if (r < kBlockM && r < blk.rows_left && col < params.head_dim) {
      Element const* o = blk.row_ptr(static_cast<Element const*>(params.o_ptr), params.o_batch_stride,
                                     params.o_row_stride, params.o_head_stride, r);
      Element const* dout = blk.row_ptr(static_cast<Element const*>(params.do_ptr), params.do_batch_stride,
                                        params.do_row_stride, params.do_head_stride, r);
      auto const o_vec = *reinterpret_cast<cutlass::AlignedArray<Element, kVec> const*>(o + col);
      auto const do_vec = *reinterpret_cast<cutlass::AlignedArray<Element, kVec> const*>(dout + col);
      CUTE_UNROLL
      for (int i = 0; i < kVec; ++i) { sums[p] += float(o_vec[i]) * float(do_vec[i]); }
    }
  }
  CUTE_UNROLL
  for (int p = 0; p < kPasses; ++p) {
    CUTE_UNROLL
    for (int offset = kThreadsPerRow / 2; offset > 0; offset /= 2) {
      sums[p] += __shfl_xor_sync(0xffffffffu, sums[p], offset);
    }
    int const r = tidx / kThreadsPerRow + p * kRowsPerPass;
    if (tidx % kThreadsPerRow == 0 && r < kBlockM && r < blk.rows_left) {
      *blk.row_ptr(params.dsum_ptr, params.dsum_batch_stride, 1, params.dsum_head_stride, r) = sums[p];
    }
  }
}

template <class Traits, bool kEvenCols>
CUTE_DEVICE void bwd_convert_dq_block(BwdParams const& params, QueryBlock<Traits::kBlockM> const& blk, char* smem) {
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM;
  using TileQ = Shape<Int<kBlockM>, Int<Traits::kHeadDim>>;
  int const tidx = threadIdx.x;

  typename Traits::TiledMmadQ mma_dq;
  Tensor acc = partition_fragment_C(mma_dq, TileQ{});
  float* tile = dq_accum_tile<kBlockM>(params, blk.seq, blk.batch, blk.head, blk.m_block);
  Tensor src = dq_accum_fragment<Traits::kNThreads>(tile, acc, tidx);
  CUTE_UNROLL
  for (int i = 0; i < size(acc); ++i) { acc(i) = src(i) * params.softmax_scale; }

  Tensor sdQ = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutdQ{});
  acc_to_smem<Element>(mma_dq, acc, sdQ, tidx);
  __syncthreads();
  Element* dq = blk.row_ptr(static_cast<Element*>(params.dq_ptr), params.dq_batch_stride, params.dq_row_stride,
                            params.dq_head_stride, 0);
  Tensor gdQ = make_tensor(make_gmem_ptr(dq), TileQ{}, make_stride(params.dq_row_stride, _1{}));
  smem_to_gmem<kEvenCols>(typename Traits::GmemTiledCopyStore{}, sdQ, gdQ, blk.rows_left, params.head_dim, tidx);
}

template <class Traits>
__global__ void __launch_bounds__(Traits::kNThreads) bwd_prep_kernel(__grid_constant__ const BwdParams params) {
  constexpr int kBlockM = Traits::kBlockM;
  for_each_query_block<kBlockM>(params, [&](QueryBlock<kBlockM> const& blk) {
    bwd_prep_block<Traits>(params, blk);
  });
}

template <class Traits, bool kEvenCols>
__global__ void __launch_bounds__(Traits::kNThreads) bwd_convert_dq_kernel(__grid_constant__ const BwdParams params) {
  constexpr int kBlockM = Traits::kBlockM;
  extern __shared__ __align__(128) char smem[];
  for_each_query_block<kBlockM>(params, [&](QueryBlock<kBlockM> const& blk) {
    bwd_convert_dq_block<Traits, kEvenCols>(params, blk, smem);
  });
}

}  // namespace flash::sm80
