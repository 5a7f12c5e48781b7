// flash_attn_with_kvcache's preparation kernel (see flash/kvcache_append.h). One thread per pair of channels
// of one (row, head), rotated or copied (flash/rotary.h).
#include <cutlass/numeric_types.h>

#include "flash/host/kvcache_append.h"
#include "flash/core/paged.h"
#include "flash/core/rotary.h"

namespace flash {
namespace {

// Work items: pairs of channels of the appended (row, head)s, then of the query (row, head)s to rotate.
__host__ __device__ int64_t kv_items(KvcacheAppendParams const& p) {
  return p.k_new != nullptr ? int64_t(p.batch) * p.seqlen_new * p.num_heads_k * (p.head_dim / 2) : 0;
}
__host__ __device__ int64_t q_items(KvcacheAppendParams const& p) {
  return p.q_rot != nullptr ? int64_t(p.batch) * p.seqlen_q * p.num_heads * (p.head_dim / 2) : 0;
}

template <class Element>
__global__ void kvcache_append_kernel(__grid_constant__ KvcacheAppendParams const params) {
  RotaryTable<Element> rotator;
  rotator.cos = static_cast<Element const*>(params.cos);
  rotator.sin = static_cast<Element const*>(params.sin);
  rotator.row_stride = params.rotary_dim / 2;
  rotator.seqlen_ro = params.seqlen_ro;
  rotator.rotary_dim = params.rotary_dim;
  rotator.interleaved = params.interleaved;
  int const pairs = params.head_dim / 2;
  int64_t const num_kv = kv_items(params), num_items = num_kv + q_items(params);
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < num_items;
       item += int64_t(gridDim.x) * blockDim.x) {
    bool const is_kv = item < num_kv;
    int64_t rest = is_kv ? item : item - num_kv;
    int const heads = is_kv ? params.num_heads_k : params.num_heads;
    int const j = int(rest % pairs);
    rest /= pairs;
    int const head = int(rest % heads);
    rest /= heads;
    int const rows = is_kv ? params.seqlen_new : params.seqlen_q;
    int const row = int(rest % rows);
    int const batch = int(rest / rows);
    int const cached = max(params.cache_seqlens[batch], 0);
    if (is_kv) {
      int const pos = cached + row;
      // Dense caches: the batch entry's cache row; nothing is written to a row or page that does not exist.
      int64_t const batch_row = params.cache_batch_idx != nullptr ? params.cache_batch_idx[batch] : batch;
      bool const row_exists = params.block_table != nullptr || (batch_row >= 0 && batch_row < params.cache_batch_rows);
      CacheRow const k_at = append_row(params, batch, row_exists, params.capacity,
                                       batch_row * params.k_cache_batch_stride, pos, params.k_cache_batch_stride,
                                       params.k_cache_row_stride);
      if (!k_at.writable) { continue; }
      CacheRow const v_at = append_row(params, batch, row_exists, params.capacity,
                                       batch_row * params.v_cache_batch_stride, pos, params.v_cache_batch_stride,
                                       params.v_cache_row_stride);
      Element const* k_src = static_cast<Element const*>(params.k_new) + batch * params.k_new_batch_stride +
                             row * params.k_new_row_stride + head * params.k_new_head_stride;
      Element* k_dst = static_cast<Element*>(params.k_cache) + k_at.offset + head * params.k_cache_head_stride;
      rotator.apply(k_src, k_dst, j, pos);
      Element const* v_src = static_cast<Element const*>(params.v_new) + batch * params.v_new_batch_stride +
                             row * params.v_new_row_stride + head * params.v_new_head_stride;
      Element* v_dst = static_cast<Element*>(params.v_cache) + v_at.offset + head * params.v_cache_head_stride;
      int a, b;
      rotator.channels(j, a, b);
      v_dst[a] = v_src[a];
      v_dst[b] = v_src[b];
    } else {
      int const pos = params.q_position_per_row ? cached + row : cached;
      Element const* q_src = static_cast<Element const*>(params.q) + batch * params.q_batch_stride +
                             row * params.q_row_stride + head * params.q_head_stride;
      // q_rot is contiguous (batch, seqlen_q, num_heads, head_dim).
      Element* q_dst = static_cast<Element*>(params.q_rot) +
                       ((int64_t(batch) * params.seqlen_q + row) * params.num_heads + head) * params.head_dim;
      rotator.apply(q_src, q_dst, j, pos);
    }
  }
}

template <class Element>
void launch(KvcacheAppendParams const& params, cudaStream_t stream) {
  int64_t const items = kv_items(params) + q_items(params);
  if (items == 0) { return; }
  int constexpr kThreads = 256;
  int64_t const blocks = (items + kThreads - 1) / kThreads;
  int const grid = int(blocks < 65536 ? blocks : 65536);
  kvcache_append_kernel<Element><<<grid, kThreads, 0, stream>>>(params);
}

}  // namespace

void run_kvcache_append(KvcacheAppendParams const& params, DType dtype, cudaStream_t stream) {
  if (dtype == DType::kFloat16) {
    launch<cutlass::half_t>(params, stream);
  } else {
    launch<cutlass::bfloat16_t>(params, stream);
  }
}

}  // namespace flash
