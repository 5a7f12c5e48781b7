// Host-side error reporting shared by every launcher: CUDA errors and resource limits become
// std::runtime_error, which the binding surfaces to Python as RuntimeError.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace flash {

inline void check_cuda(cudaError_t status, char const* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
  }
}

// Kernels with large tiles need more than the default 48 KB of shared memory per block.
inline void check_smem_fits(int bytes, char const* what) {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  int max_optin = 0;
  check_cuda(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "cudaDeviceGetAttribute");
  if (bytes > max_optin) {
    throw std::runtime_error(std::string(what) + " needs " + std::to_string(bytes) +
                             " bytes of shared memory per block, but this GPU allows " +
                             std::to_string(max_optin) + "; use a smaller head dim on this GPU");
  }
}

#ifdef __CUDACC__
// Launches a kernel that takes its parameter block by value, opting in to more than 48 KB of dynamic
// shared memory when it needs it.
template <int kSmemBytes, class Params>
void launch_with_smem(void (*kernel)(Params), dim3 grid, int threads, Params const& params, cudaStream_t stream,
                      char const* what) {
  if constexpr (kSmemBytes > 48 * 1024) {
    check_smem_fits(kSmemBytes, what);
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes),
               "cudaFuncSetAttribute (kernel shared memory)");
  }
  kernel<<<grid, threads, kSmemBytes, stream>>>(params);
  check_cuda(cudaGetLastError(), what);
}
#endif

}  // namespace flash
