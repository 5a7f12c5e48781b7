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

// One MMA with its shared-memory operand paths: the ldmatrix copies laid out for the MMA's A and B operands,
// sliced for one thread. partition_a / partition_b give a shared-memory tile's source view for those copies;
// smem_smem / reg_smem run the two GEMMs above with them.
template <class TiledMma_, class CopyAtomA, class CopyAtomB>
struct SmemMma {
  using TiledMma = TiledMma_;
  using CopyA = decltype(make_tiled_copy_A(CopyAtomA{}, TiledMma{}));
  using CopyB = decltype(make_tiled_copy_B(CopyAtomB{}, TiledMma{}));

  TiledMma mma;
  decltype(CopyA{}.get_thread_slice(0)) thr_copy_a;
  decltype(CopyB{}.get_thread_slice(0)) thr_copy_b;

  CUTE_DEVICE explicit SmemMma(int tidx)
      : thr_copy_a(CopyA{}.get_thread_slice(tidx)), thr_copy_b(CopyB{}.get_thread_slice(tidx)) {}

  template <class Smem>
  CUTE_DEVICE auto partition_a(Smem&& smem) const { return thr_copy_a.partition_S(static_cast<Smem&&>(smem)); }
  template <class Smem>
  CUTE_DEVICE auto partition_b(Smem&& smem) const { return thr_copy_b.partition_S(static_cast<Smem&&>(smem)); }

  template <class Acc, class FragA, class FragB, class SrcA, class SrcB>
  CUTE_DEVICE void smem_smem(Acc& acc, FragA& frag_a, FragB& frag_b, SrcA const& src_a, SrcB const& src_b) const {
    gemm_smem_smem(acc, frag_a, frag_b, src_a, src_b, mma, CopyA{}, CopyB{}, thr_copy_a, thr_copy_b);
  }
  template <class Acc, class FragA, class FragB, class SrcB>
  CUTE_DEVICE void reg_smem(Acc& acc, FragA const& frag_a, FragB& frag_b, SrcB const& src_b) const {
    gemm_reg_smem(acc, frag_a, frag_b, src_b, mma, CopyB{}, thr_copy_b);
  }
};

}  // namespace flash::sm80
