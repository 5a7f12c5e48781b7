// Warp-level GEMMs of one tile on mma.sync, with operands streamed from shared memory by ldmatrix
// one k-slice ahead of the MMAs that consume them.
#pragma once

#include <cute/tensor.hpp>

namespace flash::sm80 {

using namespace cute;

// acc += A · Bᵀ with both operands in shared memory.
template <class Acc, class FragA, class FragB, class SmemA, class SmemB, class TiledMma,
          class CopyA, class CopyB, class ThrCopyA, class ThrCopyB>
CUTE_DEVICE void gemm_smem_smem(Acc& acc, FragA& frag_a, FragB& frag_b, SmemA const& smem_a,
                                SmemB const& smem_b, TiledMma const& tiled_mma, CopyA const& copy_a,
                                CopyB const& copy_b, ThrCopyA const& thr_copy_a, ThrCopyB const& thr_copy_b) {
  Tensor frag_a_view = thr_copy_a.retile_D(frag_a);
  Tensor frag_b_view = thr_copy_b.retile_D(frag_b);
  constexpr int kSlices = decltype(size<2>(frag_a))::value;
  copy(copy_a, smem_a(_, _, 0), frag_a_view(_, _, 0));
  copy(copy_b, smem_b(_, _, 0), frag_b_view(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < kSlices; ++k) {
    if (k + 1 < kSlices) {
      copy(copy_a, smem_a(_, _, k + 1), frag_a_view(_, _, k + 1));
      copy(copy_b, smem_b(_, _, k + 1), frag_b_view(_, _, k + 1));
    }
    gemm(tiled_mma, frag_a(_, _, k), frag_b(_, _, k), acc);
  }
}

// acc += A · Bᵀ with A already in registers (the probabilities P) and B in shared memory.
template <class Acc, class FragA, class FragB, class SmemB, class TiledMma, class CopyB, class ThrCopyB>
CUTE_DEVICE void gemm_reg_smem(Acc& acc, FragA const& frag_a, FragB& frag_b, SmemB const& smem_b,
                               TiledMma const& tiled_mma, CopyB const& copy_b, ThrCopyB const& thr_copy_b) {
  Tensor frag_b_view = thr_copy_b.retile_D(frag_b);
  constexpr int kSlices = decltype(size<2>(frag_a))::value;
  copy(copy_b, smem_b(_, _, 0), frag_b_view(_, _, 0));
  CUTE_UNROLL
  for (int k = 0; k < kSlices; ++k) {
    if (k + 1 < kSlices) { copy(copy_b, smem_b(_, _, k + 1), frag_b_view(_, _, k + 1)); }
    gemm(tiled_mma, frag_a(_, _, k), frag_b(_, _, k), acc);
  }
}

}  // namespace flash::sm80
