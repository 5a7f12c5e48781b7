// fp32 reductions into global memory (dQ accumulation), as wide as the GPU compiled for has them.
#pragma once

#include <cute/tensor.hpp>

namespace flash {

// Floats per global reduction: sm90 has a four-float vector reduction (a quarter of the instructions, which
// matters because the mainloop issues them in a burst that otherwise fills the load/store queue: ncu showed
// lg-throttle stalls on the scalar ones). Earlier archs reduce one float at a time. A kernel that lays
// out data by this width is read back by code compiled for the same arch.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
inline constexpr int kGlobalReduceWidth = 4;
#else
inline constexpr int kGlobalReduceWidth = 1;
#endif

// accum += frag with relaxed global reductions, kGlobalReduceWidth floats per instruction.
template <class Accum, class Fragment>
CUTLASS_DEVICE void reduce_add_fragment(Accum& accum, Fragment const& frag) {
  using namespace cute;
  CUTE_UNROLL
  for (int g = 0; g < size(frag) / kGlobalReduceWidth; ++g) {
    float* dst = &accum(kGlobalReduceWidth * g);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(frag(4 * g)), "f"(frag(4 * g + 1)),
                 "f"(frag(4 * g + 2)), "f"(frag(4 * g + 3))
                 : "memory");
#else
    atomicAdd(dst, frag(g));
#endif
  }
}

}  // namespace flash
