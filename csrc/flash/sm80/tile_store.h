// Writing an fp32 accumulator tile out in the element dtype, in two steps shared by the forward and
// backward epilogues: registers -> shared memory (the MMA's accumulator layout, 32-bit pairs), then,
// after the caller's barrier, shared memory -> global memory in 16-byte row vectors predicated on the
// rows left in the sequence and on the real head dim.
#pragma once

#include <cute/tensor.hpp>

#include "copy.h"
#include "fragment_layouts.h"
#include "tile_layouts.h"

namespace flash::sm80 {

using namespace cute;

template <class Element, class TiledMma, class Acc, class SmemTensor>
CUTE_DEVICE void acc_to_smem(TiledMma const& tiled_mma, Acc const& acc, SmemTensor&& smem, int tidx) {
  Tensor converted = convert_fragment<Element>(acc);
  auto smem_copy = make_tiled_copy_C(SmemCopyAtomAcc<Element>{}, tiled_mma);
  auto thr_copy = smem_copy.get_thread_slice(tidx);
  copy(smem_copy, thr_copy.retile_S(converted), thr_copy.partition_D(smem));
}

template <bool kEvenCols, class GmemTiledCopy, class SmemTensor, class GmemTensor>
CUTE_DEVICE void smem_to_gmem(GmemTiledCopy const& gmem_copy, SmemTensor const& smem, GmemTensor&& gmem,
                              int rows_left, int head_dim, int tidx) {
  auto thr_copy = gmem_copy.get_thread_slice(tidx);
  Tensor src = thr_copy.partition_S(smem);
  Tensor dst = thr_copy.partition_D(gmem);
  Tensor staged = make_tensor<typename SmemTensor::value_type>(shape(dst));
  copy(gmem_copy, src, staged);
  Tensor coords = thr_copy.partition_D(make_identity_tensor(product_each(shape(smem))));
  Tensor col_pred = make_col_predicate(coords, head_dim);
  copy_tile<kEvenCols, /*kCheckRows=*/true, /*kZeroFill=*/false>(gmem_copy, staged, dst, coords, col_pred,
                                                                 rows_left);
}

}  // namespace flash::sm80
