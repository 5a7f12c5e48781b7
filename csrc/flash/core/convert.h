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

// The same into dst's registers (a fragment of To with as many elements). An element-wise copy of convert_fragment's
// result into dst would move 16-bit halves one by one: the compiler splits and repacks every register pair
// (about three extra instructions per pair of scores in the sm90 forward's softmax).
template <class SrcEngine, class SrcLayout, class DstEngine, class DstLayout>
CUTE_DEVICE void convert_fragment_into(cute::Tensor<SrcEngine, SrcLayout> const& src,
                                       cute::Tensor<DstEngine, DstLayout>& dst) {
  using From = typename SrcEngine::value_type;
  using To = typename DstEngine::value_type;
  constexpr int kNumel = decltype(cute::size(src))::value;
  static_assert(decltype(cute::size(dst))::value == kNumel && decltype(cute::cosize(src.layout()))::value == kNumel &&
                    decltype(cute::cosize(dst.layout()))::value == kNumel,
                "compact fragments of the same size: storage order is then the only order that matters");
  cutlass::NumericArrayConverter<To, From, kNumel> converter;
  *reinterpret_cast<cutlass::Array<To, kNumel>*>(dst.data()) =
      converter(*reinterpret_cast<cutlass::Array<From, kNumel> const*>(src.data()));
}

}  // namespace flash
