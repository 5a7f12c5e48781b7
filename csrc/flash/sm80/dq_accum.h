// Layout of the fp32 dQ accumulator shared by the backward kernels. Each (batch, head, query block) owns
// one contiguous tile of kBlockM x bucket floats, stored thread-major (see dq_accum_fragment): the mainloop's
// reductions are then fully coalesced, and the conversion kernel reads the fragment back with the same MMA layout.
#pragma once

#include <cute/tensor.hpp>

#include "../params.h"
#include "../seqlen.h"

namespace flash::sm80 {

template <int kBlockM>
CUTE_DEVICE float* dq_accum_tile(BwdParams const& params, SeqlenInfo const& seq, int batch, int head, int m_block) {
  static_assert(kBlockM <= 128, "varlen sequences are padded by 128 rows");
  // Varlen: sequence i starts at row start_q + 128 * i, so its last (partial) tile never overlaps the next one.
  int64_t const row = (seq.varlen_q ? int64_t(128) * batch : 0) + int64_t(m_block) * kBlockM;
  return params.dq_accum_ptr + seq.q_offset(params.dq_accum_batch_stride, params.dq_accum_row_stride, batch) +
         head * params.dq_accum_head_stride + row * params.dq_accum_row_stride;
}

// Thread-major view of one tile for thread tidx, in groups of four: element i of the fragment lives at
// tile[(i / 4) * 4 * kNThreads + 4 * tidx + i % 4], so a warp's reduction of group g covers 512 consecutive bytes.
template <int kNThreads, class Fragment>
CUTE_DEVICE auto dq_accum_fragment(float* tile, Fragment const& frag, int tidx) {
  using namespace cute;
  constexpr int kSize = decltype(size(frag))::value;
  static_assert(kSize % 4 == 0, "the dQ fragment is reduced in groups of four floats");
  return make_tensor(make_gmem_ptr(tile + 4 * tidx),
                     Layout<Shape<_4, Int<kSize / 4>>, Stride<_1, Int<4 * kNThreads>>>{});
}

// accum += frag with relaxed global reductions. sm90 has a four-float vector reduction: a quarter of the
// instructions, which matters because the mainloop issues them in a burst that otherwise fills the
// load/store queue (ncu: lg-throttle stalls on the scalar reductions).
template <class Accum, class Fragment>
CUTE_DEVICE void reduce_add_fragment(Accum& accum, Fragment const& frag) {
  using namespace cute;
  CUTE_UNROLL
  for (int g = 0; g < size(frag) / 4; ++g) {
    float* dst = &accum(4 * g);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(frag(4 * g)), "f"(frag(4 * g + 1)),
                 "f"(frag(4 * g + 2)), "f"(frag(4 * g + 3))
                 : "memory");
#else
    CUTE_UNROLL
    for (int j = 0; j < 4; ++j) { atomicAdd(dst + j, frag(4 * g + j)); }
#endif
  }
}

}  // namespace flash::sm80
