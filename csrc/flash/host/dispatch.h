// Host-side dispatch: (architecture, dtype, head dim, head dim of V, variant) of a call -> the compiled kernel.
// Only kernels selected at build time are referenced (kernel_table.h, generated from flash_attn/_kernel_config.py;
// FLASH_ATTN_DTYPE_<t> and FLASH_ATTN_ARCH_SM90 defines from setup.py); any other combination throws with the
// build variable that would build it. Host-only: included by the torch binding, which must not see CuTe device code.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include <cutlass/numeric_types.h>

#include "../core/params.h"
#include "../sm90/fwd_tile_config.h"
#include "kernel_table.h"

namespace flash {

enum class DType { kFloat16, kBFloat16 };

// The instruction set a kernel is written for. kSm80: mma.sync / ldmatrix / cp.async, runs on every GPU >= sm80
// (and serves dropout everywhere). kSm90: TMA / wgmma / warp specialisation, sm90a only.
enum class Arch { kSm80, kSm90 };

// Kernel entry points, one per (architecture, direction); each architecture folder instantiates its own.
namespace sm80 {
template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream);
template <class Element, int kHeadDim, bool kHasWindow>
void run_bwd(BwdParams const& params, cudaStream_t stream);
template <class Element, int kHeadDim>
void run_fwd_split(FwdParams const& params, cudaStream_t stream);
}  // namespace sm80
namespace sm90 {
template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream);
}  // namespace sm90

// Whether this build holds sm90a kernels: setup.py defines FLASH_ATTN_ARCH_SM90 when 90 is among the archs.
#ifdef FLASH_ATTN_ARCH_SM90
inline constexpr bool kSm90KernelsBuilt = true;
#else
inline constexpr bool kSm90KernelsBuilt = false;
#endif

// The architecture whose kernels serve a device of compute capability (major, minor). force_sm80: the documented
// FLASH_ATTN_FORCE_SM80=1 switch (read by the binding), which keeps the sm80 kernels testable on Hopper.
inline Arch select_arch(int major, int minor, bool force_sm80) {
  if (kSm90KernelsBuilt && !force_sm80 && major == 9 && minor == 0) { return Arch::kSm90; }
  return Arch::kSm80;
}

// What a call needs compiled: the dispatch axes other than the variant flags carried in the params.
struct KernelKey {
  Arch arch = Arch::kSm80;
  DType dtype = DType::kBFloat16;
  int head_dim = 0;    // multiple of 8, <= 256
  int head_dim_v = 0;  // == head_dim for every kernel today
};

// Smallest compiled-for bucket that holds head_dim (already a multiple of 8).
inline int head_dim_bucket(int head_dim) {
  for (int bucket : kHeadDimBuckets) {
    if (head_dim <= bucket) { return bucket; }
  }
  throw std::invalid_argument("flash_attn: head dim " + std::to_string(head_dim) + " exceeds 256");
}

[[noreturn]] inline void throw_not_built(char const* variable, std::string const& value, std::string const& what) {
  throw std::runtime_error("flash_attn was built without " + what + " kernels; rebuild with " + variable +
                           " including \"" + value + "\" (e.g. " + variable + "=\"" + value + "\")");
}

// Calls fn.template operator()<Element, kHeadDim, kHasWindow>() for the compiled kernel that serves the key;
// throws, naming the build variable, when it was not built.
template <class Element, int kHeadDim, class Fn>
void dispatch_window(bool has_window, Fn&& fn) {
  if (has_window) {
    fn.template operator()<Element, kHeadDim, true>();
  } else {
    fn.template operator()<Element, kHeadDim, false>();
  }
}

template <class Element, class Fn, int... kBuckets>
void dispatch_hdim(int bucket, bool has_window, Fn&& fn, std::integer_sequence<int, kBuckets...>) {
  bool found = false;
  (
      [&] {
        if constexpr (kHeadDimBuilt<kBuckets>) {
          if (!found && bucket == kBuckets) {
            found = true;
            dispatch_window<Element, kBuckets>(has_window, fn);
          }
        }
      }(),
      ...);
  if (!found) { throw_not_built("FLASH_ATTN_HEADDIMS", std::to_string(bucket), "head dim " + std::to_string(bucket)); }
}

template <class Fn>
void dispatch_kernel(KernelKey const& key, bool has_window, Fn&& fn) {
  if (key.head_dim_v != key.head_dim) {
    throw std::invalid_argument("flash_attn: no kernel for head dim of V " + std::to_string(key.head_dim_v) +
                                " != head dim " + std::to_string(key.head_dim));
  }
  int const bucket = head_dim_bucket(key.head_dim);
  using Buckets = std::integer_sequence<int, kHeadDimBuckets[0], kHeadDimBuckets[1], kHeadDimBuckets[2],
                                        kHeadDimBuckets[3], kHeadDimBuckets[4], kHeadDimBuckets[5]>;
  static_assert(sizeof(kHeadDimBuckets) / sizeof(int) == 6, "extend Buckets with kernel_table.h");
  if (key.dtype == DType::kFloat16) {
#ifdef FLASH_ATTN_DTYPE_FP16
    return dispatch_hdim<cutlass::half_t>(bucket, has_window, fn, Buckets{});
#else
    throw_not_built("FLASH_ATTN_DTYPES", "fp16", "fp16");
#endif
  } else {
#ifdef FLASH_ATTN_DTYPE_BF16
    return dispatch_hdim<cutlass::bfloat16_t>(bucket, has_window, fn, Buckets{});
#else
    throw_not_built("FLASH_ATTN_DTYPES", "bf16", "bf16");
#endif
  }
}

// The head dim whose sm90 kernel serves a call: its own, or the smallest sm90 bucket (kSm90FwdMinHeadDim,
// kernel_table.h) for smaller head dims, whose columns past head_dim TMA fills with zeros and the epilogue does
// not store.
inline int sm90_fwd_head_dim(int head_dim) { return head_dim < kSm90FwdMinHeadDim ? kSm90FwdMinHeadDim : head_dim; }

// The sm90 forward serves fp16/bf16 calls, dense or varlen (cu_seqlens_q/k), whose tensors TMA can address (16-byte
// aligned base pointers and strides, at least one row), with any head dim (below kSm90FwdMinHeadDim only where that
// bucket is built), the KV-cache inputs included (seqused_k, leftpad_k, kv_batch_idx), without keys appended inside the
// attention kernel (k_new); paged caches in pages of any multiple of 16. Dropout and returned probabilities stay on
// sm80. Every other call runs the sm80 kernels, which every GPU >= sm80 runs.
inline bool sm90_fwd_supports(FwdParams const& p) {
  auto aligned = [](void const* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto strides_aligned = [](int64_t batch, int64_t row, int64_t head) {
    return batch % 8 == 0 && row % 8 == 0 && head % 8 == 0;  // 16 bytes of 16-bit elements
  };
  // Pages are loaded a key block at a time where the key tile divides the page size, else in chunks of 16 rows
  // (sm90/fwd_mainloop.h: load_chunked).
  bool const pages_fit = p.block_table == nullptr || (p.page_size > 0 && p.page_size % 16 == 0);
  bool const plain = pages_fit && p.k_new_ptr == nullptr &&
                     !p.has_dropout && p.s_dmask_ptr == nullptr && p.head_dim_v == p.head_dim;
  // TMA's extents (sm90/gmem_extents.h: q_extent, kv_extent) must not be empty.
  bool const has_rows = (p.cu_seqlens_q != nullptr ? p.total_q : p.seqlen_q) > 0 &&
                        (p.block_table != nullptr ? p.num_pages
                                                  : (p.cu_seqlens_k != nullptr ? p.total_k : p.seqlen_k)) > 0;
  bool const fits_grid = p.batch <= 65535 && p.num_heads <= 65535;  // its grid is (query blocks, heads, batch)
  bool const head_dim_built = head_dim_bucket(p.head_dim) >= kSm90FwdMinHeadDim || kHeadDimBuilt<kSm90FwdMinHeadDim>;
  return plain && has_rows && fits_grid && head_dim_built &&
         aligned(p.q_ptr) && aligned(p.k_ptr) && aligned(p.v_ptr) &&
         strides_aligned(p.q_batch_stride, p.q_row_stride, p.q_head_stride) &&
         strides_aligned(p.k_batch_stride, p.k_row_stride, p.k_head_stride) &&
         strides_aligned(p.v_batch_stride, p.v_row_stride, p.v_head_stride) && p.o_row_stride % 2 == 0 &&
         p.o_head_stride % 2 == 0 && p.o_batch_stride % 2 == 0 && reinterpret_cast<uintptr_t>(p.o_ptr) % 4 == 0;
}

// The architecture whose forward kernel runs this call.
inline Arch fwd_kernel_arch(FwdParams const& params, KernelKey const& key) {
  return key.arch == Arch::kSm90 && sm90_fwd_supports(params) ? Arch::kSm90 : Arch::kSm80;
}

inline void run_fwd(FwdParams const& params, KernelKey const& key, cudaStream_t stream) {
  if (fwd_kernel_arch(params, key) == Arch::kSm90) {
#ifdef FLASH_ATTN_ARCH_SM90
    KernelKey sm90_key = key;
    sm90_key.head_dim = sm90_fwd_head_dim(key.head_dim);
    sm90_key.head_dim_v = sm90_fwd_head_dim(key.head_dim_v);
    dispatch_kernel(sm90_key, params.has_window, [&]<class Element, int kHeadDim, bool kHasWindow>() {
      if constexpr (kHeadDim >= kSm90FwdMinHeadDim) { sm90::run_fwd<Element, kHeadDim, kHasWindow>(params, stream); }
    });
    return;
#endif
  }
  dispatch_kernel(key, params.has_window, [&]<class Element, int kHeadDim, bool kHasWindow>() {
    sm80::run_fwd<Element, kHeadDim, kHasWindow>(params, stream);
  });
}

// The split-KV forward masks windows at run time: one kernel per (dtype, head dim).
// It runs on sm80 instructions on every architecture.
inline void run_fwd_split(FwdParams const& params, KernelKey const& key, cudaStream_t stream) {
  dispatch_kernel(key, /*has_window=*/false, [&]<class Element, int kHeadDim, bool>() {
    sm80::run_fwd_split<Element, kHeadDim>(params, stream);
  });
}

// The backward runs on sm80 instructions on every architecture (the sm90 backward is the next step).
inline void run_bwd(BwdParams const& params, KernelKey const& key, cudaStream_t stream) {
  dispatch_kernel(key, params.has_window, [&]<class Element, int kHeadDim, bool kHasWindow>() {
    sm80::run_bwd<Element, kHeadDim, kHasWindow>(params, stream);
  });
}

}  // namespace flash
