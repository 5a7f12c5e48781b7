// flash_attn.layers.rotary's kernel: rotary embeddings applied to x (batch, seqlen, heads, d) or varlen
// (total, heads, d), in place or into out. Plain parameters, no torch.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "dispatch.h"

namespace flash {

struct RotaryApplyParams {
  void const* x = nullptr;
  void* out = nullptr;  // may be x (in place)
  int64_t x_batch_stride = 0, x_row_stride = 0, x_head_stride = 0;  // batch strides unused for varlen
  int64_t out_batch_stride = 0, out_row_stride = 0, out_head_stride = 0;
  void const* cos = nullptr;  // (seqlen_ro, rotary_dim / 2)
  void const* sin = nullptr;
  int64_t table_row_stride = 0;
  int seqlen_ro = 0;
  int rotary_dim = 0;
  // varlen: (batch + 1,) int32, clamped to [0, total] like the attention's (seqlen.h); nullptr = dense. A sequence
  // longer than seqlen (the caller's max_seqlen) is rotated whole.
  int const* cu_seqlens = nullptr;
  int total = 0;  // varlen: rows of x
  // Position of row i of sequence b: i + offsets[b] (int32 or int64 per-batch offsets) or i + offset.
  int const* offsets32 = nullptr;
  int64_t const* offsets64 = nullptr;
  int64_t offset = 0;
  int batch = 0, seqlen = 0, num_heads = 0, head_dim = 0;  // seqlen: dense length, or varlen max_seqlen
  bool interleaved = false;
  bool conjugate = false;
};

void run_rotary_apply(RotaryApplyParams const& params, DType dtype, cudaStream_t stream);

}  // namespace flash
