// Compile-time description of one sm80-instruction forward kernel: tile sizes, the tiled MMA,
// swizzled shared-memory layouts and the copy atoms that move tiles between memories.
#pragma once

#include <type_traits>

#include "tile_layouts.h"

namespace flash::sm80 {

using namespace cute;

template <int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_, class Element_>
struct FwdTraits {
  using Element = Element_;
  static_assert(std::is_same_v<Element, cutlass::half_t> || std::is_same_v<Element, cutlass::bfloat16_t>);

  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  static constexpr int kNThreads = kNWarps * 32;
  static_assert(kHeadDim % 32 == 0 && kBlockN % 16 == 0 && kBlockM % (16 * kNWarps) == 0);

  // Warps tile M only: each warp owns whole rows of S, so softmax never leaves the warp.
  static constexpr int kWarpsN = 1;  // every warp spans the whole key tile
  using TiledMma = WarpTiledMma<Element, kNWarps, kWarpsN>;

  using SmemLayoutQ = SmemTile<kBlockM, kHeadDim>;
  using SmemLayoutKV = SmemTile<kBlockN, kHeadDim>;
  using SmemLayoutVt = SmemTransposed<SmemLayoutKV, kBlockN, kHeadDim>;  // Vᵀ as (head_dim, kBlockN)
  using SmemLayoutO = SmemLayoutQ;  // O is staged where Q lived

  static constexpr int kSmemQBytes = int(cosize(SmemLayoutQ{})) * int(sizeof(Element));
  static constexpr int kSmemKVBytes = int(cosize(SmemLayoutKV{})) * int(sizeof(Element));
  static constexpr int kSmemBytes = kSmemQBytes + 2 * kSmemKVBytes;

  using SmemCopyAtomQK = Copy_Atom<SmemCopyAtomN, Element>;
  using SmemCopyAtomVt = Copy_Atom<SmemCopyAtomT, Element>;

  using GmemTiledCopyQKV = typename GmemCopies<Element, kNThreads, kHeadDim>::Load;
  using GmemTiledCopyO = typename GmemCopies<Element, kNThreads, kHeadDim>::Store;
};

}  // namespace flash::sm80
