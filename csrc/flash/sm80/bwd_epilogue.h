// Backward epilogue: a key block's dK (scaled by softmax_scale, the chain rule of the scaled scores) and dV go
// registers -> shared memory (reusing K's and V's space) -> global memory in 16-byte row-contiguous vectors.
#pragma once

#include <cute/tensor.hpp>

#include "../core/params.h"
#include "../core/seqlen.h"
#include "copy.h"
#include "fragment_layouts.h"
#include "tile_store.h"

namespace flash::sm80 {

using namespace cute;

template <class Traits, bool kEvenCols>
struct BwdEpilogue {
  using Element = typename Traits::Element;
  using TileK = Shape<Int<Traits::kBlockN>, Int<Traits::kHeadDim>>;

  // acc_dk, acc_dv: the thread's fp32 fragments of the dK/dV MMA. keys_left: keys of the block that exist.
  template <class AccdK, class AccdV>
  CUTE_DEVICE static void store(BwdParams const& params, SeqlenInfo const& seq, AccdK& acc_dk, AccdV const& acc_dv,
                                char* smem, int kv_head, int key_base, int keys_left, int tidx) {
    typename Traits::TiledMmadKV mma_dkv;
    Tensor sK = make_tensor(make_smem_ptr(reinterpret_cast<Element*>(smem)), typename Traits::SmemLayoutKV{});
    Tensor sV = make_tensor(sK.data() + size(sK), typename Traits::SmemLayoutKV{});
    auto dkv_tile = [&](void* base, int64_t batch_stride, int64_t row_stride, int64_t head_stride) {
      Element* ptr = static_cast<Element*>(base) + seq.k_offset(batch_stride, row_stride) +
                     kv_head * head_stride + int64_t(key_base) * row_stride;
      return make_tensor(make_gmem_ptr(ptr), TileK{}, make_stride(row_stride, _1{}));
    };
    CUTE_UNROLL
    for (int i = 0; i < size(acc_dk); ++i) { acc_dk(i) *= params.softmax_scale; }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with K and V
    acc_to_smem<Element>(mma_dkv, acc_dk, sK, tidx);
    acc_to_smem<Element>(mma_dkv, acc_dv, sV, tidx);
    __syncthreads();
    typename Traits::GmemTiledCopyStore gmem_store;
    smem_to_gmem<kEvenCols>(gmem_store, sK,
                            dkv_tile(params.dk_ptr, params.dk_batch_stride, params.dk_row_stride, params.dk_head_stride),
                            keys_left, params.head_dim, tidx);
    smem_to_gmem<kEvenCols>(gmem_store, sV,
                            dkv_tile(params.dv_ptr, params.dv_batch_stride, params.dv_row_stride, params.dv_head_stride),
                            keys_left, params.head_dim, tidx);
  }
};

}  // namespace flash::sm80
