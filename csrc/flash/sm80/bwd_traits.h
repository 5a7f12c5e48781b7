// Compile-time description of one sm80-instruction backward kernel: tile sizes, the three tiled MMAs
// (S/dP, dK/dV, dQ), the shared-memory tiles with their transposed views, and the copy atoms.
#pragma once

#include <type_traits>

#include "tile_layouts.h"

namespace flash::sm80 {

using namespace cute;

template <int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_, int kWarpsM_SdP, int kWarpsN_dKV, int kWarpsM_dQ,
          int kStages_, class Element_>
struct BwdTraits {
  using Element = Element_;
  static_assert(std::is_same_v<Element, cutlass::half_t> || std::is_same_v<Element, cutlass::bfloat16_t>);

  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  static_assert(kBlockM <= 128);
  static constexpr int kNThreads = kNWarps * 32;
  static constexpr int kStages = kStages_;
  static_assert(kStages == 1 || kStages == 2);

  // S = Q·Kᵀ and dP = dO·Vᵀ: (kBlockM, kBlockN), reduced over the head dim.
  static constexpr int kWarpsN_SdP = kNWarps / kWarpsM_SdP;
  using TiledMmaSdP = WarpTiledMma<Element, kWarpsM_SdP, kWarpsN_SdP>;
  // dV += Pᵀ·dO and dK += dSᵀ·Q: (kBlockN, head dim), reduced over the query rows.
  using TiledMmadKV = WarpTiledMma<Element, kWarpsN_dKV, kNWarps / kWarpsN_dKV>;
  // dQ = dS·K: (kBlockM, head dim), reduced over the key rows.
  using TiledMmadQ = WarpTiledMma<Element, kWarpsM_dQ, kNWarps / kWarpsM_dQ>;
  static_assert(kBlockM % (16 * kWarpsM_SdP) == 0 && kBlockN % (16 * kNWarps / kWarpsM_SdP) == 0);
  static_assert(kBlockN % (16 * kWarpsN_dKV) == 0 && kHeadDim % (16 * kNWarps / kWarpsN_dKV) == 0);
  static_assert(kBlockM % (16 * kWarpsM_dQ) == 0 && kHeadDim % (16 * kNWarps / kWarpsM_dQ) == 0);

  // K and V stay resident for the whole CTA; Q and dO stream through kStages buffers; P and dS are
  // staged in shared memory because the dK/dV/dQ MMAs consume them in other layouts than S/dP produce.
  using SmemLayoutKV = SmemTile<kBlockN, kHeadDim>;
  using SmemLayoutKt = SmemTransposed<SmemLayoutKV, kBlockN, kHeadDim>;           // (d, N)
  using SmemLayoutQdO = SmemTileStaged<kBlockM, kHeadDim, kStages>;               // (M, d, stages)
  using SmemLayoutQdOt = SmemTransposedStaged<SmemLayoutQdO, kBlockM, kHeadDim, kStages>;  // (d, M, stages)
  using SmemLayoutPdS = SmemTile<kBlockM, kBlockN>;                               // (M, N)
  using SmemLayoutPdSt = SmemTransposed<SmemLayoutPdS, kBlockM, kBlockN>;         // (N, M)

  using SmemLayoutdQ = SmemTile<kBlockM, kHeadDim>;                               // dQ conversion staging

  static constexpr int kSmemKVBytes = int(cosize(SmemLayoutKV{})) * int(sizeof(Element));
  static constexpr int kSmemQdOBytes = int(cosize(SmemLayoutQdO{})) * int(sizeof(Element));
  static constexpr int kSmemPdSBytes = int(cosize(SmemLayoutPdS{})) * int(sizeof(Element));
  // lse and D of the streamed query rows, one fp32 row vector each per stage.
  static constexpr int kSmemRowStatsBytes = 2 * kStages * kBlockM * int(sizeof(float));
  static constexpr int kSmemBytes = 2 * kSmemKVBytes + 2 * kSmemQdOBytes + 2 * kSmemPdSBytes + kSmemRowStatsBytes;
  static constexpr int kSmemdQBytes = int(cosize(SmemLayoutdQ{})) * int(sizeof(Element));
  static_assert(2 * kBlockM <= kNThreads, "one thread per lse / D element");
  static_assert(kSmemBytes <= 163 * 1024, "backward tiles must fit the shared memory of an sm80 CTA");

  using SmemCopyN = Copy_Atom<SmemCopyAtomN, Element>;
  using SmemCopyT = Copy_Atom<SmemCopyAtomT, Element>;

  using GmemTiledCopyLoad = typename GmemCopies<Element, kNThreads, kHeadDim>::Load;
  using GmemTiledCopyStore = typename GmemCopies<Element, kNThreads, kHeadDim>::Store;
};

}  // namespace flash::sm80
