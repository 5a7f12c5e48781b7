// Host-side launch of the sm80-instruction forward kernel for one (dtype, head-dim bucket, windowed)
// combination. Included only by the generated instantiation files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <stdexcept>
#include <string>

#include "../core/launch_check.h"
#include "../core/params.h"
#include "fwd_kernel.h"
#include "kernel_variants.h"
#include "fwd_tile_config.h"
#include "fwd_traits.h"

namespace flash::sm80 {

template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream) {
  using Config = FwdTileConfig<kHeadDim, kHasWindow>;
  using Traits = FwdTraits<kHeadDim, Config::kBlockM, Config::kBlockN, Config::kNWarps, Element>;
  int64_t const num_m_blocks = (params.seqlen_q + Traits::kBlockM - 1) / Traits::kBlockM;
  int64_t const num_ctas = num_m_blocks * params.batch;
  if (num_ctas == 0 || params.num_heads == 0) { return; }
  if (num_ctas > int64_t(0x7fffffff) || params.num_heads > 65535) {
    throw std::runtime_error("flash_attn forward: too many query blocks x batch or heads for one launch");
  }
  dim3 const grid = SequenceBlockScheduler</*kLongestFirst=*/true>::grid(num_m_blocks, params.batch, params.num_heads);
  // Full-width head dims skip the column predicates; softcap/ALiBi/dropout use the kHasExtras instantiation.
  bool const even_cols = params.head_dim == kHeadDim;
  auto const kernel = needs_score_extras(params)
                          ? (even_cols ? &fwd_kernel<Traits, kHasWindow, true, true>
                                       : &fwd_kernel<Traits, kHasWindow, false, true>)
                          : (even_cols ? &fwd_kernel<Traits, kHasWindow, true, false>
                                       : &fwd_kernel<Traits, kHasWindow, false, false>);
  launch_with_smem<Traits::kSmemBytes>(kernel, grid, Traits::kNThreads, params, stream, "flash_attn forward kernel");
}

}  // namespace flash::sm80
