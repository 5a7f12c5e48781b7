// Host-side launch of the sm90 forward kernel for one (dtype, head-dim bucket, windowed) combination. Included
// only by the generated instantiation files of csrc/instantiations/sm90/.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#include "../core/launch_check.h"
#include "../core/params.h"
#include "fwd_kernel.h"
#include "fwd_tile_config.h"
#include "fwd_traits.h"

namespace flash::sm90 {

template <class Kernel>
void launch_fwd(FwdParams const& params, cudaStream_t stream) {
  using Traits = typename Kernel::Traits_;
  int const num_m_blocks = (params.seqlen_q + Traits::kBlockM - 1) / Traits::kBlockM;
  if (num_m_blocks == 0 || params.num_heads == 0 || params.batch == 0) { return; }
  if (params.num_heads > 65535 || params.batch > 65535) {
    throw std::runtime_error("flash_attn forward (sm90): too many heads or batch entries for one launch");
  }
  typename Kernel::Arguments const args{params, Kernel::Mainloop::make_arguments(params)};
  auto const kernel = &fwd_kernel<Kernel>;
  constexpr int kSmemBytes = Kernel::kSmemBytes;
  check_smem_fits(kSmemBytes, "flash_attn forward kernel (sm90)");
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes),
             "cudaFuncSetAttribute (sm90 forward shared memory)");
  dim3 const grid = Kernel::Scheduler::grid(num_m_blocks, params.num_heads, params.batch);
  kernel<<<grid, Traits::kThreads, kSmemBytes, stream>>>(args);
  check_cuda(cudaGetLastError(), "flash_attn forward kernel (sm90)");
}

template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream) {
  constexpr FwdTile kTile = fwd_tile(kHeadDim);
  using Traits = FwdTraits<kHeadDim, kTile.block_m, kTile.block_n, kTile.stages, Element>;
  // FLASH_ATTN_SM90_FWD_OVERLAP=1 (development switch, read per call): the overlapped consumers, until they are
  // validated on a GPU and replace the plain ones.
  char const* overlap_env = std::getenv("FLASH_ATTN_SM90_FWD_OVERLAP");
  if (overlap_env != nullptr && overlap_env[0] == '1') {
    launch_fwd<FwdKernel<Traits, kHasWindow, /*kOverlap=*/true>>(params, stream);
  } else {
    launch_fwd<FwdKernel<Traits, kHasWindow, /*kOverlap=*/false>>(params, stream);
  }
}

}  // namespace flash::sm90
