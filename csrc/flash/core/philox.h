// Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11): four 32-bit words from a 128-bit counter and a 64-bit key, with no state between calls, so the
// forward and backward passes can regenerate the same numbers for the same coordinates.
#pragma once

#include <cstdint>

#include <cutlass/cutlass.h>

namespace flash {

struct PhiloxWords {
  uint32_t w[4];
};

CUTLASS_HOST_DEVICE uint32_t mul_hi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return uint32_t((uint64_t(a) * b) >> 32);
#endif
}

// Host and device: the host side lets CPU tests check how kernels map random bytes to scores.
CUTLASS_HOST_DEVICE PhiloxWords philox4x32_10(uint64_t key, uint64_t counter_lo, uint64_t counter_hi) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule increments
  uint32_t c0 = uint32_t(counter_lo), c1 = uint32_t(counter_lo >> 32);
  uint32_t c2 = uint32_t(counter_hi), c3 = uint32_t(counter_hi >> 32);
  uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  CUTLASS_PRAGMA_UNROLL
  for (int round = 0; round < 10; ++round) {
    uint32_t const hi0 = mul_hi(kMul0, c0), lo0 = kMul0 * c0;
    uint32_t const hi1 = mul_hi(kMul1, c2), lo1 = kMul1 * c2;
    uint32_t const n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 += kWeyl0, k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

}  // namespace flash
