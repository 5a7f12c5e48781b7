// Merging the split-KV forward's partial results (params.h: o_accum, lse_accum) into o and softmax_lse.
// Split s of a row holds O_s normalised over its keys and lse_s; the row's lse = log sum_s exp(lse_s) and
// O = sum_s exp(lse_s - lse) O_s. Splits without keys (lse -inf) get no weight; a row with none at all ends with
// output 0 and lse +inf, as in the main kernel. One warp per (head, row), four columns per lane at a time.
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
  int64_t const rows = params.accum_rows;
  int64_t const task = int64_t(blockIdx.x) * (kCombineThreads / 32) + threadIdx.x / 32;
  if (task >= rows * params.num_heads) { return; }
  int const lane = threadIdx.x % 32;
  int const head = int(task / rows);
  int64_t const row = task - int64_t(head) * rows;
  int64_t const split_stride = int64_t(params.num_heads) * rows;  // between splits, in rows
  float const* lse_in = params.lse_accum_ptr + int64_t(head) * rows + row;

  float max_lse = -INFINITY;
  for (int s = lane; s < params.num_splits; s += 32) { max_lse = fmaxf(max_lse, lse_in[s * split_stride]); }
  max_lse = warp_allreduce(max_lse, MaxOp{});
  float sum = 0.f;
  if (max_lse != -INFINITY) {
    for (int s = lane; s < params.num_splits; s += 32) { sum += expf(lse_in[s * split_stride] - max_lse); }
  }
  sum = warp_allreduce(sum, SumOp{});
  bool const empty = max_lse == -INFINITY;
  float const lse = empty ? INFINITY : max_lse + logf(sum);

  // Where the row lives in o and softmax_lse: dense rows are batch * seqlen_q + i, varlen rows are the rows of
  // the (total_q, h, d) tensors.
  bool const varlen = params.cu_seqlens_q != nullptr;
  int64_t const batch = varlen ? 0 : row / params.seqlen_q;
  int64_t const q = varlen ? row : row - batch * params.seqlen_q;
  Element* out = static_cast<Element*>(params.o_ptr) + batch * params.o_batch_stride + q * params.o_row_stride +
                 int64_t(head) * params.o_head_stride;
  float const* o_in = params.o_accum_ptr + (int64_t(head) * rows + row) * params.head_dim;
  for (int col = lane * 4; col < params.head_dim; col += 32 * 4) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (!empty) {
      for (int s = 0; s < params.num_splits; ++s) {
        float const split_lse = lse_in[s * split_stride];
        if (split_lse == -INFINITY) { continue; }
        float const w = expf(split_lse - lse);
        float4 const o = *reinterpret_cast<float4 const*>(o_in + s * split_stride * params.head_dim + col);
        acc.x += w * o.x, acc.y += w * o.y, acc.z += w * o.z, acc.w += w * o.w;
      }
    }
    store_float4(out + col, acc);
  }
  if (lane == 0) {
    params.softmax_lse_ptr[batch * params.lse_batch_stride + int64_t(head) * params.lse_head_stride + q] = lse;
  }
}

}  // namespace flash
