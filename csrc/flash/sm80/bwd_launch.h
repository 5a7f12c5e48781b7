// Host-side launch of the sm80-instruction backward for one (dtype, head-dim bucket, windowed) combination:
// prep (D, zeroed dQ accumulator) -> mainloop (dK, dV, dQ accumulation) -> dQ conversion, on one stream.
// Included only by the generated instantiation files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../core/launch_check.h"
#include "../core/params.h"
#include "bwd_kernel.h"
#include "kernel_variants.h"
#include "bwd_prep.h"
#include "bwd_tile_config.h"
#include "bwd_traits.h"

namespace flash::sm80 {

template <class Element, int kHeadDim, bool kHasWindow>
void run_bwd(BwdParams const& params, cudaStream_t stream) {
  using Config = BwdTileConfig<kHeadDim>;
  using Traits = BwdTraits<kHeadDim, Config::kBlockM, Config::kBlockN, Config::kNWarps, Config::kWarpsM_SdP,
                           Config::kWarpsN_dKV, Config::kWarpsM_dQ, Config::kStages, Element>;
  if (params.batch == 0 || params.num_heads == 0 || params.seqlen_q == 0) { return; }
  int64_t const query_ctas = int64_t(params.seqlen_q + Traits::kBlockM - 1) / Traits::kBlockM * params.batch;
  int64_t const key_ctas = int64_t(params.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN * params.batch;
  if (query_ctas > int64_t(0x7fffffff) || key_ctas > int64_t(0x7fffffff) || params.num_heads > 65535) {
    throw std::runtime_error("flash_attn backward: too many blocks x batch or heads for one launch");
  }
  bool const even_cols = params.head_dim == kHeadDim;  // full-width head dims skip the column predicates
  dim3 const query_grid(static_cast<unsigned>(query_ctas), params.num_heads);
  launch_with_smem<0>(&bwd_prep_kernel<Traits>, query_grid, Traits::kNThreads, params, stream,
                      "flash_attn backward prep kernel");
  if (key_ctas > 0) {
    int64_t const num_n_blocks = (params.seqlen_k + Traits::kBlockN - 1) / Traits::kBlockN;
    dim3 const grid = SequenceBlockScheduler</*kLongestFirst=*/false>::grid(num_n_blocks, params.batch, params.num_heads_k);
    auto const kernel = needs_score_extras(params)
                            ? (even_cols ? &bwd_kernel<Traits, kHasWindow, true, true>
                                         : &bwd_kernel<Traits, kHasWindow, false, true>)
                            : (even_cols ? &bwd_kernel<Traits, kHasWindow, true, false>
                                         : &bwd_kernel<Traits, kHasWindow, false, false>);
    launch_with_smem<Traits::kSmemBytes>(kernel, grid, Traits::kNThreads, params, stream, "flash_attn backward kernel");
  }
  auto const convert = even_cols ? &bwd_convert_dq_kernel<Traits, true> : &bwd_convert_dq_kernel<Traits, false>;
  launch_with_smem<Traits::kSmemdQBytes>(convert, query_grid, Traits::kNThreads, params, stream,
                                         "flash_attn backward dQ conversion kernel");
}

}  // namespace flash::sm80
