// Compile-time facts about SIMD architecture tags (xsimd's, and the x86 region tags of
// detail/simd/x86_batch.hpp, which derive from them). Baseline code: no intrinsics here.
#pragma once

#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define MIXPREC_X86 1
#else
#define MIXPREC_X86 0
#endif

namespace mixprec::detail {

template <class A>
inline constexpr bool is_avx512 = MIXPREC_X86 && std::is_base_of_v<xsimd::avx512f, A>;
template <class A>
inline constexpr bool is_avx2 = MIXPREC_X86 && std::is_base_of_v<xsimd::avx2, A>;
template <class A>
inline constexpr bool is_sse41 = MIXPREC_X86 && std::is_base_of_v<xsimd::sse4_1, A>;
template <class A>
inline constexpr bool is_sse2 = MIXPREC_X86 && std::is_base_of_v<xsimd::sse2, A>;

// Base of architecture tags whose code may use F16C whatever the translation unit's flags (the
// AVX2 region's tag; AVX-512 implies it).
struct f16c_tag {};

// Whether code for A may use F16C (vcvtph2ps): with AVX-512, in the AVX2 region, and for xsimd's own
// AVX2 tag when the translation unit is compiled with -mf16c.
template <class A>
inline constexpr bool has_f16c = is_avx512<A> || std::is_base_of_v<f16c_tag, A>
#if defined(__F16C__)
                                 || is_avx2<A>
#endif
    ;

}  // namespace mixprec::detail
