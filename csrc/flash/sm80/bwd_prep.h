// The two light kernels around the backward mainloop, one warp per query row:
//   before: D = rowsum(dO ∘ O) in fp32 (the softmax-gradient correction term), and a zeroed fp32 dQ accumulator;
//   after:  dQ = softmax_scale · accumulator, converted to the element dtype into the caller's (strided) dq.
// Both are memory-bound and touch each row once; plain 16-byte vector loads, no shared memory.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_conversion.h>

#include "../params.h"
#include "../seqlen.h"

namespace flash::sm80 {

constexpr int kBwdRowKernelWarps = 8;  // rows per CTA

struct BwdRow {
  int row, head, batch;
  bool valid;
  SeqlenInfo seq;

  // grid = (ceil(seqlen_q / warps) * batch, heads), block = warps * 32.
  template <class Params>
  CUTLASS_DEVICE explicit BwdRow(Params const& params)
      : BwdRow(params, int(blockIdx.x) / ((params.seqlen_q + kBwdRowKernelWarps - 1) / kBwdRowKernelWarps)) {}

  template <class Params>
  CUTLASS_DEVICE BwdRow(Params const& params, int batch_)
      : batch(batch_), seq(params, batch_) {
    int const row_blocks = (params.seqlen_q + kBwdRowKernelWarps - 1) / kBwdRowKernelWarps;
    row = (int(blockIdx.x) - batch * row_blocks) * kBwdRowKernelWarps + int(threadIdx.x) / 32;
    head = blockIdx.y;
    valid = row < seq.seqlen_q;
  }

  template <class T>
  CUTLASS_DEVICE T* at(T* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride) const {
    return base + seq.q_offset(batch_stride, row_stride, batch) + head * head_stride + int64_t(row) * row_stride;
  }
};

template <class Element, int kHeadDim>
__global__ void __launch_bounds__(kBwdRowKernelWarps * 32) bwd_prep_kernel(__grid_constant__ const BwdParams params) {
  BwdRow const r(params);
  if (!r.valid) { return; }
  int const lane = threadIdx.x % 32;
  constexpr int kVec = 8;  // 16 bytes of Element
  Element const* o = r.at(static_cast<Element const*>(params.o_ptr), params.o_batch_stride, params.o_row_stride,
                          params.o_head_stride);
  Element const* dout = r.at(static_cast<Element const*>(params.do_ptr), params.do_batch_stride,
                             params.do_row_stride, params.do_head_stride);
  float sum = 0.f;
  for (int c = lane * kVec; c < params.head_dim; c += 32 * kVec) {
    auto const o_vec = *reinterpret_cast<cutlass::AlignedArray<Element, kVec> const*>(o + c);
    auto const do_vec = *reinterpret_cast<cutlass::AlignedArray<Element, kVec> const*>(dout + c);
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < kVec; ++i) { sum += float(o_vec[i]) * float(do_vec[i]); }
  }
  CUTLASS_PRAGMA_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) { sum += __shfl_xor_sync(0xffffffffu, sum, offset); }
  if (lane == 0) {
    *r.at(params.dsum_ptr, params.dsum_batch_stride, 1, params.dsum_head_stride) = sum;
  }
  float* accum = r.at(params.dq_accum_ptr, params.dq_accum_batch_stride, params.dq_accum_row_stride,
                      params.dq_accum_head_stride);
  for (int c = lane * 4; c < kHeadDim; c += 32 * 4) {
    *reinterpret_cast<float4*>(accum + c) = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

template <class Element, int kHeadDim>
__global__ void __launch_bounds__(kBwdRowKernelWarps * 32) bwd_convert_dq_kernel(__grid_constant__ const BwdParams params) {
  BwdRow const r(params);
  if (!r.valid) { return; }
  int const lane = threadIdx.x % 32;
  constexpr int kVec = 8;
  float const* accum = r.at(static_cast<float const*>(params.dq_accum_ptr), params.dq_accum_batch_stride,
                            params.dq_accum_row_stride, params.dq_accum_head_stride);
  Element* dq = r.at(static_cast<Element*>(params.dq_ptr), params.dq_batch_stride, params.dq_row_stride,
                     params.dq_head_stride);
  cutlass::NumericArrayConverter<Element, float, kVec> convert;
  for (int c = lane * kVec; c < params.head_dim; c += 32 * kVec) {
    cutlass::Array<float, kVec> acc = *reinterpret_cast<cutlass::AlignedArray<float, kVec> const*>(accum + c);
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < kVec; ++i) { acc[i] *= params.softmax_scale; }
    cutlass::AlignedArray<Element, kVec> out;
    static_cast<cutlass::Array<Element, kVec>&>(out) = convert(acc);
    *reinterpret_cast<cutlass::AlignedArray<Element, kVec>*>(dq + c) = out;
  }
}

}  // namespace flash::sm80
