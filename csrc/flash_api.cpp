// The torch binding: the only translation unit that includes torch headers. It validates tensors
// (the Python layer has already checked arguments; these checks guard direct callers), fills a
// flash::FwdParams / flash::BwdParams and dispatches to the compiled kernels.
#include <torch/extension.h>  // few ATen/cuda headers: most need cuSPARSE/cuBLAS headers that a bare toolkit lacks
#include <ATen/cuda/CUDAGeneratorImpl.h>  // host-only; the philox state is unpacked in our own device code
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "flash/host/dispatch.h"
#include "flash/host/kvcache_append.h"
#include "flash/core/env_switch.h"
#include "flash/core/params.h"
#include "flash/host/rotary_apply.h"
#include "flash/host/split_plan.h"

namespace {

flash::DType kernel_dtype(at::ScalarType t) {
  TORCH_CHECK(t == at::kHalf || t == at::kBFloat16, "flash_attn: q must be float16 or bfloat16, got ", t);
  return t == at::kHalf ? flash::DType::kFloat16 : flash::DType::kBFloat16;
}

void check_input(at::Tensor const& t, char const* name, at::Tensor const& q, int64_t ndim) {
  TORCH_CHECK(t.is_cuda(), "flash_attn: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == q.device(), "flash_attn: ", name, " must be on the same device as q");
  TORCH_CHECK(t.scalar_type() == q.scalar_type(), "flash_attn: ", name, " must have the same dtype as q");
  TORCH_CHECK(t.dim() == ndim, "flash_attn: ", name, " must have ", ndim, " dims, got ", t.dim());
  TORCH_CHECK(t.stride(-1) == 1 || t.size(-1) <= 1, "flash_attn: ", name, " must have a contiguous last dim");
  // The kernels move 16 bytes (8 elements) at a time: rows must start 16-byte aligned.
  TORCH_CHECK(reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0, "flash_attn: ", name,
              " must start at a 16-byte aligned address (pass a contiguous copy)");
  for (int64_t i = 0; i + 1 < t.dim(); ++i) {
    TORCH_CHECK(t.size(i) <= 1 || t.stride(i) % 8 == 0, "flash_attn: ", name,
                " must have strides (except the last) that are multiples of 8 elements, got ", t.strides());
  }
}

void check_cu_seqlens(at::Tensor const& t, char const* name, at::Tensor const& q) {
  TORCH_CHECK(t.scalar_type() == at::kInt, "flash_attn: ", name, " must be int32");
  TORCH_CHECK(t.is_cuda() && t.device() == q.device(), "flash_attn: ", name, " must be on q's device");
  TORCH_CHECK(t.dim() == 1 && t.is_contiguous(), "flash_attn: ", name, " must be a contiguous 1-D tensor");
}

constexpr int64_t kNoKeyBound = std::numeric_limits<int64_t>::max();

// The 2.x bindings keep a generator slot for their argument positions; dropout draws from torch's default CUDA
// generator.
void check_no_generator(std::optional<at::Generator> const& gen) {
  TORCH_CHECK(!gen.has_value(), "flash_attn: the `generator` argument is no longer supported: dropout draws from "
              "torch's default CUDA generator (seed it with torch.manual_seed / torch.cuda.manual_seed); pass None");
}

// Window of visible keys in 2.x terms: a side < 0 is unbounded, causal is (-1, 0), and a side reaching
// every key (>= seqlen_k) is unbounded too.
struct Window {
  bool bounded;
  int64_t left, right;
};

// Option ranges, and the window normalised as 2.x does. softcap <= 0 is off (set_common_params).
Window check_supported(double p_dropout, bool is_causal, int64_t window_left, int64_t window_right,
                       int64_t seqlen_k, double softcap) {
  TORCH_CHECK(p_dropout >= 0.0 && p_dropout < 1.0, "flash_attn: dropout_p must be in [0, 1), got ", p_dropout);
  TORCH_CHECK(!(p_dropout > 0.0 && softcap > 0.0), "flash_attn: dropout_p > 0 with softcap > 0 is not supported");
  TORCH_CHECK(std::isfinite(softcap), "flash_attn: softcap must be a finite number (<= 0 = off), got ", softcap);
  TORCH_CHECK(window_left >= -1 && window_right >= -1, "flash_attn: window_size entries must be >= -1, got (",
              window_left, ", ", window_right, ")");
  if (window_left >= seqlen_k) { window_left = -1; }
  if (window_right >= seqlen_k) { window_right = -1; }
  if (is_causal) { window_right = 0; }
  return {window_left >= 0 || window_right >= 0, window_left, window_right};
}

// ALiBi slopes: fp32, (num_heads,) or (batch, num_heads), last dim contiguous, on q's device.
void set_alibi(flash::FwdParams& p, std::optional<at::Tensor> const& alibi_slopes, int64_t batch,
               at::Tensor const& q) {
  if (!alibi_slopes.has_value()) { return; }
  at::Tensor const& a = alibi_slopes.value();
  int64_t const num_heads = q.size(-2);
  TORCH_CHECK(a.scalar_type() == at::kFloat, "flash_attn: alibi_slopes must be float32");
  TORCH_CHECK(a.is_cuda() && a.device() == q.device(), "flash_attn: alibi_slopes must be on q's device");
  TORCH_CHECK((a.dim() == 1 && a.size(0) == num_heads) ||
                  (a.dim() == 2 && a.size(0) == batch && a.size(1) == num_heads),
              "flash_attn: alibi_slopes must have shape (num_heads,) or (batch, num_heads) = (", batch, ", ",
              num_heads, "), got ", a.sizes());
  TORCH_CHECK(a.stride(-1) == 1, "flash_attn: alibi_slopes must be contiguous in its last dim");
  p.alibi_slopes_ptr = a.data_ptr<float>();
  p.alibi_batch_stride = a.dim() == 2 ? a.stride(0) : 0;
}

// Dropout (flash/dropout.h), after the (max) sequence lengths are set. The forward takes a seed and counter
// offset from torch's CUDA generator (graph-safe: pointers while capturing) and its kernel writes them to
// rng_state; the backward reads them from rng_state on the device.
void set_dropout_common(flash::FwdParams& p, double p_dropout) {
  p.has_dropout = true;
  p.dropout_keep_threshold = static_cast<uint32_t>(std::floor((1.0 - p_dropout) * 255.0));
  p.dropout_scale = static_cast<float>(1.0 / (1.0 - p_dropout));
}

void set_dropout_fwd(flash::FwdParams& p, double p_dropout, at::Tensor const& rng_state) {
  if (p_dropout <= 0.0) { return; }
  set_dropout_common(p, p_dropout);
  // Counter values one (batch, head) uses (dropout.h): 128 per (16-row group, 128-key group); a multiple of 4
  // for torch. Varlen sequences are bounded by the packed totals (and paged ones by the block table), not by
  // max_seqlen, which may understate them.
  int64_t rows = p.seqlen_q, keys = p.seqlen_k;
  if (p.cu_seqlens_q != nullptr) { rows = std::max<int64_t>(rows, p.total_q); }
  if (p.cu_seqlens_k != nullptr) {
    keys = std::max<int64_t>(keys, p.block_table != nullptr ? int64_t(p.block_table_cols) * p.page_size : p.total_k);
  }
  uint64_t const used = uint64_t((rows + 15) / 16) * uint64_t((keys + 127) / 128) * 128;
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(std::nullopt,
                                                                  at::cuda::detail::getDefaultCUDAGenerator());
  at::PhiloxCudaState state;
  {
    std::lock_guard<std::mutex> lock(gen->mutex_);
    state = gen->philox_cuda_state((used + 3) / 4 * 4);
  }
  if (state.captured_) {
    p.philox_seed_ptr = state.seed_.ptr;
    p.philox_offset_ptr = state.offset_.ptr;
    p.philox_offset_extra = state.offset_intragraph_;
  } else {
    p.philox_seed = state.seed_.val;
    p.philox_offset = state.offset_.val;
  }
  p.rng_state_ptr = rng_state.data_ptr<int64_t>();
}

void set_dropout_bwd(flash::FwdParams& p, double p_dropout, std::optional<at::Tensor> const& rng_state,
                     at::Tensor const& q) {
  if (p_dropout <= 0.0) { return; }
  TORCH_CHECK(rng_state.has_value(), "flash_attn: a dropout backward needs the forward's rng_state");
  at::Tensor const& r = rng_state.value();
  TORCH_CHECK(r.scalar_type() == at::kLong && r.numel() == 2 && r.is_contiguous(),
              "flash_attn: rng_state must be a contiguous int64 tensor of 2 elements (seed, offset)");
  TORCH_CHECK(r.is_cuda() && r.device() == q.device(), "flash_attn: rng_state must be on q's device");
  set_dropout_common(p, p_dropout);
  p.philox_seed_ptr = r.data_ptr<int64_t>();
  p.philox_offset_ptr = r.data_ptr<int64_t>() + 1;
}

// (b, h, round128(sq), round128(sk)) for return_attn_probs with dropout, else an empty tensor.
at::Tensor make_s_dmask(flash::FwdParams& p, bool return_softmax, double p_dropout, int64_t batch,
                        at::Tensor const& q) {
  if (!(return_softmax && p_dropout > 0.0)) { return at::empty({0}, q.options()); }
  auto round128 = [](int64_t x) { return (x + 127) / 128 * 128; };
  // The kernel addresses one 128-row tile of S_dmask with 32-bit offsets.
  TORCH_CHECK(round128(p.seqlen_k) * 128 < (int64_t(1) << 31),
              "flash_attn: return_attn_probs with dropout supports seqlen_k up to 2^24 (S_dmask is a debug output "
              "of size seqlen_q x seqlen_k per head); got seqlen_k = ", p.seqlen_k);
  at::Tensor s = at::zeros({batch, q.size(-2), round128(p.seqlen_q), round128(p.seqlen_k)}, q.options());
  p.s_dmask_ptr = s.data_ptr();
  p.s_dmask_batch_stride = s.stride(0), p.s_dmask_head_stride = s.stride(1), p.s_dmask_row_stride = s.stride(2);
  p.s_dmask_rows = static_cast<int>(s.size(2)), p.s_dmask_cols = static_cast<int>(s.size(3));
  return s;
}

// An unbounded side (and any side beyond it) becomes 2^30, which no distance between a query and a key reaches
// (see flash/block.h) and no kernel's index arithmetic overflows with. Not seqlen_q + seqlen_k: a varlen call's
// max_seqlen bounds may be stale (see check_supported's callers).
void set_window(flash::FwdParams& p, Window const& w) {
  int64_t const unbounded = int64_t(1) << 30;
  p.has_window = w.bounded;
  p.window_left = static_cast<int>(w.left < 0 ? unbounded : std::min(w.left, unbounded));
  p.window_right = static_cast<int>(w.right < 0 ? unbounded : std::min(w.right, unbounded));
}

at::Tensor prepare_out(std::optional<at::Tensor> const& out_, at::Tensor const& q) {
  if (!out_.has_value()) { return at::empty_like(q); }
  at::Tensor out = out_.value();
  check_input(out, "out", q, q.dim());
  TORCH_CHECK(out.sizes() == q.sizes(), "flash_attn: out must have the same shape as q");
  return out;
}

void set_common_params(flash::FwdParams& p, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v,
                       at::Tensor const& out, at::Tensor const& lse, double softmax_scale, double softcap) {
  p.q_ptr = q.data_ptr();
  p.k_ptr = k.data_ptr();
  p.v_ptr = v.data_ptr();
  p.o_ptr = out.data_ptr();
  p.softmax_lse_ptr = lse.data_ptr<float>();
  // Row and head strides are the last three dims' strides for both layouts.
  p.q_row_stride = q.stride(-3), p.q_head_stride = q.stride(-2);
  p.k_row_stride = k.stride(-3), p.k_head_stride = k.stride(-2);
  p.v_row_stride = v.stride(-3), p.v_head_stride = v.stride(-2);
  p.o_row_stride = out.stride(-3), p.o_head_stride = out.stride(-2);
  p.num_heads = static_cast<int>(q.size(-2));
  p.num_heads_k = static_cast<int>(k.size(-2));
  p.head_ratio = p.num_heads / p.num_heads_k;
  p.head_dim = static_cast<int>(q.size(-1));
  p.head_dim_v = static_cast<int>(v.size(-1));
  p.softmax_scale = static_cast<float>(softmax_scale);
  // With softcap the kernels hold t = tanh(softmax_scale * s / softcap) and the softmax scales it by softcap
  // (flash/core/softcap.h).
  double const score_scale = softcap > 0.0 ? softcap : softmax_scale;
  p.score_scale = static_cast<float>(score_scale);
  p.score_scale_log2 = static_cast<float>(score_scale * M_LOG2E);
  p.softcap = softcap > 0.0 ? static_cast<float>(softcap) : 0.f;
  p.softcap_inner = softcap > 0.0 ? static_cast<float>(softmax_scale / softcap) : 0.f;
}

// Dense (b, s, h, d) q/out and (b or pages, s, hk, d) k/v with lse (b, h, sq); seqlen_k: keys per sequence
// (a KV cache's capacity).
void set_dense_fwd_params(flash::FwdParams& p, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v,
                          at::Tensor const& out, at::Tensor const& lse, double softmax_scale, double softcap,
                          int64_t seqlen_k) {
  set_common_params(p, q, k, v, out, lse, softmax_scale, softcap);
  p.q_batch_stride = q.stride(0), p.k_batch_stride = k.stride(0), p.v_batch_stride = v.stride(0);
  p.o_batch_stride = out.stride(0);
  p.lse_batch_stride = lse.stride(0), p.lse_head_stride = lse.stride(1);
  p.batch = static_cast<int>(q.size(0));
  p.seqlen_q = static_cast<int>(q.size(1));
  p.seqlen_k = static_cast<int>(seqlen_k);
}

void check_head_dims(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  int64_t const d = q.size(-1);
  TORCH_CHECK(d % 8 == 0, "flash_attn: head dim must be a multiple of 8 here (the Python wrapper pads it), got ", d);
  TORCH_CHECK(d <= 256, "flash_attn: head dim must be <= 256, got ", d);
  TORCH_CHECK(k.size(-1) == d && v.size(-1) == d, "flash_attn: q, k and v must have the same head dim");
  TORCH_CHECK(k.size(-2) > 0 && q.size(-2) % k.size(-2) == 0,
              "flash_attn: number of query heads must be a multiple of number of key/value heads");
  TORCH_CHECK(v.size(-2) == k.size(-2), "flash_attn: k and v must have the same number of heads");
}

// Dense (b, s, h, d) q, k and v: dtypes, devices, head dims and matching batch / key sizes.
void check_dense_qkv(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v) {
  check_input(q, "q", q, 4);
  check_input(k, "k", q, 4);
  check_input(v, "v", q, 4);
  check_head_dims(q, k, v);
  TORCH_CHECK(q.size(0) > 0, "flash_attn: batch size must be positive");
  TORCH_CHECK(k.size(0) == q.size(0) && v.size(0) == q.size(0), "flash_attn: q, k and v must have the same batch size");
  TORCH_CHECK(v.size(1) == k.size(1), "flash_attn: k and v must have the same sequence length");
}

// (seed, offset) of a dropout call, written by the forward kernel; read only by a dropout backward, so it is
// left uninitialised (no fill kernel on every call) otherwise.
at::Tensor make_rng_state(at::Tensor const& q) { return at::empty({2}, q.options().dtype(at::kLong)); }

// The split heuristic's inputs, read from the driver once per device rather than on every decode call.
struct SmResources {
  int num_sms = 0;
  int smem_per_sm = 0;
  flash::Arch arch = flash::Arch::kSm80;  // whose kernels this device can run (flash::select_arch, not forced)
};

// FLASH_ATTN_FORCE_SM80=1: run the sm80 kernels on every GPU. Read on every call (a getenv, far below a launch's
// cost), so a process can compare both paths (benchmarks/benchmark_flash_attn.py's ours-sm80 column, the tests).
bool force_sm80() { return flash::env_switch("FLASH_ATTN_FORCE_SM80", false); }

SmResources sm_resources(int device) {
  static std::mutex mutex;
  static std::vector<SmResources> per_device;
  std::lock_guard<std::mutex> lock(mutex);
  if (device >= static_cast<int>(per_device.size())) { per_device.resize(device + 1); }
  SmResources& sm = per_device[device];
  if (sm.num_sms == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm.num_sms, cudaDevAttrMultiProcessorCount, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    int major = 0, minor = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    sm.arch = flash::select_arch(major, minor, /*force_sm80=*/false);
  }
  return sm;
}

// The architecture whose kernels serve calls on the device (where they can; see flash::fwd_kernel_arch).
flash::Arch serving_arch(int device) { return force_sm80() ? flash::Arch::kSm80 : sm_resources(device).arch; }

// The dispatch key of a call on q's device.
flash::KernelKey kernel_key(flash::FwdParams const& p, flash::DType dtype, at::Tensor const& q) {
  return {serving_arch(q.get_device()), dtype, p.head_dim, p.head_dim_v};
}

// The instruction set of the kernels that serve the current device's calls where they can ("sm90": the sm90
// forward for the calls it supports, sm80 kernels for the rest; "sm80": sm80 kernels only). python -m flash_attn
// and the tests report it.
std::string kernel_arch() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  return serving_arch(device) == flash::Arch::kSm90 ? "sm90" : "sm80";
}

// The forward launch. Short queries (decode) take the split-KV kernel, which packs a KV head's query heads into
// one tile and splits the keys across CTAs when too few (batch, KV head) pairs would leave SMs idle; its fp32
// partial results live in a workspace sized by shapes only (CUDA-graph safe). accum_rows: query positions of the
// call (dense batch * seqlen_q, varlen total_q). requested_splits: 0 = heuristic, else the kv-cache caller's.
void run_forward(flash::FwdParams& p, flash::DType dtype, at::Tensor const& q, int64_t accum_rows,
                 int64_t requested_splits, cudaStream_t stream) {
  flash::KernelKey const key = kernel_key(p, dtype, q);
  if (!flash::use_split_kernel(p, requested_splits)) {
    flash::run_fwd(p, key, stream);
    return;
  }
  if (requested_splits > 0) {
    p.num_splits = static_cast<int>(std::min<int64_t>(requested_splits, flash::kMaxSplits));
  } else {
    SmResources const sm = sm_resources(q.get_device());
    p.num_splits = flash::choose_num_splits(p, sm.num_sms, sm.smem_per_sm);
  }
  at::Tensor o_accum, lse_accum;  // freed on return: the caching allocator orders their reuse on this stream
  if (p.num_splits > 1) {
    auto const f32 = q.options().dtype(at::kFloat);
    o_accum = at::empty({p.num_splits, p.num_heads, accum_rows, p.head_dim}, f32);
    lse_accum = at::empty({p.num_splits, p.num_heads, accum_rows}, f32);
    p.o_accum_ptr = o_accum.data_ptr<float>();
    p.lse_accum_ptr = lse_accum.data_ptr<float>();
    p.accum_rows = accum_rows;
  }
  flash::run_fwd_split(p, key, stream);
}

std::vector<at::Tensor> mha_fwd(at::Tensor const& q, at::Tensor const& k, at::Tensor const& v,
                                std::optional<at::Tensor> out_, std::optional<at::Tensor> alibi_slopes_,
                                double p_dropout, double softmax_scale, bool is_causal, int64_t window_size_left,
                                int64_t window_size_right, double softcap, bool return_softmax,
                                std::optional<at::Generator> gen_) {
  flash::DType const dtype = kernel_dtype(q.scalar_type());
  check_dense_qkv(q, k, v);
  int64_t const batch = q.size(0), seqlen_q = q.size(1), num_heads = q.size(2);
  int64_t const seqlen_k = k.size(1);
  Window const window =
      check_supported(p_dropout, is_causal, window_size_left, window_size_right, seqlen_k, softcap);
  check_no_generator(gen_);

  c10::cuda::CUDAGuard device_guard{q.device()};
  at::Tensor out = prepare_out(out_, q);
  at::Tensor lse = at::empty({batch, num_heads, seqlen_q}, q.options().dtype(at::kFloat));

  flash::FwdParams p;
  set_dense_fwd_params(p, q, k, v, out, lse, softmax_scale, softcap, seqlen_k);
  set_window(p, window);
  set_alibi(p, alibi_slopes_, batch, q);
  at::Tensor rng_state = make_rng_state(q);
  set_dropout_fwd(p, p_dropout, rng_state);
  at::Tensor s_dmask = make_s_dmask(p, return_softmax, p_dropout, batch, q);
  if (seqlen_q > 0) { run_forward(p, dtype, q, batch * seqlen_q, 0, c10::cuda::getCurrentCUDAStream().stream()); }
  return {out, lse, s_dmask, rng_state};
}

void check_int32_per_batch(std::optional<at::Tensor> const& t, char const* name, int64_t batch, at::Tensor const& q) {
  if (!t.has_value()) { return; }
  check_cu_seqlens(t.value(), name, q);
  TORCH_CHECK(t->numel() == batch, "flash_attn: ", name, " must have shape (batch,) = (", batch, "), got ",
              t->sizes());
}

void check_block_table(at::Tensor const& block_table, int64_t batch, at::Tensor const& q, int64_t page_size) {
  TORCH_CHECK(block_table.scalar_type() == at::kInt && block_table.is_cuda() && block_table.device() == q.device() &&
                  block_table.dim() == 2 && block_table.size(0) == batch && block_table.stride(1) == 1,
              "flash_attn: block_table must be an int32 (batch, max_blocks) CUDA tensor on q's device with "
              "contiguous rows");
  TORCH_CHECK(page_size % 16 == 0, "flash_attn: paged KV page size (k.shape[1]) must be a multiple of 16");
}

// Paged K/V (num_blocks, page_size, hk, d): the block table, and the page stride as the batch stride.
void set_paged(flash::FwdParams& p, at::Tensor const& block_table, at::Tensor const& k, at::Tensor const& v) {
  p.block_table = block_table.data_ptr<int>();
  p.block_table_batch_stride = block_table.stride(0);
  p.page_size = static_cast<int>(k.size(1));
  p.num_pages = static_cast<int>(k.size(0));
  p.block_table_cols = static_cast<int>(block_table.size(1));
  p.k_batch_stride = k.stride(0), p.v_batch_stride = v.stride(0);
  // Only the windowed kernels read paged K/V (see sm80/fwd_kernel.h); an unbounded window masks nothing.
  p.has_window = true;
}

std::vector<at::Tensor> mha_varlen_fwd(
    at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, std::optional<at::Tensor> out_,
    at::Tensor const& cu_seqlens_q, at::Tensor const& cu_seqlens_k, std::optional<at::Tensor> seqused_k,
    std::optional<at::Tensor> leftpad_k, std::optional<at::Tensor> block_table,
    std::optional<at::Tensor> alibi_slopes_, int64_t max_seqlen_q, int64_t max_seqlen_k, double p_dropout,
    double softmax_scale, bool zero_tensors, bool is_causal, int64_t window_size_left, int64_t window_size_right,
    double softcap, bool return_softmax, std::optional<at::Generator> gen_, int64_t num_splits) {
  flash::DType const dtype = kernel_dtype(q.scalar_type());
  bool const paged = block_table.has_value();  // k/v: (num_blocks, page_size, hk, d)
  check_no_generator(gen_);
  TORCH_CHECK(num_splits >= 0, "flash_attn: num_splits must be >= 0 (0 = heuristic), got ", num_splits);
  TORCH_CHECK(!(paged && num_splits > 1), "flash_attn: num_splits > 1 is not supported with a paged KV cache "
              "(block_table)");
  check_input(q, "q", q, 3);
  check_input(k, "k", q, paged ? 4 : 3);
  check_input(v, "v", q, paged ? 4 : 3);
  check_head_dims(q, k, v);
  check_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", q);
  check_cu_seqlens(cu_seqlens_k, "cu_seqlens_k", q);
  int64_t const batch = cu_seqlens_q.numel() - 1;
  TORCH_CHECK(batch > 0, "flash_attn: cu_seqlens_q must have at least 2 entries");
  TORCH_CHECK(cu_seqlens_k.numel() == batch + 1, "flash_attn: cu_seqlens_k must have the same length as cu_seqlens_q");
  TORCH_CHECK(v.sizes() == k.sizes(), "flash_attn: k and v must have the same shape");
  TORCH_CHECK(max_seqlen_q >= 0 && max_seqlen_k >= 0, "flash_attn: max_seqlen_q/k must be non-negative");
  check_int32_per_batch(seqused_k, "seqused_k", batch, q);
  check_int32_per_batch(leftpad_k, "leftpad_k", batch, q);
  if (paged) {
    check_block_table(*block_table, batch, q, k.size(1));
    TORCH_CHECK(!leftpad_k.has_value(), "flash_attn: leftpad_k does not work with a paged cache (block_table)");
  }
  // Varlen windows are kept as given: max_seqlen_k may be below a sequence's key count (a caller's stale bound, as
  // in CUDA-graph replays), so it cannot say that a window reaches every key.
  Window const window = check_supported(p_dropout, is_causal, window_size_left, window_size_right, kNoKeyBound,
                                        softcap);

  c10::cuda::CUDAGuard device_guard{q.device()};
  int64_t const total_q = q.size(0), num_heads = q.size(1);
  at::Tensor out = prepare_out(out_, q);
  at::Tensor lse = at::empty({num_heads, total_q}, q.options().dtype(at::kFloat));
  if (zero_tensors) {
    out.zero_();
    lse.fill_(-std::numeric_limits<float>::infinity());
  }

  flash::FwdParams p;
  set_common_params(p, q, k, v, out, lse, softmax_scale, softcap);
  p.lse_head_stride = total_q;
  p.cu_seqlens_q = cu_seqlens_q.data_ptr<int>();
  p.cu_seqlens_k = cu_seqlens_k.data_ptr<int>();
  p.total_q = static_cast<int>(total_q);
  p.total_k = static_cast<int>(k.size(0));
  p.batch = static_cast<int>(batch);
  p.seqlen_q = static_cast<int>(max_seqlen_q);
  p.seqlen_k = static_cast<int>(max_seqlen_k);
  p.seqused_k = seqused_k.has_value() ? seqused_k->data_ptr<int>() : nullptr;
  p.leftpad_k = leftpad_k.has_value() ? leftpad_k->data_ptr<int>() : nullptr;
  set_window(p, window);
  if (paged) { set_paged(p, *block_table, k, v); }
  set_alibi(p, alibi_slopes_, batch, q);
  at::Tensor rng_state = make_rng_state(q);
  set_dropout_fwd(p, p_dropout, rng_state);
  at::Tensor s_dmask = make_s_dmask(p, return_softmax, p_dropout, batch, q);
  if (total_q > 0) {
    // The grid needs a block per sequence even when max_seqlen understates the lengths (even as 0): the kernels
    // take lengths from cu_seqlens and cover what the grid does not (seqlen.h).
    p.seqlen_q = std::max(p.seqlen_q, 1), p.seqlen_k = std::max(p.seqlen_k, 1);
    run_forward(p, dtype, q, total_q, num_splits, c10::cuda::getCurrentCUDAStream().stream());
  }
  return {out, lse, s_dmask, rng_state};
}

// 2.x's varlen_fwd has no num_splits; later versions append it.
std::vector<at::Tensor> mha_varlen_fwd_2x(
    at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, std::optional<at::Tensor> out_,
    at::Tensor const& cu_seqlens_q, at::Tensor const& cu_seqlens_k, std::optional<at::Tensor> seqused_k,
    std::optional<at::Tensor> leftpad_k, std::optional<at::Tensor> block_table,
    std::optional<at::Tensor> alibi_slopes_, int64_t max_seqlen_q, int64_t max_seqlen_k, double p_dropout,
    double softmax_scale, bool zero_tensors, bool is_causal, int64_t window_size_left, int64_t window_size_right,
    double softcap, bool return_softmax, std::optional<at::Generator> gen_) {
  return mha_varlen_fwd(q, k, v, out_, cu_seqlens_q, cu_seqlens_k, seqused_k, leftpad_k, block_table, alibi_slopes_,
                        max_seqlen_q, max_seqlen_k, p_dropout, softmax_scale, zero_tensors, is_causal,
                        window_size_left, window_size_right, softcap, return_softmax, gen_, 0);
}

// ------------------------------------------------------------------------------------------------------
// KV cache (flash_attn_with_kvcache): append the new keys/values in place, rotate, attend over the cache
// ------------------------------------------------------------------------------------------------------

std::vector<at::Tensor> mha_fwd_kvcache(
    at::Tensor const& q, at::Tensor const& k_cache, at::Tensor const& v_cache, std::optional<at::Tensor> k_new,
    std::optional<at::Tensor> v_new, std::optional<at::Tensor> cache_seqlens, std::optional<at::Tensor> rotary_cos,
    std::optional<at::Tensor> rotary_sin, std::optional<at::Tensor> cache_batch_idx,
    std::optional<at::Tensor> cache_leftpad, std::optional<at::Tensor> block_table,
    std::optional<at::Tensor> alibi_slopes_, std::optional<at::Tensor> out_,
    double softmax_scale, bool is_causal, int64_t window_size_left, int64_t window_size_right, double softcap,
    bool rotary_interleaved, int64_t num_splits) {
  flash::DType const dtype = kernel_dtype(q.scalar_type());
  check_input(q, "q", q, 4);
  check_input(k_cache, "k_cache", q, 4);
  check_input(v_cache, "v_cache", q, 4);
  check_head_dims(q, k_cache, v_cache);
  int64_t const batch = q.size(0), seqlen_q = q.size(1), num_heads = q.size(2), head_dim = q.size(3);
  int64_t const num_heads_k = k_cache.size(2);
  TORCH_CHECK(batch > 0, "flash_attn: batch size must be positive");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes(), "flash_attn: k_cache and v_cache must have the same shape");
  check_int32_per_batch(cache_seqlens, "cache_seqlens", batch, q);
  check_int32_per_batch(cache_batch_idx, "cache_batch_idx", batch, q);
  check_int32_per_batch(cache_leftpad, "cache_leftpad", batch, q);
  bool const paged = block_table.has_value();
  int64_t const page_size = paged ? k_cache.size(1) : 0;
  if (paged) {
    check_block_table(*block_table, batch, q, page_size);
    TORCH_CHECK(!cache_batch_idx.has_value() && !cache_leftpad.has_value(),
                "flash_attn: cache_batch_idx and cache_leftpad do not work with a paged cache (block_table)");
  }
  // Key positions per sequence: a row of the cache, or every page of the block table.
  int64_t const capacity = paged ? block_table->size(1) * page_size : k_cache.size(1);
  TORCH_CHECK(paged || cache_batch_idx.has_value() || k_cache.size(0) == batch,
              "flash_attn: k_cache must have q's batch size unless cache_batch_idx maps the rows");
  TORCH_CHECK(k_new.has_value() == v_new.has_value(), "flash_attn: pass both k and v, or neither");
  int64_t seqlen_new = 0;
  if (k_new.has_value()) {
    TORCH_CHECK(cache_seqlens.has_value(), "flash_attn: appending k/v needs cache_seqlens");
    check_input(*k_new, "k", q, 4);
    check_input(*v_new, "v", q, 4);
    seqlen_new = k_new->size(1);
    TORCH_CHECK(k_new->size(0) == batch && k_new->size(2) == num_heads_k && k_new->size(3) == head_dim,
                "flash_attn: k must have shape (batch, seqlen_new, nheads_k, headdim) = (", batch, ", *, ",
                num_heads_k, ", ", head_dim, "), got ", k_new->sizes());
    TORCH_CHECK(v_new->sizes() == k_new->sizes(), "flash_attn: k and v must have the same shape");
  }
  TORCH_CHECK(rotary_cos.has_value() == rotary_sin.has_value(), "flash_attn: pass both rotary_cos and rotary_sin");
  int64_t rotary_dim = 0;
  if (rotary_cos.has_value()) {
    TORCH_CHECK(k_new.has_value(), "flash_attn: rotary_cos/rotary_sin are applied only with new k/v");
    for (auto const* t : {&*rotary_cos, &*rotary_sin}) {
      TORCH_CHECK(t->is_cuda() && t->device() == q.device() && t->scalar_type() == q.scalar_type(),
                  "flash_attn: rotary_cos/rotary_sin must be CUDA tensors of q's dtype on q's device");
      TORCH_CHECK(t->dim() == 2 && t->is_contiguous(), "flash_attn: rotary_cos/rotary_sin must be contiguous 2-D");
    }
    TORCH_CHECK(rotary_sin->sizes() == rotary_cos->sizes(), "flash_attn: rotary_cos and rotary_sin must match");
    rotary_dim = 2 * rotary_cos->size(1);
    TORCH_CHECK(rotary_dim % 16 == 0 && rotary_dim <= head_dim && rotary_dim > 0,
                "flash_attn: rotary_dim (2 * rotary_cos.shape[1]) must be a positive multiple of 16 <= headdim, got ",
                rotary_dim);
    TORCH_CHECK(rotary_cos->size(0) >= capacity, "flash_attn: rotary_cos/rotary_sin need a row per cache slot (",
                capacity, "), got ", rotary_cos->size(0));
  }
  Window const window = check_supported(0.0, is_causal, window_size_left, window_size_right, capacity, softcap);

  c10::cuda::CUDAGuard device_guard{q.device()};
  cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
  TORCH_CHECK(num_splits >= 0, "flash_attn: num_splits must be >= 0 (0 = heuristic)");
  bool const rotary = rotary_cos.has_value();
  at::Tensor q_attn = rotary ? at::empty(q.sizes(), q.options()) : q;  // rotary: q rotated by the append kernel
  at::Tensor out = prepare_out(out_, q);
  at::Tensor lse = at::empty({batch, num_heads, seqlen_q}, q.options().dtype(at::kFloat));
  flash::FwdParams p;
  set_dense_fwd_params(p, q_attn, k_cache, v_cache, out, lse, softmax_scale, softcap, capacity);
  if (cache_seqlens.has_value()) {  // keys in use: the cached ones plus the appended ones
    p.seqused_k = cache_seqlens->data_ptr<int>();
    p.seqused_k_extra = static_cast<int>(seqlen_new);
  }
  p.kv_batch_idx = cache_batch_idx.has_value() ? cache_batch_idx->data_ptr<int>() : nullptr;
  p.kv_batch_rows = static_cast<int>(k_cache.size(0));
  p.leftpad_k = cache_leftpad.has_value() ? cache_leftpad->data_ptr<int>() : nullptr;
  set_window(p, window);
  if (paged) { set_paged(p, *block_table, k_cache, v_cache); }
  set_alibi(p, alibi_slopes_, batch, q);
  bool const attends = seqlen_q > 0 && capacity > 0;
  // Decode-sized calls without rotary append inside the split-KV kernel (no separate launch); the others run the
  // append kernel first.
  bool const fuse_append = k_new.has_value() && !rotary && attends && flash::use_split_kernel(p, num_splits);
  if (fuse_append) {
    p.k_new_ptr = k_new->data_ptr(), p.v_new_ptr = v_new->data_ptr();
    p.k_new_batch_stride = k_new->stride(0), p.k_new_row_stride = k_new->stride(1);
    p.k_new_head_stride = k_new->stride(2);
    p.v_new_batch_stride = v_new->stride(0), p.v_new_row_stride = v_new->stride(1);
    p.v_new_head_stride = v_new->stride(2);
  } else if (k_new.has_value()) {
    flash::KvcacheAppendParams a;
    a.k_new = k_new->data_ptr(), a.v_new = v_new->data_ptr();
    a.k_new_batch_stride = k_new->stride(0), a.k_new_row_stride = k_new->stride(1);
    a.k_new_head_stride = k_new->stride(2);
    a.v_new_batch_stride = v_new->stride(0), a.v_new_row_stride = v_new->stride(1);
    a.v_new_head_stride = v_new->stride(2);
    a.k_cache = k_cache.data_ptr(), a.v_cache = v_cache.data_ptr();
    a.k_cache_batch_stride = k_cache.stride(0), a.k_cache_row_stride = k_cache.stride(1);
    a.k_cache_head_stride = k_cache.stride(2);
    a.v_cache_batch_stride = v_cache.stride(0), a.v_cache_row_stride = v_cache.stride(1);
    a.v_cache_head_stride = v_cache.stride(2);
    if (rotary) {
      a.q = q.data_ptr(), a.q_rot = q_attn.data_ptr();
      a.q_batch_stride = q.stride(0), a.q_row_stride = q.stride(1), a.q_head_stride = q.stride(2);
      a.cos = rotary_cos->data_ptr(), a.sin = rotary_sin->data_ptr();
      a.seqlen_ro = static_cast<int>(rotary_cos->size(0));
      a.rotary_dim = static_cast<int>(rotary_dim);
      a.interleaved = rotary_interleaved;
      a.q_position_per_row = is_causal || window.bounded;
    }
    a.cache_seqlens = cache_seqlens->data_ptr<int>();
    a.cache_batch_idx = cache_batch_idx.has_value() ? cache_batch_idx->data_ptr<int>() : nullptr;
    a.cache_batch_rows = static_cast<int>(k_cache.size(0));
    if (paged) {
      a.block_table = block_table->data_ptr<int>();
      a.block_table_batch_stride = block_table->stride(0);
      a.page_size = static_cast<int>(page_size);
      a.num_pages = static_cast<int>(k_cache.size(0));
    }
    a.batch = static_cast<int>(batch), a.seqlen_new = static_cast<int>(seqlen_new);
    a.seqlen_q = static_cast<int>(seqlen_q), a.num_heads = static_cast<int>(num_heads);
    a.num_heads_k = static_cast<int>(num_heads_k), a.head_dim = static_cast<int>(head_dim);
    a.capacity = static_cast<int>(capacity);
    flash::run_kvcache_append(a, dtype, stream);
  }
  if (attends) {
    run_forward(p, dtype, q_attn, batch * seqlen_q, num_splits, stream);
  } else {
    out.zero_();
    lse.fill_(std::numeric_limits<float>::infinity());
  }
  return {out, lse};
}

// ------------------------------------------------------------------------------------------------------
// Rotary embeddings (flash_attn.layers.rotary)
// ------------------------------------------------------------------------------------------------------

// out <- x rotated (out may be x). x: (b, s, h, d), or (total, h, d) with cu_seqlens and max_seqlen; cos/sin
// (seqlen_ro, rotary_dim / 2); positions i + seqlen_offsets[b] (int32/int64 tensor) or i + seqlen_offset.
void apply_rotary(at::Tensor const& x, at::Tensor const& cos, at::Tensor const& sin, at::Tensor const& out,
                  std::optional<at::Tensor> seqlen_offsets, int64_t seqlen_offset, std::optional<at::Tensor> cu_seqlens,
                  int64_t max_seqlen, bool interleaved, bool conjugate) {
  flash::DType const dtype = kernel_dtype(x.scalar_type());
  TORCH_CHECK(x.is_cuda(), "flash_attn: x must be a CUDA tensor");
  TORCH_CHECK(x.stride(-1) == 1 && out.stride(-1) == 1, "flash_attn: x and out must be contiguous in the last dim");
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type() && out.device() == x.device(),
              "flash_attn: out must match x");
  for (auto const* t : {&cos, &sin}) {
    TORCH_CHECK(t->device() == x.device() && t->scalar_type() == x.scalar_type() && t->dim() == 2 &&
                    t->stride(-1) == 1,
                "flash_attn: cos/sin must be 2-D (seqlen_ro, rotary_dim / 2) of x's dtype on x's device, contiguous "
                "in the last dim");
  }
  TORCH_CHECK(sin.sizes() == cos.sizes() && sin.stride(0) == cos.stride(0), "flash_attn: cos and sin must match");
  bool const varlen = cu_seqlens.has_value();
  TORCH_CHECK(x.dim() == (varlen ? 3 : 4), "flash_attn: x must be (batch, seqlen, nheads, headdim), or "
              "(total, nheads, headdim) with cu_seqlens");
  int64_t const head_dim = x.size(-1);
  TORCH_CHECK(2 * cos.size(1) <= head_dim, "flash_attn: rotary_dim must be <= headdim");
  c10::cuda::CUDAGuard device_guard{x.device()};
  flash::RotaryApplyParams p;
  p.x = x.data_ptr(), p.out = out.data_ptr();
  p.x_row_stride = x.stride(-3), p.x_head_stride = x.stride(-2);
  p.out_row_stride = out.stride(-3), p.out_head_stride = out.stride(-2);
  p.cos = cos.data_ptr(), p.sin = sin.data_ptr();
  p.table_row_stride = cos.stride(0);
  p.seqlen_ro = static_cast<int>(cos.size(0));
  p.rotary_dim = static_cast<int>(2 * cos.size(1));
  if (varlen) {
    check_cu_seqlens(*cu_seqlens, "cu_seqlens", x);
    p.cu_seqlens = cu_seqlens->data_ptr<int>();
    p.total = static_cast<int>(x.size(0));
    p.batch = static_cast<int>(cu_seqlens->numel() - 1);
    p.seqlen = static_cast<int>(std::max<int64_t>(max_seqlen, 1));  // an understated bound still rotates every row
  } else {
    p.x_batch_stride = x.stride(0), p.out_batch_stride = out.stride(0);
    p.batch = static_cast<int>(x.size(0));
    p.seqlen = static_cast<int>(x.size(1));
  }
  if (seqlen_offsets.has_value()) {
    at::Tensor const& o = *seqlen_offsets;
    TORCH_CHECK(o.device() == x.device() && o.dim() == 1 && o.numel() == p.batch && o.is_contiguous() &&
                    (o.scalar_type() == at::kInt || o.scalar_type() == at::kLong),
                "flash_attn: seqlen_offsets must be an int or a contiguous (batch,) int32/int64 tensor on x's device");
    if (o.scalar_type() == at::kInt) {
      p.offsets32 = o.data_ptr<int>();
    } else {
      p.offsets64 = o.data_ptr<int64_t>();
    }
  }
  p.offset = seqlen_offset;
  p.num_heads = static_cast<int>(x.size(-2));
  p.head_dim = static_cast<int>(head_dim);
  p.interleaved = interleaved;
  p.conjugate = conjugate;
  flash::run_rotary_apply(p, dtype, c10::cuda::getCurrentCUDAStream().stream());
}

// ------------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------------

at::Tensor prepare_grad(std::optional<at::Tensor> const& grad_, at::Tensor const& like, char const* name) {
  if (!grad_.has_value()) { return at::empty_like(like); }
  at::Tensor grad = grad_.value();
  check_input(grad, name, like, like.dim());
  TORCH_CHECK(grad.sizes() == like.sizes(), "flash_attn: ", name, " must have the shape of its input ",
              like.sizes(), ", got ", grad.sizes());
  return grad;
}

void check_lse(at::Tensor const& lse, at::Tensor const& q, at::IntArrayRef expected) {
  TORCH_CHECK(lse.scalar_type() == at::kFloat, "flash_attn: softmax_lse must be float32");
  TORCH_CHECK(lse.is_cuda() && lse.device() == q.device(), "flash_attn: softmax_lse must be on q's device");
  TORCH_CHECK(lse.sizes() == expected, "flash_attn: softmax_lse must have shape ", expected, ", got ", lse.sizes());
  TORCH_CHECK(lse.stride(-1) == 1, "flash_attn: softmax_lse must have a contiguous last dim");
}

// Fills everything but the batch/varlen-specific strides; dq_accum is (.., padded rows, bucket) fp32, see
// flash/params.h.
void set_bwd_params(flash::BwdParams& p, at::Tensor const& dout, at::Tensor const& q, at::Tensor const& k,
                    at::Tensor const& v, at::Tensor const& out, at::Tensor const& lse, at::Tensor const& dq,
                    at::Tensor const& dk, at::Tensor const& dv, at::Tensor const& dsum, at::Tensor const& dq_accum,
                    at::Tensor const& semaphore, double softmax_scale, double softcap, bool deterministic) {
  set_common_params(p, q, k, v, out, lse, softmax_scale, softcap);
  p.do_ptr = dout.data_ptr();
  p.dq_ptr = dq.data_ptr();
  p.dk_ptr = dk.data_ptr();
  p.dv_ptr = dv.data_ptr();
  p.do_row_stride = dout.stride(-3), p.do_head_stride = dout.stride(-2);
  p.dq_row_stride = dq.stride(-3), p.dq_head_stride = dq.stride(-2);
  p.dk_row_stride = dk.stride(-3), p.dk_head_stride = dk.stride(-2);
  p.dv_row_stride = dv.stride(-3), p.dv_head_stride = dv.stride(-2);
  p.dsum_ptr = dsum.data_ptr<float>();
  p.dq_accum_ptr = dq_accum.data_ptr<float>();
  p.dq_accum_row_stride = dq_accum.size(-1);
  p.deterministic = deterministic;
  p.dq_semaphore = deterministic ? semaphore.data_ptr<int>() : nullptr;
}

// Deterministic dQ accumulation's turn counters: one int32 per 16 rows of dq_accum (core/dq_turns.h:
// dq_turn_counter), zeroed; none otherwise.
at::Tensor make_semaphore(bool deterministic, at::Tensor const& dq_accum) {
  auto const opts = dq_accum.options().dtype(at::kInt);
  if (!deterministic) { return at::empty({0}, opts); }
  return at::zeros({dq_accum.numel() / dq_accum.size(-1) / 16 + 1}, opts);
}

std::vector<at::Tensor> mha_bwd(at::Tensor const& dout, at::Tensor const& q, at::Tensor const& k,
                                at::Tensor const& v, at::Tensor const& out, at::Tensor const& softmax_lse,
                                std::optional<at::Tensor> dq_, std::optional<at::Tensor> dk_,
                                std::optional<at::Tensor> dv_, std::optional<at::Tensor> alibi_slopes_,
                                double p_dropout, double softmax_scale, bool is_causal, int64_t window_size_left,
                                int64_t window_size_right, double softcap, bool deterministic,
                                std::optional<at::Generator> gen_, std::optional<at::Tensor> rng_state) {
  flash::DType const dtype = kernel_dtype(q.scalar_type());
  check_dense_qkv(q, k, v);
  check_input(out, "out", q, 4);
  check_input(dout, "dout", q, 4);
  int64_t const batch = q.size(0), seqlen_q = q.size(1), num_heads = q.size(2);
  int64_t const seqlen_k = k.size(1);
  TORCH_CHECK(out.sizes() == q.sizes() && dout.sizes() == q.sizes(), "flash_attn: out and dout must have q's shape");
  check_lse(softmax_lse, q, {batch, num_heads, seqlen_q});
  Window const window =
      check_supported(p_dropout, is_causal, window_size_left, window_size_right, seqlen_k, softcap);
  check_no_generator(gen_);  // the backward replays the forward's rng_state

  c10::cuda::CUDAGuard device_guard{q.device()};
  at::Tensor dq = prepare_grad(dq_, q, "dq");
  at::Tensor dk = prepare_grad(dk_, k, "dk");
  at::Tensor dv = prepare_grad(dv_, v, "dv");
  int64_t const seqlen_q_rounded = (seqlen_q + 127) / 128 * 128;
  at::Tensor dsum = at::empty({batch, num_heads, seqlen_q_rounded}, q.options().dtype(at::kFloat));
  if (seqlen_q == 0 || seqlen_k == 0) {  // nothing attends: every gradient is zero
    dq.zero_(), dk.zero_(), dv.zero_(), dsum.zero_();
    return {dq, dk, dv, dsum};
  }
  int64_t const bucket = flash::head_dim_bucket(static_cast<int>(q.size(-1)));
  at::Tensor dq_accum = at::empty({batch, num_heads, seqlen_q_rounded, bucket}, q.options().dtype(at::kFloat));
  at::Tensor semaphore = make_semaphore(deterministic, dq_accum);

  flash::BwdParams p;
  set_bwd_params(p, dout, q, k, v, out, softmax_lse, dq, dk, dv, dsum, dq_accum, semaphore, softmax_scale,
                 softcap, deterministic);
  p.q_batch_stride = q.stride(0), p.k_batch_stride = k.stride(0), p.v_batch_stride = v.stride(0);
  p.o_batch_stride = out.stride(0), p.do_batch_stride = dout.stride(0);
  p.dq_batch_stride = dq.stride(0), p.dk_batch_stride = dk.stride(0), p.dv_batch_stride = dv.stride(0);
  p.lse_batch_stride = softmax_lse.stride(0), p.lse_head_stride = softmax_lse.stride(1);
  p.dsum_batch_stride = dsum.stride(0), p.dsum_head_stride = dsum.stride(1);
  p.dq_accum_batch_stride = dq_accum.stride(0), p.dq_accum_head_stride = dq_accum.stride(1);
  p.batch = static_cast<int>(batch);
  p.seqlen_q = static_cast<int>(seqlen_q);
  p.seqlen_k = static_cast<int>(seqlen_k);
  set_window(p, window);
  set_alibi(p, alibi_slopes_, batch, q);
  set_dropout_bwd(p, p_dropout, rng_state, q);
  flash::run_bwd(p, kernel_key(p, dtype, q), c10::cuda::getCurrentCUDAStream().stream());
  return {dq, dk, dv, dsum};
}

std::vector<at::Tensor> mha_varlen_bwd(
    at::Tensor const& dout, at::Tensor const& q, at::Tensor const& k, at::Tensor const& v, at::Tensor const& out,
    at::Tensor const& softmax_lse, std::optional<at::Tensor> dq_, std::optional<at::Tensor> dk_,
    std::optional<at::Tensor> dv_, at::Tensor const& cu_seqlens_q, at::Tensor const& cu_seqlens_k,
    std::optional<at::Tensor> alibi_slopes_, int64_t max_seqlen_q, int64_t max_seqlen_k, double p_dropout,
    double softmax_scale, bool zero_tensors, bool is_causal, int64_t window_size_left, int64_t window_size_right,
    double softcap, bool deterministic, std::optional<at::Generator> gen_, std::optional<at::Tensor> rng_state) {
  flash::DType const dtype = kernel_dtype(q.scalar_type());
  check_input(q, "q", q, 3);
  check_input(k, "k", q, 3);
  check_input(v, "v", q, 3);
  check_input(out, "out", q, 3);
  check_input(dout, "dout", q, 3);
  check_head_dims(q, k, v);
  check_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", q);
  check_cu_seqlens(cu_seqlens_k, "cu_seqlens_k", q);
  int64_t const batch = cu_seqlens_q.numel() - 1;
  TORCH_CHECK(batch > 0, "flash_attn: cu_seqlens_q must have at least 2 entries");
  TORCH_CHECK(cu_seqlens_k.numel() == batch + 1, "flash_attn: cu_seqlens_k must have the same length as cu_seqlens_q");
  TORCH_CHECK(v.size(0) == k.size(0), "flash_attn: k and v must have the same number of tokens");
  TORCH_CHECK(max_seqlen_q >= 0 && max_seqlen_k >= 0, "flash_attn: max_seqlen_q/k must be non-negative");
  TORCH_CHECK(out.sizes() == q.sizes() && dout.sizes() == q.sizes(), "flash_attn: out and dout must have q's shape");
  int64_t const total_q = q.size(0), num_heads = q.size(1);
  check_lse(softmax_lse, q, {num_heads, total_q});
  // Varlen windows are kept as given: max_seqlen_k may be below a sequence's key count (a caller's stale bound, as
  // in CUDA-graph replays), so it cannot say that a window reaches every key.
  Window const window = check_supported(p_dropout, is_causal, window_size_left, window_size_right, kNoKeyBound,
                                        softcap);
  check_no_generator(gen_);  // the backward replays the forward's rng_state

  c10::cuda::CUDAGuard device_guard{q.device()};
  at::Tensor dq = prepare_grad(dq_, q, "dq");
  at::Tensor dk = prepare_grad(dk_, k, "dk");
  at::Tensor dv = prepare_grad(dv_, v, "dv");
  at::Tensor dsum = at::empty({num_heads, total_q + 128 * batch}, q.options().dtype(at::kFloat));
  if (zero_tensors) { dq.zero_(), dk.zero_(), dv.zero_(), dsum.zero_(); }
  if (total_q == 0 || k.size(0) == 0) {
    dq.zero_(), dk.zero_(), dv.zero_(), dsum.zero_();
    return {dq, dk, dv, dsum};
  }
  int64_t const bucket = flash::head_dim_bucket(static_cast<int>(q.size(-1)));
  at::Tensor dq_accum = at::empty({num_heads, total_q + 128 * batch, bucket}, q.options().dtype(at::kFloat));
  at::Tensor semaphore = make_semaphore(deterministic, dq_accum);

  flash::BwdParams p;
  set_bwd_params(p, dout, q, k, v, out, softmax_lse, dq, dk, dv, dsum, dq_accum, semaphore, softmax_scale,
                 softcap, deterministic);
  p.lse_head_stride = softmax_lse.stride(0);
  p.dsum_head_stride = dsum.stride(0);
  p.dq_accum_head_stride = dq_accum.stride(0);
  p.cu_seqlens_q = cu_seqlens_q.data_ptr<int>();
  p.cu_seqlens_k = cu_seqlens_k.data_ptr<int>();
  p.total_q = static_cast<int>(total_q);
  p.total_k = static_cast<int>(k.size(0));
  p.batch = static_cast<int>(batch);
  // At least one block per sequence, whatever max_seqlen says (see mha_varlen_fwd).
  p.seqlen_q = static_cast<int>(std::max<int64_t>(max_seqlen_q, 1));
  p.seqlen_k = static_cast<int>(std::max<int64_t>(max_seqlen_k, 1));
  set_window(p, window);
  set_alibi(p, alibi_slopes_, batch, q);
  set_dropout_bwd(p, p_dropout, rng_state, q);
  flash::run_bwd(p, kernel_key(p, dtype, q), c10::cuda::getCurrentCUDAStream().stream());
  return {dq, dk, dv, dsum};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "flash_attn CUDA kernels (FlashAttention-2 API)";
  m.def("fwd", &mha_fwd, "Forward pass (dense)");
  m.def("varlen_fwd", &mha_varlen_fwd_2x, "Forward pass (variable-length sequences)");
  m.def("varlen_fwd", &mha_varlen_fwd, "Forward pass (variable-length sequences), with num_splits last");
  m.def("bwd", &mha_bwd, "Backward pass (dense)");
  m.def("varlen_bwd", &mha_varlen_bwd, "Backward pass (variable-length sequences)");
  m.def("fwd_kvcache", &mha_fwd_kvcache, "Forward pass against a KV cache, appending new keys/values in place");
  m.def("kernel_arch", &kernel_arch, "Instruction set of the kernels serving the current GPU: sm90 or sm80");
  m.def("apply_rotary", &apply_rotary, "Rotary embeddings, in place or into out (flash_attn.layers.rotary)");
}
