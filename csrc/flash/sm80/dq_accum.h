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

// The deterministic-mode turn counter of a tile (params.h: dq_semaphore): one int32 per 16 rows of the
// accumulator, so the counters follow its padded row space and every tile's counter lies inside the buffer whatever
// a varlen call's max_seqlen_q says.
CUTE_DEVICE int* dq_turn_counter(BwdParams const& params, float const* tile) {
  int64_t const row = (tile - params.dq_accum_ptr) / params.dq_accum_row_stride;
  return params.dq_semaphore + row / 16;
}

// Floats per global reduction: sm90 has a four-float vector reduction (a quarter of the instructions, which
// matters because the mainloop issues them in a burst that otherwise fills the load/store queue: ncu showed
// lg-throttle stalls on the scalar ones). Earlier archs reduce one float at a time. Mainloop and conversion
// kernel are compiled for the same arch, so they always agree on the tile layout below.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int kDqReduceWidth = 4;
#else
constexpr int kDqReduceWidth = 1;
#endif

// Thread-major view of one tile for thread tidx, in groups of W = kDqReduceWidth floats: element i of the fragment
// lives at tile[(i / W) * W * kNThreads + W * tidx + i % W], so each reduction instruction of a warp covers
// 128 W consecutive bytes (scalar reductions in a layout grouped by four would touch four times the sectors).
template <int kNThreads, class Fragment>
CUTE_DEVICE auto dq_accum_fragment(float* tile, Fragment const& frag, int tidx) {
  using namespace cute;
  constexpr int kWidth = kDqReduceWidth;
  constexpr int kSize = decltype(size(frag))::value;
  static_assert(kSize % kWidth == 0, "the dQ fragment is reduced in whole groups");
  return make_tensor(make_gmem_ptr(tile + kWidth * tidx),
                     Layout<Shape<Int<kWidth>, Int<kSize / kWidth>>, Stride<_1, Int<kWidth * kNThreads>>>{});
}

// accum += frag with relaxed global reductions, kDqReduceWidth floats per instruction.
template <class Accum, class Fragment>
CUTE_DEVICE void reduce_add_fragment(Accum& accum, Fragment const& frag) {
  using namespace cute;
  CUTE_UNROLL
  for (int g = 0; g < size(frag) / kDqReduceWidth; ++g) {
    float* dst = &accum(kDqReduceWidth * g);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(frag(4 * g)), "f"(frag(4 * g + 1)),
                 "f"(frag(4 * g + 2)), "f"(frag(4 * g + 3))
                 : "memory");
#else
    atomicAdd(dst, frag(g));
#endif
  }
}

}  // namespace flash::sm80
