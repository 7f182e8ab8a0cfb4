// Target regions: code compiled for a higher ISA than the translation unit's, safe to link.
//
// The rule (Highway's, simdjson's): code for an ISA above the baseline is compiled only between
// MIXPREC_TARGET_<ISA>_BEGIN and MIXPREC_TARGET_END, and only inside a namespace named after that ISA
// (detail::isa_avx2, detail::isa_avx512). The region gives its functions the ISA as a target attribute
// (GCC: #pragma GCC target; Clang: #pragma clang attribute), so
// - nothing defined outside a region (the standard library, Eigen, mixprec's scalar code) is ever
//   compiled for the higher ISA: the linker can only ever pick baseline copies of shared inline code;
// - everything defined inside one has a name no other region or translation unit shares, so no
//   higher-ISA body can replace a baseline one;
// - no source file needs -m flags, so every translation unit of a program agrees on Eigen's alignment
//   and layout.
// Region code runs only after a CPU check (kernels/isa.hpp) for exactly the features the region names. Nothing but kernel source (the .inl files
// of kernels/simd/) is #included inside a region: a header first read there would compile its inline
// functions for the region's ISA. Regions also pin fp-contract=off (GCC's default for C++ is to fuse
// a*b+c once FMA is enabled, which would break bit-equality with the scalar references); Clang honours
// that unless the user passes -ffp-contract=fast, which overrides every pragma.
#pragma once

#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__)) && !defined(MIXPREC_NO_DISPATCH) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define MIXPREC_X86_TARGETS 1
#else
#define MIXPREC_X86_TARGETS 0
#endif

#if MIXPREC_X86_TARGETS
#include <immintrin.h>  // every intrinsic is declared whatever the flags; usable inside a matching region

#define MIXPREC_ISA_AVX2_FEATURES "avx2,fma,f16c"
#define MIXPREC_ISA_AVX512_FEATURES "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#define MIXPREC_ISA_AVX512_VNNI_FEATURES MIXPREC_ISA_AVX512_FEATURES ",avx512vnni"

#if defined(__clang__)
#define MIXPREC_TARGET_BEGIN_(features)                                                       \
  MIXPREC_PRAGMA_(clang attribute push(__attribute__((target(features))), apply_to = function)) \
  _Pragma("float_control(push)") _Pragma("clang fp contract(off)")
#define MIXPREC_TARGET_END _Pragma("float_control(pop)") _Pragma("clang attribute pop")
#else
// GCC 12 reports false (maybe-)uninitialized warnings inside its own AVX-512 intrinsics (the
// _mm512_undefined_* idiom) once they are inlined into region code: silenced for the region only.
#define MIXPREC_TARGET_BEGIN_(features)                                                                \
  _Pragma("GCC push_options") MIXPREC_PRAGMA_(GCC target(features)) _Pragma("GCC optimize(\"fp-contract=off\")") \
      _Pragma("GCC diagnostic push") \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define MIXPREC_TARGET_END _Pragma("GCC diagnostic pop") _Pragma("GCC pop_options")
#endif
#define MIXPREC_PRAGMA_(x) _Pragma(#x)

#define MIXPREC_TARGET_AVX2_BEGIN MIXPREC_TARGET_BEGIN_(MIXPREC_ISA_AVX2_FEATURES)
#define MIXPREC_TARGET_AVX512_BEGIN MIXPREC_TARGET_BEGIN_(MIXPREC_ISA_AVX512_FEATURES)
// For one function inside an AVX-512 region that also uses VNNI (called only after a CPU check).
#define MIXPREC_TARGET_VNNI __attribute__((target(MIXPREC_ISA_AVX512_VNNI_FEATURES)))
#endif
