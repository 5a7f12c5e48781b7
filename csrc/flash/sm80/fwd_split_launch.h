// Host-side launch of the split-KV forward (and, with several splits, the combine kernel) for one (dtype,
// head-dim bucket). Included only by the generated instantiation files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../core/launch_check.h"
#include "../core/params.h"
#include "../core/split_combine.h"
#include "fwd_split_kernel.h"

namespace flash::sm80 {

template <class Element, int kHeadDim>
void run_fwd_split(FwdParams const& params, cudaStream_t stream) {
  using Traits = FwdSplitTraits<Element, kHeadDim>;
  int64_t const packed_rows = int64_t(params.seqlen_q) * params.head_ratio;
  int64_t const num_m_blocks = (packed_rows + Traits::kBlockM - 1) / Traits::kBlockM;
  if (num_m_blocks == 0 || params.batch == 0) { return; }
  if (num_m_blocks * params.num_splits > int64_t(0x7fffffff) || params.num_heads_k > 65535 || params.batch > 65535) {
    throw std::runtime_error("flash_attn split-KV forward: too many query blocks, KV heads or batch for one launch");
  }
  dim3 const grid = SplitScheduler::grid(num_m_blocks, params.num_splits, params.num_heads_k, params.batch);
  launch_with_smem<Traits::kSmemBytes>(&fwd_split_kernel<Traits>, grid, Traits::kNThreads, params, stream,
                                       "flash_attn split-KV forward kernel");
  if (params.num_splits > 1) {
    int64_t const blocks = params.accum_rows * params.num_heads;  // one per (head, query row)
    if (blocks > int64_t(0x7fffffff)) { throw std::runtime_error("flash_attn split-KV combine: too many rows"); }
    split_combine_kernel<Element><<<static_cast<unsigned>(blocks), kCombineThreads, 0, stream>>>(params);
    check_cuda(cudaGetLastError(), "flash_attn split-KV combine kernel");
  }
}

}  // namespace flash::sm80
