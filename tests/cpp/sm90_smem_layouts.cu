// Host-side check of the sm90 forward's K/V shared-memory layouts (csrc/flash/sm90/fwd_traits.h): in every head-dim
// bucket's tile, each row's 8-element chunks are contiguous and 16-byte aligned, so FwdMainloop::zero_v_tail may
// clear a V tile's tail 16 bytes at a time. Built and run by tests/test_sm90_layouts.py.
#include <cstdio>

#include "flash/sm90/fwd_traits.h"

using flash::sm90::FwdTraits;

template <class Traits>
int check(char const* name) {
  typename Traits::SmemLayoutKV layout{};
  int bad = 0;
  for (int row = 0; row < Traits::kBlockN; ++row) {
    for (int col = 0; col < Traits::kHeadDim; col += 8) {
      for (int stage = 0; stage < Traits::kStages; ++stage) {
        int const first = layout(row, col, stage);
        bad += first % 8 != 0;
        for (int j = 1; j < 8; ++j) { bad += layout(row, col + j, stage) != first + j; }
      }
    }
  }
  if (bad != 0) { std::printf("%s: %d elements out of their chunk\n", name, bad); }
  return bad;
}

int main() {
  int bad = 0;
  bad += check<FwdTraits<64, 128, 128, 2, cutlass::bfloat16_t>>("d 64");
  bad += check<FwdTraits<64, 192, 128, 2, cutlass::half_t>>("d 64, tall");
  bad += check<FwdTraits<96, 128, 128, 2, cutlass::bfloat16_t>>("d 96");
  bad += check<FwdTraits<128, 128, 128, 2, cutlass::half_t>>("d 128");
  bad += check<FwdTraits<192, 128, 96, 2, cutlass::bfloat16_t>>("d 192");
  bad += check<FwdTraits<256, 128, 80, 2, cutlass::bfloat16_t>>("d 256");
  std::printf("layouts: %s\n", bad == 0 ? "ok" : "FAILED");
  return bad == 0 ? 0 : 1;
}
