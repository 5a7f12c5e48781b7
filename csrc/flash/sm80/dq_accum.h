// Layout of the fp32 dQ accumulator shared by the backward kernels. Each (batch, head, query block) owns
// one contiguous tile of kBlockM x bucket floats, stored thread-major: element i of thread t of the dQ MMA
// fragment lives at tile[i * kNThreads + t]. The mainloop's atomic adds are then fully coalesced (a warp
// adds 32 consecutive floats), and the conversion kernel reads the fragment back with the same MMA layout.
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

// The (fragment-shaped) thread-major view of one tile for thread tidx.
template <int kNThreads, class Fragment>
CUTE_DEVICE auto dq_accum_fragment(float* tile, Fragment const& frag, int tidx) {
  using namespace cute;
  return make_tensor(make_gmem_ptr(tile + tidx), make_layout(shape(frag), compact_col_major(shape(frag), Int<kNThreads>{})));
}

}  // namespace flash::sm80
