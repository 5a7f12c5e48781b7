// Merging the split-KV forward's partial results (params.h: o_accum, lse_accum) into o and softmax_lse.
// Split s of a row holds O_s normalised over its keys and lse_s; the row's lse = log sum_s exp(lse_s) and
// O = sum_s exp(lse_s - lse) O_s. Splits without keys (lse -inf) get no weight; a row with none at all ends with
// output 0 and lse +inf, as in the main kernel. One CTA per (head, row): its warps take every fourth split, four
// columns per lane (two chunks of four at d > 128).
// Every split writes all its rows (a split without keys: output 0, lse -inf), so no partial is uninitialised.
#pragma once

#include <cmath>
#include <type_traits>

#include <cutlass/array.h>
#include <cutlass/cutlass.h>

#include "lse_merge.h"
#include "params.h"
#include "reduce.h"

namespace flash {

inline constexpr int kCombineThreads = 128;

// Four fp32 values as four elements in one 8-byte store (dst 8-byte aligned).
template <class Element>
CUTLASS_DEVICE void store_float4(Element* dst, float4 const& v) {
  cutlass::AlignedArray<Element, 4, 8> packed;
  packed[0] = Element(v.x), packed[1] = Element(v.y), packed[2] = Element(v.z), packed[3] = Element(v.w);
  *reinterpret_cast<cutlass::AlignedArray<Element, 4, 8>*>(dst) = packed;
}

template <class Element>
__global__ void __launch_bounds__(kCombineThreads) split_combine_kernel(__grid_constant__ const FwdParams params) {
  constexpr int kWarps = kCombineThreads / 32;
  constexpr int kMaxCols = 256;
  __shared__ float split_weights[kMaxSplits];
  __shared__ float4 partial[kWarps - 1][kMaxCols / 4];
  __shared__ float row_lse;
  int64_t const rows = params.accum_rows;
  int const warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int const head = int(blockIdx.x / rows);
  int64_t const row = int64_t(blockIdx.x) - int64_t(head) * rows;
  int const num_splits = params.num_splits;
  int64_t const split_stride = int64_t(params.num_heads) * rows;  // between splits, in rows

  // Warp 0: the row's lse from the splits' (lane s holds splits s, s + 32, ...), and each split's weight.
  auto compute_weights = [&]() {
    if (warp == 0) {
      float const* lse_in = params.lse_accum_ptr + int64_t(head) * rows + row;
      constexpr int kPerLane = kMaxSplits / 32;
      float split_lse[kPerLane];
      float max_lse = -INFINITY;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kPerLane; ++i) {
        int const s = lane + 32 * i;
        split_lse[i] = s < num_splits ? lse_in[s * split_stride] : -INFINITY;
        max_lse = fmaxf(max_lse, split_lse[i]);
      }
      max_lse = warp_allreduce(max_lse, MaxOp{});
      float sum = 0.f;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kPerLane; ++i) { sum += lse_term(split_lse[i], max_lse); }
      sum = warp_allreduce(sum, SumOp{});
      float const lse = merged_lse(max_lse, sum);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kPerLane; ++i) { split_weights[lane + 32 * i] = merge_weight(split_lse[i], lse); }
      if (lane == 0) { row_lse = lse; }
    }
    __syncthreads();
  };
  // Warp w sums splits w, w + kWarps, ... over four columns per lane (two chunks of four at d > 128), kBatch
  // splits' loads in flight together. Branch-free loads: lanes past head_dim reread its last four columns, and
  // splits past the last reread that one with weight 0 (finite; nothing of theirs is stored). The first batch is
  // loaded before the weights are known, overlapping warp 0's lse loads.
  float const* o_in = params.o_accum_ptr + (int64_t(head) * rows + row) * params.head_dim;
  int64_t const o_split_stride = split_stride * params.head_dim;
  int const col = lane * 4;
  constexpr int kBatch = 8;
  float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
  auto load_batch = [&](int s0, float4 (&o)[kBatch][2], auto num_chunks) {
    constexpr int kChunks = decltype(num_chunks)::value;
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < kBatch; ++j) {
      int const split = min(s0 + j * kWarps, num_splits - 1);
      CUTLASS_PRAGMA_UNROLL
      for (int h = 0; h < kChunks; ++h) {
        int const c = min(col + 128 * h, params.head_dim - 4);
        o[j][h] = *reinterpret_cast<float4 const*>(o_in + split * o_split_stride + c);
      }
    }
  };
  auto add_batch = [&](int s0, float4 const (&o)[kBatch][2], auto num_chunks) {
    constexpr int kChunks = decltype(num_chunks)::value;
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < kBatch; ++j) {
      float const w = s0 + j * kWarps < num_splits ? split_weights[s0 + j * kWarps] : 0.f;
      CUTLASS_PRAGMA_UNROLL
      for (int h = 0; h < kChunks; ++h) {
        acc[h].x += w * o[j][h].x, acc[h].y += w * o[j][h].y;
        acc[h].z += w * o[j][h].z, acc[h].w += w * o[j][h].w;
      }
    }
  };
  auto combine = [&](auto num_chunks) {
    float4 o[kBatch][2];
    load_batch(warp, o, num_chunks);
    compute_weights();
    add_batch(warp, o, num_chunks);
    for (int s0 = warp + kWarps * kBatch; s0 < num_splits; s0 += kWarps * kBatch) {
      load_batch(s0, o, num_chunks);
      add_batch(s0, o, num_chunks);
    }
  };
  if (params.head_dim > 128) {
    combine(std::integral_constant<int, 2>{});
  } else {
    combine(std::integral_constant<int, 1>{});
  }
  if (warp > 0) {
    CUTLASS_PRAGMA_UNROLL
    for (int h = 0; h < 2; ++h) { partial[warp - 1][lane + 32 * h] = acc[h]; }
  }
  __syncthreads();
  if (warp != 0) { return; }

  // Where the row lives in o and softmax_lse: dense rows are batch * seqlen_q + i, varlen rows are the rows of
  // the (total_q, h, d) tensors.
  bool const varlen = params.cu_seqlens_q != nullptr;
  int64_t const batch = varlen ? 0 : row / params.seqlen_q;
  int64_t const q = varlen ? row : row - batch * params.seqlen_q;
  Element* out = static_cast<Element*>(params.o_ptr) + batch * params.o_batch_stride + q * params.o_row_stride +
                 int64_t(head) * params.o_head_stride;
  CUTLASS_PRAGMA_UNROLL
  for (int h = 0; h < 2; ++h) {
    int const c = col + 128 * h;
    if (c >= params.head_dim) { continue; }
    float4 sum = acc[h];
    CUTLASS_PRAGMA_UNROLL
    for (int w = 0; w < kWarps - 1; ++w) {
      float4 const o = partial[w][lane + 32 * h];
      sum.x += o.x, sum.y += o.y, sum.z += o.z, sum.w += o.w;
    }
    store_float4(out + c, sum);
  }
  if (lane == 0) {
    params.softmax_lse_ptr[batch * params.lse_batch_stride + int64_t(head) * params.lse_head_stride + q] = row_lse;
  }
}

}  // namespace flash
