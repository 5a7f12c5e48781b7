// flash_attn.layers.rotary's kernel (see flash/rotary_apply.h): one thread per pair of channels of one (row,
// head), rotated or copied (flash/rotary.h); an odd head dim's last channel is copied alone.
#include <cutlass/numeric_types.h>

#include "flash/core/rotary.h"
#include "flash/host/rotary_apply.h"
#include "flash/core/seqlen.h"

namespace flash {
namespace {

template <class Element>
__global__ void rotary_apply_kernel(__grid_constant__ RotaryApplyParams const params) {
  RotaryTable<Element> table;
  table.cos = static_cast<Element const*>(params.cos);
  table.sin = static_cast<Element const*>(params.sin);
  table.row_stride = params.table_row_stride;
  table.seqlen_ro = params.seqlen_ro;
  table.rotary_dim = params.rotary_dim;
  table.interleaved = params.interleaved;
  table.conjugate = params.conjugate;
  int const pairs = (params.head_dim + 1) / 2;
  int64_t const items = int64_t(params.batch) * params.seqlen * params.num_heads * pairs;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < items;
       item += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = item;
    int const j = int(rest % pairs);
    rest /= pairs;
    int const head = int(rest % params.num_heads);
    rest /= params.num_heads;
    int const first_row = int(rest % params.seqlen);
    int const batch = int(rest / params.seqlen);
    int64_t const offset = params.offsets64 != nullptr   ? params.offsets64[batch]
                           : params.offsets32 != nullptr ? int64_t(params.offsets32[batch])
                                                         : params.offset;
    // Varlen: this item's rows first_row, first_row + seqlen, ... of its sequence (more than one only when the
    // sequence is longer than the caller's max_seqlen).
    int start = 0, rows = first_row + 1;
    if (params.cu_seqlens != nullptr) {
      start = clamp_index(params.cu_seqlens[batch], 0, params.total);
      rows = clamp_index(params.cu_seqlens[batch + 1], start, params.total) - start;
    }
    for (int row = first_row; row < rows; row += params.seqlen) {
      int64_t src_row, dst_row;  // element offsets of the row
      if (params.cu_seqlens != nullptr) {
        src_row = int64_t(start + row) * params.x_row_stride;
        dst_row = int64_t(start + row) * params.out_row_stride;
      } else {
        src_row = batch * params.x_batch_stride + row * params.x_row_stride;
        dst_row = batch * params.out_batch_stride + row * params.out_row_stride;
      }
      int64_t const pos = row + offset;
      Element const* src = static_cast<Element const*>(params.x) + src_row + head * params.x_head_stride;
      Element* dst = static_cast<Element*>(params.out) + dst_row + head * params.out_head_stride;
      if (2 * j + 1 >= params.head_dim && j >= params.rotary_dim / 2) {  // the last channel of an odd head dim
        dst[2 * j] = src[2 * j];
        continue;
      }
      // Positions outside int are outside every table, as are negative ones (left as is, rotary.h).
      table.apply(src, dst, j, pos < INT32_MAX && pos > INT32_MIN ? int(pos) : -1);
    }
  }
}

template <class Element>
void launch(RotaryApplyParams const& params, cudaStream_t stream) {
  int64_t const items = int64_t(params.batch) * params.seqlen * params.num_heads * ((params.head_dim + 1) / 2);
  if (items == 0) { return; }
  int constexpr kThreads = 256;
  int64_t const blocks = (items + kThreads - 1) / kThreads;
  rotary_apply_kernel<Element><<<int(blocks < 65536 ? blocks : 65536), kThreads, 0, stream>>>(params);
}

}  // namespace

void run_rotary_apply(RotaryApplyParams const& params, DType dtype, cudaStream_t stream) {
  if (dtype == DType::kFloat16) {
    launch<cutlass::half_t>(params, stream);
  } else {
    launch<cutlass::bfloat16_t>(params, stream);
  }
}

}  // namespace flash
