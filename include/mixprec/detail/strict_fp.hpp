// Strict floating-point regions: code between MIXPREC_STRICT_FP_BEGIN and MIXPREC_STRICT_FP_END is
// compiled without contracting a*b+c into a fused multiply-add, whatever the including translation
// unit's flags, so reference arithmetic that must match another implementation bit for bit (ggml's
// quantizers, kernels/ref/ggml_ref.hpp) gives the same bytes in a user's -march=native build as in mixprec's
// own. GCC contracts by default in its GNU modes (-std=gnu++20, -ffp-contract=fast) as soon as FMA is
// enabled (-march=native, -mfma).
// - GCC: the region's functions get optimize("fp-contract=off") (#pragma GCC optimize). A function
//   inlined into a caller is optimised with the caller's options, so the region's entry points that
//   user code calls are MIXPREC_STRICT_FP_ENTRY (noinline): everything below them is inlined only
//   into region code.
// - Clang: #pragma clang fp contract(off), which marks the operations themselves and so survives
//   inlining; honoured under -ffp-contract=on (Clang's default) and fast-honor-pragmas. Clang's
//   -ffp-contract=fast ignores every pragma by design: not supported for byte equality.
// Regions hold function definitions only and are opened at namespace scope, never around #includes.
#pragma once

#if defined(__clang__)
#define MIXPREC_STRICT_FP_BEGIN _Pragma("float_control(push)") _Pragma("clang fp contract(off)")
#define MIXPREC_STRICT_FP_END _Pragma("float_control(pop)")
#define MIXPREC_STRICT_FP_ENTRY
#elif defined(__GNUC__)
#define MIXPREC_STRICT_FP_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=off\")")
#define MIXPREC_STRICT_FP_END _Pragma("GCC pop_options")
#define MIXPREC_STRICT_FP_ENTRY [[gnu::noinline]]
#else
#define MIXPREC_STRICT_FP_BEGIN
#define MIXPREC_STRICT_FP_END
#define MIXPREC_STRICT_FP_ENTRY
#endif
