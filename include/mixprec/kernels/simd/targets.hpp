// The SIMD kernels, compiled once per target and chosen at run time: this header is where the rule of
// detail/simd/target.hpp is applied.
//
// The kernel source (the *.inl files beside this header) is written once, as templates on an
// architecture tag A over an xsimd-style API: fbatch<A> / ibatch<A> / dbatch<A> and the operations
// namespace sx (min, max, fma, nearbyint, to_int, hadd...). It is included here once per target, each
// time inside that target's namespace (Highway's foreach_target, by hand):
//   detail::isa_baseline  xsimd's batches for xsimd::default_arch (the translation unit's own flags)
//   detail::isa_avx2      x86 batches inside an AVX2+FMA+F16C region      (x86-64, GCC >= 10 or Clang)
//   detail::isa_avx512    x86 batches inside an AVX-512 F/BW/DQ/VL region (idem; VNNI per function)
// Each namespace ends with kernels<A>, the target's kernel set; with_isa() maps a run-time level
// (kernels/isa.hpp) to it. Everything the kernels call outside their namespace (std, Eigen, ref::,
// quantized_tensor) is defined before any region, so it is compiled for the baseline only.
//
// Adding a kernel: write it in an .inl (listed in sources.inl) as a template on A (no non-template functions: a baseline
// namespace may be compiled with different flags in different translation units), give kernels<A> an
// entry, and test it on every level (tests iterate supported_isas() under isa_scope).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include "mixprec/types.hpp"
#include "mixprec/detail/simd.hpp"
#include "mixprec/detail/simd/target.hpp"
#include "mixprec/detail/simd/x86_batch.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/kernels/gemv_options.hpp"
#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"
#include "mixprec/kernels/ref/ggml_dot_ref.hpp"
#include "mixprec/kernels/ref/gemv_ref.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"
#include "mixprec/sensitivity/error_stats.hpp"


// MIXPREC_COMPILED_KERNELS (opt-in; CMake's mixprec::compiled_kernels sets it): each target's kernel set
// is declared an explicit instantiation here and instantiated once, in src/compiled_kernels.cpp (which
// defines MIXPREC_COMPILED_KERNELS_DEFINE), instead of in every translation unit that quantizes or
// multiplies. Every translation unit of such a program must be compiled with the same -m flags as that
// one, since the baseline set is xsimd::default_arch of the flags.
#if defined(MIXPREC_COMPILED_KERNELS_DEFINE)
#define MIXPREC_KERNELS_INSTANTIATE_ template
#elif defined(MIXPREC_COMPILED_KERNELS)
#define MIXPREC_KERNELS_INSTANTIATE_ extern template
#endif

namespace mixprec::detail::isa_baseline {
template <class A>
using fbatch = xsimd::batch<float, A>;
template <class A>
using ibatch = xsimd::batch<std::int32_t, A>;
template <class A>
using dbatch = xsimd::batch<double, A>;
template <class A>
using ibatch_bool = xsimd::batch_bool<std::int32_t, A>;
namespace sx = ::xsimd;
#define MIXPREC_SIMD_NS isa_baseline
#define MIXPREC_KERNELS_ARCH_ xsimd::default_arch
#include "mixprec/kernels/simd/sources.inl"
#undef MIXPREC_KERNELS_ARCH_
#undef MIXPREC_SIMD_NS
}  // namespace mixprec::detail::isa_baseline

#if MIXPREC_X86_TARGETS
#define MIXPREC_X86_TARGET_PRELUDE_                  \
  template <class A>                                 \
  using fbatch = x86::batch<float, A>;               \
  template <class A>                                 \
  using ibatch = x86::batch<std::int32_t, A>;        \
  template <class A>                                 \
  using dbatch = x86::batch<double, A>;              \
  template <class A>                                 \
  using ibatch_bool = x86::batch_bool<std::int32_t, A>; \
  namespace sx = ::mixprec::detail::x86;

MIXPREC_TARGET_AVX2_BEGIN
namespace mixprec::detail::isa_avx2 {
MIXPREC_X86_TARGET_PRELUDE_
#define MIXPREC_SIMD_NS isa_avx2
#define MIXPREC_KERNELS_ARCH_ x86::avx2
#include "mixprec/kernels/simd/sources.inl"
#undef MIXPREC_KERNELS_ARCH_
#undef MIXPREC_SIMD_NS
}  // namespace mixprec::detail::isa_avx2
MIXPREC_TARGET_END

MIXPREC_TARGET_AVX512_BEGIN
namespace mixprec::detail::isa_avx512 {
MIXPREC_X86_TARGET_PRELUDE_
#define MIXPREC_SIMD_NS isa_avx512
#define MIXPREC_KERNELS_ARCH_ x86::avx512
#include "mixprec/kernels/simd/sources.inl"
#undef MIXPREC_KERNELS_ARCH_
#undef MIXPREC_SIMD_NS
}  // namespace mixprec::detail::isa_avx512
MIXPREC_TARGET_END
#undef MIXPREC_X86_TARGET_PRELUDE_
#endif
#undef MIXPREC_KERNELS_INSTANTIATE_

namespace mixprec::detail {

// Calls fn.template operator()<K>() with K the kernel set of level i (avx512_vnni shares avx512's set;
// the caller passes the VNNI choice on to the INT8-activation products).
template <class Fn>
decltype(auto) with_isa(isa i, Fn&& fn) {
#if MIXPREC_X86_TARGETS
  if (i == isa::avx512 || i == isa::avx512_vnni) return fn.template operator()<isa_avx512::kernels<x86::avx512>>();
  if (i == isa::avx2) return fn.template operator()<isa_avx2::kernels<x86::avx2>>();
#else
  (void)i;
#endif
  return fn.template operator()<isa_baseline::kernels<xsimd::default_arch>>();
}

}  // namespace mixprec::detail
