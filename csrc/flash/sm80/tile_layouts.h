// Building blocks shared by the sm80-instruction forward and backward traits: the MMA atom per
// dtype, swizzled shared-memory tile layouts (and their transposed views), and the 16-byte
// global-memory tiled copies.
#pragma once

#include <type_traits>

#include <cute/tensor.hpp>
#include <cute/atom/mma_atom.hpp>
#include <cute/atom/copy_atom.hpp>
#include <cutlass/numeric_types.h>

namespace flash::sm80 {

using namespace cute;

template <class Element>
using MmaAtomFor = std::conditional_t<std::is_same_v<Element, cutlass::half_t>,
                                      MMA_Atom<SM80_16x8x16_F32F16F16F32_TN>,
                                      MMA_Atom<SM80_16x8x16_F32BF16BF16F32_TN>>;

// A TiledMMA of m16n8k16 atoms with kWarpsM x kWarpsN warps; each warp covers 16 x 16 per step, so
// one ldmatrix.x4 feeds two n8 MMAs.
template <class Element, int kWarpsM, int kWarpsN>
using WarpTiledMma = TiledMMA<MmaAtomFor<Element>, Layout<Shape<Int<kWarpsM>, Int<kWarpsN>, _1>>,
                              Tile<Int<16 * kWarpsM>, Int<16 * kWarpsN>, _16>>;

// Shared-memory tiles are built from rows of 64 (or 32) elements, XOR-swizzled in 16-byte chunks so
// that 16-byte cp.async stores and ldmatrix loads (plain or transposed) are free of bank conflicts.
template <int kCols>
struct SmemSwizzle {
  static constexpr int kRowElems = kCols % 64 == 0 ? 64 : 32;
  static constexpr int kBits = kRowElems == 64 ? 3 : 2;
  using Atom = decltype(composition(Swizzle<kBits, 3, 3>{},
                                    Layout<Shape<_8, Int<kRowElems>>, Stride<Int<kRowElems>, _1>>{}));
};

// (kRows, kCols[, kStages]) tile, row-major within the swizzle atom.
template <int kRows, int kCols>
using SmemTile = decltype(tile_to_shape(typename SmemSwizzle<kCols>::Atom{}, Shape<Int<kRows>, Int<kCols>>{}));
template <int kRows, int kCols, int kStages>
using SmemTileStaged =
    decltype(tile_to_shape(typename SmemSwizzle<kCols>::Atom{}, Shape<Int<kRows>, Int<kCols>, Int<kStages>>{}));

// The (kCols, kRows[, kStages]) transpose of such a tile: the same bytes, read with transposing ldmatrix.
template <class Tile, int kRows, int kCols>
using SmemTransposed = decltype(composition(Tile{}, make_layout(Shape<Int<kCols>, Int<kRows>>{}, GenRowMajor{})));
template <class Tile, int kRows, int kCols, int kStages>
using SmemTransposedStaged = decltype(composition(
    Tile{}, Layout<Shape<Int<kCols>, Int<kRows>, Int<kStages>>, Stride<Int<kRows>, _1, Int<kRows * kCols>>>{}));

// Global <-> shared copies of tiles with kCols columns: 16-byte vectors, consecutive threads along a row.
template <class Element, int kNThreads, int kCols>
struct GmemCopies {
  static constexpr int kVecElems = 16 / int(sizeof(Element));
  static constexpr int kThreadsPerRow = SmemSwizzle<kCols>::kRowElems / kVecElems;
  static_assert(kNThreads % kThreadsPerRow == 0);
  using ThreadLayout = Layout<Shape<Int<kNThreads / kThreadsPerRow>, Int<kThreadsPerRow>>,
                              Stride<Int<kThreadsPerRow>, _1>>;
  using VecLayout = Layout<Shape<_1, Int<kVecElems>>>;
  using Load = decltype(make_tiled_copy(Copy_Atom<SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>, Element>{},
                                        ThreadLayout{}, VecLayout{}));
  using Store = decltype(make_tiled_copy(Copy_Atom<UniversalCopy<cute::uint128_t>, Element>{}, ThreadLayout{},
                                         VecLayout{}));
};

using SmemCopyAtomN = SM75_U32x4_LDSM_N;   // ldmatrix: operand rows contiguous along K
using SmemCopyAtomT = SM75_U16x8_LDSM_T;   // ldmatrix.trans: operand stored transposed
template <class Element>
using SmemCopyAtomAcc = Copy_Atom<UniversalCopy<uint32_t>, Element>;  // accumulator pairs -> shared memory

}  // namespace flash::sm80
