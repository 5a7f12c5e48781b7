// Layout of the fp32 dQ accumulator shared by the backward kernels. Each (batch, head, query block) owns
// one contiguous tile of kBlockM x bucket floats, stored thread-major (see dq_accum_fragment): the mainloop's
// reductions are then fully coalesced, and the conversion kernel reads the fragment back with the same MMA layout.
#pragma once

#include <cute/tensor.hpp>

#include "../core/params.h"
#include "../core/dq_turns.h"
#include "../core/global_reduce.h"
#include "../core/seqlen.h"

namespace flash::sm80 {

template <int kBlockM>
CUTE_DEVICE float* dq_accum_tile(BwdParams const& params, SeqlenInfo const& seq, int batch, int head, int m_block) {
  static_assert(kBlockM <= 128, "varlen sequences are padded by 128 rows");
  // Varlen: sequence i starts at row start_q + 128 * i, so its last (partial) tile never overlaps the next one.
  int64_t const row = (seq.varlen_q ? int64_t(128) * batch : 0) + int64_t(m_block) * kBlockM;
  return params.dq_accum_ptr + seq.q_offset(params.dq_accum_batch_stride, params.dq_accum_row_stride, batch) +
         head * params.dq_accum_head_stride + row * params.dq_accum_row_stride;
}

// Thread-major view of one tile for thread tidx, in groups of W = kGlobalReduceWidth floats: element i of the fragment
// lives at tile[(i / W) * W * kNThreads + W * tidx + i % W], so each reduction instruction of a warp covers
// 128 W consecutive bytes (scalar reductions in a layout grouped by four would touch four times the sectors).
template <int kNThreads, class Fragment>
CUTE_DEVICE auto dq_accum_fragment(float* tile, Fragment const& frag, int tidx) {
  using namespace cute;
  constexpr int kWidth = kGlobalReduceWidth;
  constexpr int kSize = decltype(size(frag))::value;
  static_assert(kSize % kWidth == 0, "the dQ fragment is reduced in whole groups");
  return make_tensor(make_gmem_ptr(tile + kWidth * tidx),
                     Layout<Shape<Int<kWidth>, Int<kSize / kWidth>>, Stride<_1, Int<kWidth * kNThreads>>>{});
}

}  // namespace flash::sm80
