// Static switches from runtime (dtype, head dim, causal) to the compiled kernel instantiations.
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
template <class Element, int kHeadDim, bool kIsCausal>
void run_fwd(FwdParams const& params, cudaStream_t stream);
}

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

template <class Element, int kHeadDim>
void run_fwd_causal_switch(FwdParams const& params, cudaStream_t stream) {
  if (params.is_causal) {
    sm80::run_fwd<Element, kHeadDim, true>(params, stream);
  } else {
    sm80::run_fwd<Element, kHeadDim, false>(params, stream);
  }
}

template <class Element>
void run_fwd_hdim_switch(FwdParams const& params, cudaStream_t stream) {
  int const bucket = head_dim_bucket(params.head_dim);
  switch (bucket) {
#ifdef FLASH_ATTN_HDIM_32
    case 32: return run_fwd_causal_switch<Element, 32>(params, stream);
#endif
#ifdef FLASH_ATTN_HDIM_64
    case 64: return run_fwd_causal_switch<Element, 64>(params, stream);
#endif
#ifdef FLASH_ATTN_HDIM_96
    case 96: return run_fwd_causal_switch<Element, 96>(params, stream);
#endif
#ifdef FLASH_ATTN_HDIM_128
    case 128: return run_fwd_causal_switch<Element, 128>(params, stream);
#endif
#ifdef FLASH_ATTN_HDIM_192
    case 192: return run_fwd_causal_switch<Element, 192>(params, stream);
#endif
#ifdef FLASH_ATTN_HDIM_256
    case 256: return run_fwd_causal_switch<Element, 256>(params, stream);
#endif
    default: break;
  }
  throw_not_built("FLASH_ATTN_HEADDIMS", std::to_string(bucket), "head dim " + std::to_string(bucket));
}

inline void run_fwd(FwdParams const& params, DType dtype, cudaStream_t stream) {
  if (dtype == DType::kFloat16) {
#ifdef FLASH_ATTN_DTYPE_FP16
    return run_fwd_hdim_switch<cutlass::half_t>(params, stream);
#else
    throw_not_built("FLASH_ATTN_DTYPES", "fp16", "fp16");
#endif
  } else {
#ifdef FLASH_ATTN_DTYPE_BF16
    return run_fwd_hdim_switch<cutlass::bfloat16_t>(params, stream);
#else
    throw_not_built("FLASH_ATTN_DTYPES", "bf16", "bf16");
#endif
  }
}

}  // namespace flash
