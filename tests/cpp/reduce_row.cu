// Host-side check of core/reduce.h's reduce_row: a row reduced in kChains independent chains gives the serial
// reduction's max exactly and its sum to within float rounding, for every column count (fewer columns than chains,
// odd and other non-power-of-two chain counts, the wgmma fragments' 32 and 64). Built and run by tests/test_reduce_row.py.
#include <cmath>
#include <cstdio>
#include <cute/tensor.hpp>

#include "flash/core/reduce.h"

template <int kCols, int kChains>
int check(unsigned& seed) {
  using namespace cute;
  auto t = make_tensor<float>(Shape<_2, Int<kCols>>{});
  for (int trial = 0; trial < 20; ++trial) {
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < kCols; ++c) {
        seed = seed * 1664525u + 1013904223u;
        t(r, c) = float(int(seed >> 8) % 20001 - 10000) / 97.f;
      }
      if (trial % 5 == 0) { t(r, trial % kCols) = -INFINITY; }  // masked scores
    }
    for (int r = 0; r < 2; ++r) {
      float max_serial = -INFINITY, sum_serial = 0.f, sum_abs = 0.f;
      for (int c = 0; c < kCols; ++c) {
        max_serial = std::fmax(max_serial, t(r, c));
        if (std::isfinite(t(r, c))) {
          sum_serial += t(r, c);
          sum_abs += std::fabs(t(r, c));
        }
      }
      float const max_chains = flash::reduce_row<kChains>(t, r, flash::MaxOp{});
      if (max_chains != max_serial) {
        std::printf("cols %d chains %d: max %g, serial %g\n", kCols, kChains, max_chains, max_serial);
        return 1;
      }
      // The sum over finite entries (a -inf entry makes both -inf, which compare equal).
      auto finite = make_tensor<float>(Shape<_2, Int<kCols>>{});
      for (int c = 0; c < kCols; ++c) { finite(r, c) = std::isfinite(t(r, c)) ? t(r, c) : 0.f; }
      float const sum_chains = flash::reduce_row<kChains>(finite, r, flash::SumOp{});
      if (std::fabs(sum_chains - sum_serial) > 1e-6f * kCols * sum_abs) {
        std::printf("cols %d chains %d: sum %g, serial %g\n", kCols, kChains, sum_chains, sum_serial);
        return 1;
      }
    }
  }
  return 0;
}

template <int kChains>
int check_all(unsigned& seed) {
  return check<1, kChains>(seed) + check<2, kChains>(seed) + check<3, kChains>(seed) + check<5, kChains>(seed) +
         check<7, kChains>(seed) + check<8, kChains>(seed) + check<9, kChains>(seed) + check<16, kChains>(seed) +
         check<32, kChains>(seed) + check<64, kChains>(seed);
}

int main() {
  unsigned seed = 12345u;
  int const failures = check_all<1>(seed) + check_all<2>(seed) + check_all<3>(seed) + check_all<4>(seed) +
                       check_all<5>(seed) + check_all<6>(seed) + check_all<7>(seed) + check_all<8>(seed);
  if (failures == 0) { std::printf("reduce_row: ok\n"); }
  return failures == 0 ? 0 : 1;
}
