// Static switches from runtime (dtype, head dim, windowed) to the compiled kernel instantiations,
// shared by the forward and backward entry points.
// Only kernels selected at build time (FLASH_ATTN_HDIM_<d>, FLASH_ATTN_DTYPE_<t> defines from
// setup.py) are referenced; any other combination throws with the variable that would build it.
// Host-only: included by the torch binding, which must not see CuTe device code.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include <cutlass/numeric_types.h>

#include "params.h"

namespace flash {

enum class DType { kFloat16, kBFloat16 };

namespace sm80 {
template <class Element, int kHeadDim, bool kHasWindow>
void run_fwd(FwdParams const& params, cudaStream_t stream);
template <class Element, int kHeadDim, bool kHasWindow>
void run_bwd(BwdParams const& params, cudaStream_t stream);
template <class Element, int kHeadDim>
void run_fwd_split(FwdParams const& params, cudaStream_t stream);
}  // namespace sm80

// Smallest compiled-for bucket that holds head_dim (already a multiple of 8).
inline int head_dim_bucket(int head_dim) {
  for (int bucket : {32, 64, 96, 128, 192, 256}) {
    if (head_dim <= bucket) { return bucket; }
  }
  throw std::invalid_argument("flash_attn: head dim " + std::to_string(head_dim) + " exceeds 256");
}

[[noreturn]] inline void throw_not_built(char const* variable, std::string const& value, std::string const& what) {
  throw std::runtime_error("flash_attn was built without " + what + " kernels; rebuild with " + variable +
                           " including \"" + value + "\" (e.g. " + variable + "=\"" + value + "\")");
}

// Calls fn.template operator()<Element, kHeadDim, kHasWindow>() for the compiled kernel that serves
// (dtype, head_dim, has_window); throws, naming the build variable, when it was not built.
template <class Element, int kHeadDim, class Fn>
void dispatch_window(bool has_window, Fn&& fn) {
  if (has_window) {
    fn.template operator()<Element, kHeadDim, true>();
  } else {
    fn.template operator()<Element, kHeadDim, false>();
  }
}

template <class Element, class Fn>
void dispatch_hdim(int head_dim, bool has_window, Fn&& fn) {
  int const bucket = head_dim_bucket(head_dim);
  switch (bucket) {
#ifdef FLASH_ATTN_HDIM_32
    case 32: return dispatch_window<Element, 32>(has_window, fn);
#endif
#ifdef FLASH_ATTN_HDIM_64
    case 64: return dispatch_window<Element, 64>(has_window, fn);
#endif
#ifdef FLASH_ATTN_HDIM_96
    case 96: return dispatch_window<Element, 96>(has_window, fn);
#endif
#ifdef FLASH_ATTN_HDIM_128
    case 128: return dispatch_window<Element, 128>(has_window, fn);
#endif
#ifdef FLASH_ATTN_HDIM_192
    case 192: return dispatch_window<Element, 192>(has_window, fn);
#endif
#ifdef FLASH_ATTN_HDIM_256
    case 256: return dispatch_window<Element, 256>(has_window, fn);
#endif
    default: break;
  }
  throw_not_built("FLASH_ATTN_HEADDIMS", std::to_string(bucket), "head dim " + std::to_string(bucket));
}

template <class Fn>
void dispatch_kernel(DType dtype, int head_dim, bool has_window, Fn&& fn) {
  if (dtype == DType::kFloat16) {
#ifdef FLASH_ATTN_DTYPE_FP16
    return dispatch_hdim<cutlass::half_t>(head_dim, has_window, fn);
#else
    throw_not_built("FLASH_ATTN_DTYPES", "fp16", "fp16");
#endif
  } else {
#ifdef FLASH_ATTN_DTYPE_BF16
    return dispatch_hdim<cutlass::bfloat16_t>(head_dim, has_window, fn);
#else
    throw_not_built("FLASH_ATTN_DTYPES", "bf16", "bf16");
#endif
  }
}

inline void run_fwd(FwdParams const& params, DType dtype, cudaStream_t stream) {
  dispatch_kernel(dtype, params.head_dim, params.has_window, [&]<class Element, int kHeadDim, bool kHasWindow>() {
    sm80::run_fwd<Element, kHeadDim, kHasWindow>(params, stream);
  });
}

// The split-KV forward masks windows at run time: one kernel per (dtype, head dim).
inline void run_fwd_split(FwdParams const& params, DType dtype, cudaStream_t stream) {
  dispatch_kernel(dtype, params.head_dim, /*has_window=*/false, [&]<class Element, int kHeadDim, bool>() {
    sm80::run_fwd_split<Element, kHeadDim>(params, stream);
  });
}

inline void run_bwd(BwdParams const& params, DType dtype, cudaStream_t stream) {
  dispatch_kernel(dtype, params.head_dim, params.has_window, [&]<class Element, int kHeadDim, bool kHasWindow>() {
    sm80::run_bwd<Element, kHeadDim, kHasWindow>(params, stream);
  });
}

}  // namespace flash
