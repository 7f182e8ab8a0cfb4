// Kernel sets: the scalar reference and the SIMD kernels of each instruction-set level behind one static
// interface, so that the quantize/dequantize drivers are written once and instantiated for any of them
// (tests compare them bit for bit). Interface: min_max, quantize_codes, dequantize_codes, pack<Bits>,
// unpack<Bits>, to_fp16, from_fp16, to_bf16, from_bf16 (kernels/ref/quantize_ref.hpp states each).
#pragma once

#include <cstdint>

#include <utility>

#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/simd/targets.hpp"
#include "mixprec/kernels/ref/reference_kernels.hpp"

namespace mixprec {

// Calls fn.template operator()<K>() with K the SIMD kernel set of level i (kernels/isa.hpp), e.g. to
// run a quantize driver on one chosen instruction set: with_kernels(isa::avx2, [&]<class K>() {...}).
template <class Fn>
decltype(auto) with_kernels(isa i, Fn&& fn) {
  return detail::with_isa(i, std::forward<Fn>(fn));
}

}  // namespace mixprec
