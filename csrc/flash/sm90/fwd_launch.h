// Host-side launch of the sm90 forward kernel for one (dtype, head-dim bucket, windowed) combination. Included
// only by the generated instantiation files of csrc/instantiations/sm90/.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../core/env_switch.h"
#include "../core/launch_check.h"
#include "../core/params.h"
#include "fwd_kernel.h"
#include "fwd_tile_config.h"
#include "fwd_traits.h"

namespace flash::sm90 {

// An attribute of the current device (e.g. its multiprocessors), read from the driver once per device.
template <cudaDeviceAttr kAttribute>
int device_attribute() {
  constexpr int kMaxDevices = 64;
  static int values[kMaxDevices] = {};
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  int value = device < kMaxDevices ? values[device] : 0;
  if (value == 0) {
    check_cuda(cudaDeviceGetAttribute(&value, kAttribute, device), "cudaDeviceGetAttribute");
    if (device < kMaxDevices) { values[device] = value; }
  }
  return value;
}

template <class Kernel>
void launch_fwd(FwdParams const& params, cudaStream_t stream) {
  using Traits = typename Kernel::Traits_;
  // FLASH_ATTN_SM90_FWD_COMPACT_VARLEN=1: varlen calls of up to 32 sequences on a grid of their real query blocks
  // (SingleTileScheduler). Off by default until measured on a GPU.
  TileCounts const counts =
      Kernel::make_tile_counts(params, env_switch("FLASH_ATTN_SM90_FWD_COMPACT_VARLEN", false));
  if (counts.num_m_blocks == 0 || params.num_heads == 0 || params.batch == 0) { return; }
  if (params.num_heads > 65535 || params.batch > 65535) {
    throw std::runtime_error("flash_attn forward (sm90): too many heads or batch entries for one launch");
  }
  // FLASH_ATTN_SM90_FWD_TMA_STORE=0: the epilogue's direct stores instead of its TMA store, for tests and benchmarks.
  bool const tma_store = env_switch("FLASH_ATTN_SM90_FWD_TMA_STORE", true);
  // FLASH_ATTN_SM90_FWD_LAZY_RESCALE=1: row maxima move only past a threshold (FwdMainloop::kLazyRescaleLog2), so
  // most key blocks of a long row skip the rescale of O. Off by default until measured.
  bool const lazy_rescale = env_switch("FLASH_ATTN_SM90_FWD_LAZY_RESCALE", false);
  // FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER=0: persistent CTAs use one of their two Q buffers (the next block's Q loads
  // only after the last block's S GEMMs), to measure what the second one gains.
  bool const one_q_buffer = !env_switch("FLASH_ATTN_SM90_FWD_Q_DOUBLE_BUFFER", true);
  // FLASH_ATTN_SM90_FWD_CROSS_TILE=0: the consumer warpgroups of persistent CTAs meet at every block's end (one
  // store of the whole block; overlapped turns start afresh), to measure what FwdKernel::kCrossTile gains.
  bool const cross_tile = env_switch("FLASH_ATTN_SM90_FWD_CROSS_TILE", true);
  // FLASH_ATTN_SM90_FWD_EXP_TURNS: whether the plain consumers' warpgroups exponentiate in turns
  // (FwdMainloop::kExpTurns). By default in persistent CTAs only: d 128 gained 6-14% there at 512-1k keys (H100,
  // graph-timed); one tile per CTA (varlen at 1k) read 4-11% lower, in a run's first cell, which reads low
  // (benchmarks/NOTES.md, eighth session): to be measured again.
  bool const exp_turns = env_switch("FLASH_ATTN_SM90_FWD_EXP_TURNS", Kernel::kPersistent_);
  typename Kernel::Arguments const args{params,
                                        Kernel::Mainloop::make_arguments(params, lazy_rescale, one_q_buffer, exp_turns),
                                        Kernel::Epilogue::make_arguments(params, tma_store), counts,
                                        Kernel::Scheduler::make_arguments(counts), cross_tile};
  auto const kernel = &fwd_kernel<Kernel>;
  constexpr int kSmemBytes = Kernel::kSmemBytes;
  check_smem_fits(kSmemBytes, "flash_attn forward kernel (sm90)");
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes),
             "cudaFuncSetAttribute (sm90 forward shared memory)");
  dim3 const grid = Kernel::Scheduler::grid(counts, device_attribute<cudaDevAttrMultiProcessorCount>());
  kernel<<<grid, Traits::kThreads, kSmemBytes, stream>>>(args);
  check_cuda(cudaGetLastError(), "flash_attn forward kernel (sm90)");
}

// The kernel of Traits with the chosen consumers and scheduler. kMayOverlap: whether the overlapped consumers are
// instantiated for Traits (their PingPong pairs two consumer warpgroups).
template <class Traits, bool kHasWindow, bool kMayOverlap>
void launch_variant(FwdParams const& params, cudaStream_t stream, bool overlap, bool persistent) {
  if constexpr (kMayOverlap) {
    if (overlap) {
      if (persistent) {
        launch_fwd<FwdKernel<Traits, kHasWindow, true, true>>(params, stream);
      } else {
        launch_fwd<FwdKernel<Traits, kHasWindow, true, false>>(params, stream);
      }
      return;
    }
  }
  if (persistent) {
    launch_fwd<FwdKernel<Traits, kHasWindow, false, true>>(params, stream);
  } else {
    launch_fwd<FwdKernel<Traits, kHasWindow, false, false>>(params, stream);
  }
}

template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream) {
  constexpr FwdTile kTile = fwd_tile(kHeadDim);
  using Traits = FwdTraits<kHeadDim, kTile.block_m, kTile.block_n, kTile.stages, Element>;
  // Variant switches (core/env_switch.h; unset: the table's choice, default_variant), for tests and benchmarks:
  // FLASH_ATTN_SM90_FWD_OVERLAP, the overlapped consumers; FLASH_ATTN_SM90_FWD_PERSISTENT, persistent CTAs;
  // FLASH_ATTN_SM90_FWD_TALL, the bucket's taller query tile (plain consumers) where the table has one.
  FwdVariant const table = default_variant(kTile, params.has_window, params.seqlen_k,
                                               params.cu_seqlens_q != nullptr || params.cu_seqlens_k != nullptr);
  bool const overlap = env_switch("FLASH_ATTN_SM90_FWD_OVERLAP", table.overlap);
  bool const persistent = env_switch("FLASH_ATTN_SM90_FWD_PERSISTENT", table.persistent);
  // GQA calls in packed tiles (tile_rows.h; plain consumers, one tile per CTA) where the table's rule says it pays;
  // FLASH_ATTN_SM90_FWD_PACK_GQA=1 / 0 forces them on / off (for GQA calls).
  if (params.head_ratio > 1 &&
      env_switch("FLASH_ATTN_SM90_FWD_PACK_GQA",
                 kPackGqaByDefault && pack_gqa_pays(params.seqlen_q, params.head_ratio, kTile.block_m))) {
    launch_fwd<FwdKernel<Traits, kHasWindow, /*kOverlap=*/false, /*kPersistent=*/false, /*kPacked=*/true>>(params,
                                                                                                          stream);
    return;
  }
  if constexpr (kTile.tall_block_m > 0) {
    if (env_switch("FLASH_ATTN_SM90_FWD_TALL", table.tall)) {
      using TallTraits = FwdTraits<kHeadDim, kTile.tall_block_m, kTile.block_n, kTile.stages, Element>;
      launch_variant<TallTraits, kHasWindow, /*kMayOverlap=*/false>(params, stream, false, persistent);
      return;
    }
  }
  launch_variant<Traits, kHasWindow, /*kMayOverlap=*/true>(params, stream, overlap, persistent);
}

}  // namespace flash::sm90
