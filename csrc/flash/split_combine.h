// Merging the split-KV forward's partial results (params.h: o_accum, lse_accum) into o and softmax_lse.
// Split s of a row holds O_s normalised over its keys and lse_s; the row's lse = log sum_s exp(lse_s) and
// O = sum_s exp(lse_s - lse) O_s. Splits without keys (lse -inf) get no weight; a row with none at all ends with
// output 0 and lse +inf, as in the main kernel. One warp per (head, row), four columns per lane at a time.
// Every split writes all its rows (a split without keys: output 0, lse -inf), so no partial is uninitialised.
#pragma once

#include <cmath>

#include <cutlass/array.h>
#include <cutlass/cutlass.h>

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
  __shared__ float split_weights[kWarps][kMaxSplits];
  int64_t const rows = params.accum_rows;
  int const warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t const task = int64_t(blockIdx.x) * kWarps + warp;
  if (task >= rows * params.num_heads) { return; }
  int const head = int(task / rows);
  int64_t const row = task - int64_t(head) * rows;
  int const num_splits = params.num_splits;
  int64_t const split_stride = int64_t(params.num_heads) * rows;  // between splits, in rows
  float const* lse_in = params.lse_accum_ptr + int64_t(head) * rows + row;

  // Each lane holds the lse of splits lane, lane + 32, ...; then every split's weight goes to shared memory, so
  // that the output loop issues its loads without waiting on each other.
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
  bool const empty = max_lse == -INFINITY;
  float sum = 0.f;
  CUTLASS_PRAGMA_UNROLL
  for (int i = 0; i < kPerLane; ++i) { sum += empty ? 0.f : expf(split_lse[i] - max_lse); }
  sum = warp_allreduce(sum, SumOp{});
  float const lse = empty ? INFINITY : max_lse + logf(sum);
  CUTLASS_PRAGMA_UNROLL
  for (int i = 0; i < kPerLane; ++i) {
    // A split without keys (lse -inf, output 0) gets weight 0.
    split_weights[warp][lane + 32 * i] = empty ? 0.f : expf(split_lse[i] - lse);
  }
  __syncwarp();

  // Where the row lives in o and softmax_lse: dense rows are batch * seqlen_q + i, varlen rows are the rows of
  // the (total_q, h, d) tensors.
  bool const varlen = params.cu_seqlens_q != nullptr;
  int64_t const batch = varlen ? 0 : row / params.seqlen_q;
  int64_t const q = varlen ? row : row - batch * params.seqlen_q;
  Element* out = static_cast<Element*>(params.o_ptr) + batch * params.o_batch_stride + q * params.o_row_stride +
                 int64_t(head) * params.o_head_stride;
  float const* o_in = params.o_accum_ptr + (int64_t(head) * rows + row) * params.head_dim;
  int64_t const o_split_stride = split_stride * params.head_dim;
  for (int col = lane * 4; col < params.head_dim; col += 32 * 4) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    constexpr int kBatch = 8;  // splits whose loads are in flight together
    for (int s0 = 0; s0 < num_splits; s0 += kBatch) {
      float4 o[kBatch];
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < kBatch; ++j) {  // past the last split: reread it (finite) with weight 0, no branch
        int const split = min(s0 + j, num_splits - 1);
        o[j] = *reinterpret_cast<float4 const*>(o_in + split * o_split_stride + col);
      }
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < kBatch; ++j) {
        float const w = s0 + j < num_splits ? split_weights[warp][s0 + j] : 0.f;
        acc.x += w * o[j].x, acc.y += w * o[j].y, acc.z += w * o[j].z, acc.w += w * o[j].w;
      }
    }
    store_float4(out + col, acc);
  }
  if (lane == 0) {
    params.softmax_lse_ptr[batch * params.lse_batch_stride + int64_t(head) * params.lse_head_stride + q] = lse;
  }
}

}  // namespace flash
