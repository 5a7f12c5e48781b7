// Element-type conversion of a register fragment (fp32 accumulators to the 16-bit types the next MMA or the
// store takes), vectorised by CUTLASS. Layout-preserving, so any view of the source applies to the result.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_conversion.h>

namespace flash {

template <class To, class Engine, class Layout>
CUTE_DEVICE auto convert_fragment(cute::Tensor<Engine, Layout> const& src) {
  using From = typename Engine::value_type;
  constexpr int kNumel = decltype(cute::size(src))::value;
  cutlass::NumericArrayConverter<To, From, kNumel> converter;
  cute::Tensor dst = cute::make_tensor<To>(src.layout());
  *reinterpret_cast<cutlass::Array<To, kNumel>*>(dst.data()) =
      converter(*reinterpret_cast<cutlass::Array<From, kNumel> const*>(src.data()));
  return dst;
}

}  // namespace flash
