// Plain parameter block handed from the torch binding to every kernel. No torch, no CUTLASS:
// pointers, 64-bit element strides and sizes, so any tensor over 2^31 elements indexes correctly.
#pragma once

#include <cstdint>

namespace flash {

inline constexpr int kMaxSplits = 128;  // split-KV: most splits of one call (the combine kernel's bound)

struct FwdParams {
  // Inputs, in the caller's dtype. Rows are seqlen positions; the last (head) dim is contiguous.
  void const* __restrict__ q_ptr = nullptr;
  void const* __restrict__ k_ptr = nullptr;
  void const* __restrict__ v_ptr = nullptr;
  void* __restrict__ o_ptr = nullptr;
  // Natural-log logsumexp per (batch, head, query row), fp32.
  float* __restrict__ softmax_lse_ptr = nullptr;

  // Element strides. Batch strides are unused in varlen mode (rows are offset by cu_seqlens).
  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
  // lse is (b, h, sq) dense or (h, total_q) varlen; rows are always contiguous.
  int64_t lse_batch_stride = 0, lse_head_stride = 0;

  int batch = 0;
  int num_heads = 0;     // query heads
  int num_heads_k = 0;   // key/value heads; num_heads % num_heads_k == 0
  int head_ratio = 1;    // num_heads / num_heads_k (GQA group size)
  int seqlen_q = 0;      // dense: the length; varlen: max_seqlen_q (sizes the grid)
  int seqlen_k = 0;      // dense: the length; varlen: max_seqlen_k
  int head_dim = 0;      // actual head dim of Q and K (multiple of 8, <= the kernel's bucket)
  int head_dim_v = 0;    // head dim of V and O; every kernel today requires head_dim_v == head_dim

  float softmax_scale = 1.f;       // the caller's scale; also the chain-rule factor of the backward
  // The scale the softmax applies to its input: softmax_scale, or softcap with softcap (its input is then the
  // tanh, see softcap.h). lse = score_scale * max + log(sum); score_scale_log2 = score_scale * log2(e) for exp2.
  float score_scale = 1.f;
  float score_scale_log2 = 1.f;
  // softcap > 0: scores <- softcap * tanh(softmax_scale * s / softcap) before masking (see softcap.h), the
  // kernels holding the tanh; softcap_inner = softmax_scale / softcap. 0 = off.
  float softcap = 0.f;
  float softcap_inner = 0.f;
  // ALiBi slopes, fp32 (num_heads,) or (batch, num_heads) (batch stride 0 for the former); nullptr = off.
  float const* __restrict__ alibi_slopes_ptr = nullptr;
  int64_t alibi_batch_stride = 0;

  // Dropout (dropout.h): has_dropout with p > 0; keep iff random byte <= keep_threshold; kept x dropout_scale.
  bool has_dropout = false;
  uint32_t dropout_keep_threshold = 255;
  float dropout_scale = 1.f;  // 1 / (1 - p)
  // Philox seed and counter offset: values, or (inside CUDA graph capture, and in the backward, which reads the
  // forward's rng_state) device pointers read by the kernel; philox_offset_extra is added to *offset_ptr.
  uint64_t philox_seed = 0, philox_offset = 0, philox_offset_extra = 0;
  int64_t const* philox_seed_ptr = nullptr;
  int64_t const* philox_offset_ptr = nullptr;
  int64_t* rng_state_ptr = nullptr;  // forward: (seed, offset) written here for the backward
  // return_attn_probs with dropout: (b, h, round128(sq), round128(sk)) in the element dtype, dropped entries
  // negated (API.md); nullptr = not requested.
  void* __restrict__ s_dmask_ptr = nullptr;
  int64_t s_dmask_batch_stride = 0, s_dmask_head_stride = 0, s_dmask_row_stride = 0;
  int s_dmask_rows = 0, s_dmask_cols = 0;  // its extent: a varlen sequence longer than max_seqlen writes no more

  // FP8 inputs: per-(batch, KV head) fp32 dequantisation scales of Q, K and V (scores are scaled by
  // q_descale * k_descale, O by v_descale); nullptr = 1. Read only by FP8 kernels.
  float const* __restrict__ q_descale_ptr = nullptr;
  float const* __restrict__ k_descale_ptr = nullptr;
  float const* __restrict__ v_descale_ptr = nullptr;
  int64_t q_descale_batch_stride = 0, q_descale_head_stride = 0;
  int64_t k_descale_batch_stride = 0, k_descale_head_stride = 0;
  int64_t v_descale_batch_stride = 0, v_descale_head_stride = 0;

  // Varlen: int32 (batch + 1,) prefix sums of sequence lengths; nullptr for dense inputs. total_q / total_k: the
  // rows of the packed q / k tensors, which bound every sequence (seqlen.h clamps the prefix sums to them).
  int const* __restrict__ cu_seqlens_q = nullptr;
  int const* __restrict__ cu_seqlens_k = nullptr;
  // Together with batch (dense) they are also the global extents a TMA descriptor of q/k/v is built over.
  int total_q = 0;
  int total_k = 0;
  // KV cache (dense K/V of capacity seqlen_k), int32 (batch,) each, nullptr = off: seqused_k, the keys in use
  // (clamped to seqlen_k); kv_batch_idx, the K/V batch row of each query batch entry; leftpad_k, the first
  // valid key, from which the sequence (and its bottom-right alignment) starts.
  int const* __restrict__ seqused_k = nullptr;
  int seqused_k_extra = 0;  // added to every seqused_k entry: the keys this call appended (kv cache)
  int const* __restrict__ kv_batch_idx = nullptr;
  int kv_batch_rows = 0;  // batch rows of a dense KV cache: a kv_batch_idx entry outside [0, kv_batch_rows) has no keys
  int const* __restrict__ leftpad_k = nullptr;
  // Paged KV cache: K/V are (num_pages, page_size, num_heads_k, d) (batch strides = page strides) and key
  // position p of batch b sits in page block_table[b * block_table_batch_stride + p / page_size], slot
  // p % page_size. nullptr = contiguous K/V.
  int const* __restrict__ block_table = nullptr;
  int64_t block_table_batch_stride = 0;
  int page_size = 0;
  int num_pages = 0;        // pages of the cache: entries outside [0, num_pages) are never dereferenced (paged.h)
  int block_table_cols = 0;  // entries per sequence: a sequence holds at most block_table_cols * page_size keys

  // Split-KV forward (the short-query kernels): the key range of each query row is split num_splits ways.
  // With num_splits > 1 each split writes its normalised partial output and lse (fp32) to
  // o_accum (num_splits, num_heads, accum_rows, head_dim) and lse_accum (num_splits, num_heads, accum_rows), a
  // row being a query position of the whole call (dense: batch * seqlen_q + i, varlen: cu_seqlens_q[b] + i), and
  // a combine kernel merges them into o / softmax_lse. A split with no key writes lse -inf.
  int num_splits = 1;  // <= kMaxSplits
  float* __restrict__ o_accum_ptr = nullptr;
  float* __restrict__ lse_accum_ptr = nullptr;
  int64_t accum_rows = 0;

  // Append fused into the split-KV forward (kv-cache calls without rotary): the seqused_k_extra keys of this call,
  // k_new/v_new (batch, seqused_k_extra, num_heads_k, d), are read from there instead of the cache, and the CTAs of
  // (query block 0, split 0) also write them into the cache at seqused_k (positions past the capacity are not
  // written). nullptr = the keys are already in the cache.
  void const* __restrict__ k_new_ptr = nullptr;
  void const* __restrict__ v_new_ptr = nullptr;
  int64_t k_new_batch_stride = 0, k_new_row_stride = 0, k_new_head_stride = 0;
  int64_t v_new_batch_stride = 0, v_new_row_stride = 0, v_new_head_stride = 0;

  // Keys visible to query row i: [i + shift - window_left, i + shift + window_right] with
  // shift = seqlen_k - seqlen_q (bottom-right aligned). Causal is (unbounded, 0); an unbounded side is
  // 2^30. Only read when has_window selects the windowed kernels.
  bool has_window = false;
  int window_left = 0;
  int window_right = 0;
};

// Backward: the forward's inputs and saved outputs plus the incoming gradient dO and the gradients.
// dq/dk/dv may be strided views (e.g. slices of a packed dqkv buffer).
struct BwdParams : FwdParams {
  void const* __restrict__ do_ptr = nullptr;
  void* __restrict__ dq_ptr = nullptr;
  void* __restrict__ dk_ptr = nullptr;
  void* __restrict__ dv_ptr = nullptr;
  int64_t do_batch_stride = 0, do_row_stride = 0, do_head_stride = 0;
  int64_t dq_batch_stride = 0, dq_row_stride = 0, dq_head_stride = 0;
  int64_t dk_batch_stride = 0, dk_row_stride = 0, dk_head_stride = 0;
  int64_t dv_batch_stride = 0, dv_row_stride = 0, dv_head_stride = 0;

  // D = rowsum(dO * O) per (batch, head, query row), fp32; laid out like lse with its own strides.
  float* __restrict__ dsum_ptr = nullptr;
  int64_t dsum_batch_stride = 0, dsum_head_stride = 0;

  // fp32 dQ accumulator, in tiles of (query block x head-dim bucket) whose element order belongs to the
  // architecture's backward kernel (which also converts it). Rows are padded: dense (b, h, round128(seqlen_q), bucket), varlen
  // (h, total_q + 128 * batch, bucket) with sequence i starting at row cu_seqlens_q[i] + 128 * i.
  float* __restrict__ dq_accum_ptr = nullptr;
  int64_t dq_accum_batch_stride = 0, dq_accum_row_stride = 0, dq_accum_head_stride = 0;

  // deterministic: key blocks add their dQ contributions in key-block order, sequenced by one int32
  // counter per 16 rows of dq_accum (zero-initialised; core/dq_turns.h).
  bool deterministic = false;
  int* __restrict__ dq_semaphore = nullptr;
};

}  // namespace flash
