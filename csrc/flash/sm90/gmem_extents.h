// Global tensors as the sm90 forward's TMA descriptors address them: (rows, head dim, heads, batches), the head dim
// contiguous. Dense q/k/v/o are (batch, seqlen, heads, d) (a KV cache: kv_batch_rows entries of capacity seqlen_k; a
// paged one: num_pages pages of page_size slots); a varlen tensor is one batch entry of total rows, each sequence a
// range of them (SeqlenInfo's start).
#pragma once

#include <cute/tensor.hpp>

#include "../core/params.h"

namespace flash::sm90 {

using namespace cute;

// q and o.
CUTE_HOST_DEVICE auto q_extent(FwdParams const& params) {
  bool const varlen = params.cu_seqlens_q != nullptr;
  return make_shape(varlen ? params.total_q : params.seqlen_q, params.head_dim, params.num_heads,
                    varlen ? 1 : params.batch);
}

// k and v: a paged cache as (slots, head dim, heads, pages).
CUTE_HOST_DEVICE auto kv_extent(FwdParams const& params) {
  if (params.block_table != nullptr) {
    return make_shape(params.page_size, params.head_dim, params.num_heads_k, params.num_pages);
  }
  bool const varlen = params.cu_seqlens_k != nullptr;
  return make_shape(varlen ? params.total_k : params.seqlen_k, params.head_dim, params.num_heads_k,
                    varlen ? 1 : (params.kv_batch_rows > 0 ? params.kv_batch_rows : params.batch));
}

// The type of such a tensor (what the TMA descriptor types are built from).
template <class Element>
using GmemTensor = decltype(make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), Shape<int, int, int, int>{},
                                        Stride<int64_t, _1, int64_t, int64_t>{}));

// The tensor at ptr over extent with the given strides (in elements). A varlen tensor's single batch entry: any
// 16-byte multiple stands in for its unused batch stride.
template <class Element, class Extent>
auto gmem_tensor(Element* ptr, Extent const& extent, int64_t batch_stride, int64_t row_stride, int64_t head_stride) {
  int64_t const stride = get<3>(extent) == 1 ? row_stride * get<0>(extent) : batch_stride;
  return make_tensor(make_gmem_ptr(ptr), extent, make_stride(row_stride, _1{}, head_stride, stride));
}

}  // namespace flash::sm90
