// Compile-time description of one sm90 forward kernel: tile sizes, warp roles, the two wgmma tiled MMAs and the
// swizzled shared-memory layouts that TMA writes and wgmma reads.
#pragma once

#include <type_traits>

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
// The wgmma shapes whose N is not a power-of-two multiple of 32 (64x80x16 for the d 256 key tile). CUTLASS's
// selector takes them only under CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED, which also pulls in the sparse ones and
// doubles a translation unit's compile time; qk_op below picks the one it needs.
#include <cute/arch/mma_sm90_gmma_ext.hpp>
#include <cute/atom/mma_traits_sm90_gmma_ext.hpp>
#include <cutlass/numeric_types.h>

namespace flash::sm90 {

using namespace cute;

// The widest K-major swizzle atom whose row (kCols elements) divides the tile's columns.
template <class Element, int kCols>
constexpr auto k_major_smem_atom() {
  constexpr int kElemsPer128B = 128 / int(sizeof(Element));
  if constexpr (kCols % kElemsPer128B == 0) {
    return GMMA::Layout_K_SW128_Atom<Element>{};
  } else if constexpr (kCols % (kElemsPer128B / 2) == 0) {
    return GMMA::Layout_K_SW64_Atom<Element>{};
  } else {
    return GMMA::Layout_K_SW32_Atom<Element>{};
  }
}

// The wgmma of S = Q·Kᵀ: one 64 x kBlockN x 16 instruction per k step. CUTLASS's ss_op_selector would split a
// kBlockN of 80 into five N = 16 instructions (each rereading Q's slice from shared memory), a third of the tensor
// throughput at d 256.
template <class Element, int kBlockN>
constexpr auto qk_op() {
  using K = GMMA::Major;
  if constexpr (kBlockN == 80 && std::is_same_v<Element, cutlass::bfloat16_t>) {
    return SM90::GMMA::MMA_64x80x16_F32BF16BF16_SS<K::K, K::K>{};
  } else if constexpr (kBlockN == 80) {
    return SM90::GMMA::MMA_64x80x16_F32F16F16_SS<K::K, K::K>{};
  } else {
    static_assert(kBlockN % 64 == 0 || kBlockN == 96, "add the key tile's wgmma shape to qk_op");
    return GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kBlockN>, _16>>();
  }
}

template <int kHeadDim_, int kBlockM_, int kBlockN_, int kStages_, class Element_>
struct FwdTraits {
  using Element = Element_;
  static_assert(std::is_same_v<Element, cutlass::half_t> || std::is_same_v<Element, cutlass::bfloat16_t>);
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static_assert(kBlockM % 64 == 0 && kBlockN % 16 == 0 && kHeadDim % 32 == 0);

  // Warpgroup 0 loads (one thread issues the TMA copies); warpgroups 1.. each own 64 query rows of the tile.
  static constexpr int kMmaWarpgroups = kBlockM / 64;
  static constexpr int kMmaThreads = kMmaWarpgroups * 128;
  static constexpr int kThreads = kMmaThreads + 128;
  // Registers moved from the producer to the consumers (setmaxnreg): 64K per SM over kThreads threads.
  static constexpr int kProducerRegs = kMmaWarpgroups == 2 ? 24 : 32;
  static constexpr int kConsumerRegs = kMmaWarpgroups == 2 ? 240 : 160;

  // S = Q·Kᵀ, both operands K-major in shared memory; O += P·V with P in registers and V read MN-major.
  using AtomLayout = Layout<Shape<Int<kMmaWarpgroups>, _1, _1>>;
  using TiledMmaQK = decltype(make_tiled_mma(qk_op<Element, kBlockN>(), AtomLayout{}));
  using TiledMmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDim>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>(),
      AtomLayout{}));

  using SmemLayoutQ = decltype(tile_to_shape(k_major_smem_atom<Element, kHeadDim>(),
                                             Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutKV = decltype(tile_to_shape(k_major_smem_atom<Element, kHeadDim>(),
                                              Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  // Vᵀ (head dim, keys, stage): the same bytes as V, read with the head dim as wgmma's N (MN-major B).
  using SmemLayoutVt = decltype(composition(
      SmemLayoutKV{}, make_layout(Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{},
                                  Stride<Int<kBlockN>, _1, Int<kBlockN * kHeadDim>>{})));

  // Chunks of a K/V stage, kPageChunk rows each (paged caches in pages that kBlockN does not divide are loaded
  // chunk by chunk). A chunk is whole swizzle atoms (8 rows, one swizzle period each) and the stage stacks its atoms
  // along the rows first, so chunk c of a stage is the chunk layout kKVChunkOffset * c elements further on.
  static constexpr int kPageChunk = 16;
  static_assert(kBlockN % kPageChunk == 0);
  using SmemLayoutKVChunk = decltype(composition(
      take<0, 2>(SmemLayoutKV{}), Layout<Shape<Int<kPageChunk>, Int<kHeadDim>>, Stride<_1, Int<kBlockN>>>{}));
  static constexpr int kKVChunkOffset =
      kPageChunk * int(size<1>(decltype(k_major_smem_atom<Element, kHeadDim>()){}));

  static constexpr int kQBytes = kBlockM * kHeadDim * int(sizeof(Element));
  static constexpr int kKVStageBytes = kBlockN * kHeadDim * int(sizeof(Element));

  // The output tile is staged in shared memory for its TMA stores: in a buffer of its own where the CTA's 227 KB hold
  // one (d <= 128), else in Q's buffer, which is free once the block's S GEMMs are done. Each consumer warpgroup's 64
  // rows are one swizzled (64, head dim) tile of their own, stored by a TMA box of their own (fwd_epilogue.h), so a
  // warpgroup may store its rows without waiting for the others.
  using SmemLayoutOWarpgroup = decltype(tile_to_shape(k_major_smem_atom<Element, kHeadDim>(),
                                                      Shape<_64, Int<kHeadDim>>{}));
  using SmemLayoutO = decltype(tile_to_shape(SmemLayoutOWarpgroup{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  static constexpr int kSmemLimitBytes = 227 * 1024 - 1024;  // less the pipelines' barriers and alignment
  static constexpr bool kOInQ = 2 * kQBytes + 2 * kStages * kKVStageBytes > kSmemLimitBytes;
  // Q buffers a persistent CTA can use in turn (FwdMainloop's kQBuffers): two where they fit beside the output's
  // buffer and the K/V stages (d <= 128), so that the next block's Q loads while this block's S GEMMs still read the
  // current one.
  static constexpr int kQBuffersFit = 3 * kQBytes + 2 * kStages * kKVStageBytes <= kSmemLimitBytes ? 2 : 1;
};

}  // namespace flash::sm90
