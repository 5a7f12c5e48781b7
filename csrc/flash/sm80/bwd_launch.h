// Host-side launch of the sm80-instruction backward for one (dtype, head-dim bucket, causal) combination:
// prep (D, zeroed dQ accumulator) -> mainloop (dK, dV, dQ accumulation) -> dQ conversion, on one stream.
// Included only by the generated instantiation files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../launch_check.h"
#include "../params.h"
#include "bwd_kernel.h"
#include "bwd_prep.h"
#include "bwd_tile_config.h"
#include "bwd_traits.h"

namespace flash::sm80 {

template <class Element, int kHeadDim, bool kIsCausal>
void run_bwd(BwdParams const& params, cudaStream_t stream) {
  using Config = BwdTileConfig<kHeadDim>;
  using Traits = BwdTraits<kHeadDim, Config::kBlockM, Config::kBlockN, Config::kNWarps, Config::kWarpsM_SdP,
                           Config::kWarpsN_dKV, Config::kWarpsM_dQ, Config::kStages, Element>;
  if (params.batch == 0 || params.num_heads == 0 || params.seqlen_q == 0) { return; }
  int64_t const row_ctas = int64_t(params.seqlen_q + kBwdRowKernelWarps - 1) / kBwdRowKernelWarps * params.batch;
  int64_t const key_ctas = int64_t(params.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN * params.batch;
  if (row_ctas > int64_t(0x7fffffff) || key_ctas > int64_t(0x7fffffff) || params.num_heads > 65535) {
    throw std::runtime_error("flash_attn backward: too many rows x batch or heads for one launch");
  }
  dim3 const row_grid(static_cast<unsigned>(row_ctas), params.num_heads);
  bwd_prep_kernel<Element, kHeadDim><<<row_grid, kBwdRowKernelWarps * 32, 0, stream>>>(params);
  check_cuda(cudaGetLastError(), "flash_attn backward prep kernel launch");

  if (key_ctas > 0) {
    dim3 const grid(static_cast<unsigned>(key_ctas), params.num_heads_k);
    auto const kernel = params.head_dim == kHeadDim ? &bwd_kernel<Traits, kIsCausal, true>
                                                    : &bwd_kernel<Traits, kIsCausal, false>;
    launch_with_smem<Traits::kSmemBytes>(kernel, grid, Traits::kNThreads, params, stream,
                                         "flash_attn backward kernel");
  }

  bwd_convert_dq_kernel<Element, kHeadDim><<<row_grid, kBwdRowKernelWarps * 32, 0, stream>>>(params);
  check_cuda(cudaGetLastError(), "flash_attn backward dQ conversion kernel launch");
}

}  // namespace flash::sm80
