// SIMD batches for the AVX2 and AVX-512 regions, with the subset of xsimd 8.1's API the kernels use.
//
// Why not xsimd's own batch<float, avx2>: xsimd 8.1 defines an architecture's registers and kernels
// only when the translation unit is compiled with that ISA's -m flags, and -m flags on a file that also
// compiles Eigen or std code are what this design rules out (detail/simd/target.hpp). These types are
// defined inside target regions instead, under tags that derive from xsimd's architecture tags, so the
// kernels read the same (fbatch<A>, min, max, to_int...) and `is_avx2<A>` / `A::alignment()` hold.
// Semantics follow xsimd's x86 kernels: min/max return the second operand when either is NaN,
// nearbyint rounds half to even, to_int truncates, >> on int32 lanes is arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "mixprec/detail/simd.hpp"
#include "mixprec/detail/simd/target.hpp"

#if MIXPREC_X86_TARGETS

namespace mixprec::detail::x86 {

// AVX2 + FMA + F16C.
struct avx2 : xsimd::fma3<xsimd::avx2>, f16c_tag {
  static constexpr const char* name() noexcept { return "avx2"; }
};
// AVX-512 F/BW/DQ/VL (plus everything in avx2).
struct avx512 : xsimd::avx512bw {
  static constexpr const char* name() noexcept { return "avx512"; }
};

template <class T, class A>
struct batch;
template <class T, class A>
struct batch_bool;

}  // namespace mixprec::detail::x86

// The members every batch has: its register, conversions to and from it, its lane count.
#define MIXPREC_X86_BATCH_MEMBERS_(T, R, N)                                 \
  using value_type = T;                                                     \
  using register_type = R;                                                  \
  static constexpr std::size_t size = N;                                    \
  R v;                                                                      \
  batch() = default;                                                        \
  batch(R r) noexcept : v(r) {}                                             \
  operator R() const noexcept { return v; }

MIXPREC_TARGET_AVX2_BEGIN
namespace mixprec::detail::x86 {

template <>
struct batch_bool<float, avx2> {
  __m256 v;
  batch_bool() = default;
  batch_bool(__m256 m) noexcept : v(m) {}
  operator __m256() const noexcept { return v; }
};
template <>
struct batch_bool<std::int32_t, avx2> {
  __m256i v;
  batch_bool() = default;
  batch_bool(__m256i m) noexcept : v(m) {}
  operator __m256i() const noexcept { return v; }
};

template <>
struct batch<float, avx2> {
  MIXPREC_X86_BATCH_MEMBERS_(float, __m256, 8)
  batch(float f) noexcept : v(_mm256_set1_ps(f)) {}
  static batch load_unaligned(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static batch load_aligned(const float* p) noexcept { return _mm256_load_ps(p); }
  void store_unaligned(float* p) const noexcept { _mm256_storeu_ps(p, v); }
  void store_aligned(float* p) const noexcept { _mm256_store_ps(p, v); }
};
template <>
struct batch<std::int32_t, avx2> {
  MIXPREC_X86_BATCH_MEMBERS_(std::int32_t, __m256i, 8)
  batch(std::int32_t i) noexcept : v(_mm256_set1_epi32(i)) {}
  static batch load_unaligned(const std::int32_t* p) noexcept {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static batch load_aligned(const std::int32_t* p) noexcept {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  }
  void store_unaligned(std::int32_t* p) const noexcept { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  void store_aligned(std::int32_t* p) const noexcept { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
};
template <>
struct batch<double, avx2> {
  MIXPREC_X86_BATCH_MEMBERS_(double, __m256d, 4)
  batch(double d) noexcept : v(_mm256_set1_pd(d)) {}
  void store_aligned(double* p) const noexcept { _mm256_store_pd(p, v); }
};

using f8 = batch<float, avx2>;
using i8 = batch<std::int32_t, avx2>;
using d4 = batch<double, avx2>;
using f8b = batch_bool<float, avx2>;
using i8b = batch_bool<std::int32_t, avx2>;

inline f8 operator+(f8 a, f8 b) noexcept { return _mm256_add_ps(a, b); }
inline f8 operator-(f8 a, f8 b) noexcept { return _mm256_sub_ps(a, b); }
inline f8 operator*(f8 a, f8 b) noexcept { return _mm256_mul_ps(a, b); }
inline f8 min(f8 a, f8 b) noexcept { return _mm256_min_ps(a, b); }
inline f8 max(f8 a, f8 b) noexcept { return _mm256_max_ps(a, b); }
inline f8 abs(f8 a) noexcept { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline f8 fma(f8 a, f8 b, f8 c) noexcept { return _mm256_fmadd_ps(a, b, c); }
inline f8 nearbyint(f8 a) noexcept { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline i8 to_int(f8 a) noexcept { return _mm256_cvttps_epi32(a); }
inline f8 to_float(i8 a) noexcept { return _mm256_cvtepi32_ps(a); }
inline f8b isfinite(f8 a) noexcept { return _mm256_cmp_ps(_mm256_sub_ps(a, a), _mm256_setzero_ps(), _CMP_EQ_OQ); }
inline f8b operator&(f8b a, f8b b) noexcept { return _mm256_and_ps(a, b); }
inline bool all(f8b a) noexcept { return _mm256_movemask_ps(a) == 0xFF; }
inline f8 select(f8b c, f8 a, f8 b) noexcept { return _mm256_blendv_ps(b, a, c); }
inline f8b bool_cast(i8b c) noexcept { return _mm256_castsi256_ps(c); }
inline float hadd(f8 a) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55)));
}

inline i8 operator+(i8 a, i8 b) noexcept { return _mm256_add_epi32(a, b); }
inline i8 operator-(i8 a, i8 b) noexcept { return _mm256_sub_epi32(a, b); }
inline i8 operator*(i8 a, i8 b) noexcept { return _mm256_mullo_epi32(a, b); }
inline i8 operator&(i8 a, i8 b) noexcept { return _mm256_and_si256(a, b); }
inline i8 operator|(i8 a, i8 b) noexcept { return _mm256_or_si256(a, b); }
inline i8 operator<<(i8 a, int n) noexcept { return _mm256_slli_epi32(a, n); }
inline i8 operator>>(i8 a, int n) noexcept { return _mm256_srai_epi32(a, n); }
inline i8 max(i8 a, i8 b) noexcept { return _mm256_max_epi32(a, b); }
inline i8b operator>(i8 a, i8 b) noexcept { return _mm256_cmpgt_epi32(a, b); }
inline i8b operator<(i8 a, i8 b) noexcept { return _mm256_cmpgt_epi32(b, a); }

inline d4 operator+(d4 a, d4 b) noexcept { return _mm256_add_pd(a, b); }
inline d4 operator-(d4 a, d4 b) noexcept { return _mm256_sub_pd(a, b); }
inline d4 max(d4 a, d4 b) noexcept { return _mm256_max_pd(a, b); }
inline d4 abs(d4 a) noexcept { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
inline d4 fma(d4 a, d4 b, d4 c) noexcept { return _mm256_fmadd_pd(a, b, c); }
inline double hadd(d4 a) noexcept {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

template <class To>
inline To bitwise_cast(f8 a) noexcept {
  static_assert(std::is_same_v<To, i8>);
  return _mm256_castps_si256(a);
}
template <class To>
inline To bitwise_cast(i8 a) noexcept {
  static_assert(std::is_same_v<To, f8>);
  return _mm256_castsi256_ps(a);
}

}  // namespace mixprec::detail::x86
MIXPREC_TARGET_END

MIXPREC_TARGET_AVX512_BEGIN
namespace mixprec::detail::x86 {

template <>
struct batch_bool<float, avx512> {
  __mmask16 v;
  batch_bool() = default;
  batch_bool(__mmask16 m) noexcept : v(m) {}
  operator __mmask16() const noexcept { return v; }
};
template <>
struct batch_bool<std::int32_t, avx512> {
  __mmask16 v;
  batch_bool() = default;
  batch_bool(__mmask16 m) noexcept : v(m) {}
  operator __mmask16() const noexcept { return v; }
};

template <>
struct batch<float, avx512> {
  MIXPREC_X86_BATCH_MEMBERS_(float, __m512, 16)
  batch(float f) noexcept : v(_mm512_set1_ps(f)) {}
  static batch load_unaligned(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static batch load_aligned(const float* p) noexcept { return _mm512_load_ps(p); }
  void store_unaligned(float* p) const noexcept { _mm512_storeu_ps(p, v); }
  void store_aligned(float* p) const noexcept { _mm512_store_ps(p, v); }
};
template <>
struct batch<std::int32_t, avx512> {
  MIXPREC_X86_BATCH_MEMBERS_(std::int32_t, __m512i, 16)
  batch(std::int32_t i) noexcept : v(_mm512_set1_epi32(i)) {}
  static batch load_unaligned(const std::int32_t* p) noexcept { return _mm512_loadu_si512(p); }
  static batch load_aligned(const std::int32_t* p) noexcept { return _mm512_load_si512(p); }
  void store_unaligned(std::int32_t* p) const noexcept { _mm512_storeu_si512(p, v); }
  void store_aligned(std::int32_t* p) const noexcept { _mm512_store_si512(p, v); }
};
template <>
struct batch<double, avx512> {
  MIXPREC_X86_BATCH_MEMBERS_(double, __m512d, 8)
  batch(double d) noexcept : v(_mm512_set1_pd(d)) {}
  void store_aligned(double* p) const noexcept { _mm512_store_pd(p, v); }
};

using f16 = batch<float, avx512>;
using i16 = batch<std::int32_t, avx512>;
using d8 = batch<double, avx512>;
using f16b = batch_bool<float, avx512>;
using i16b = batch_bool<std::int32_t, avx512>;

inline f16 operator+(f16 a, f16 b) noexcept { return _mm512_add_ps(a, b); }
inline f16 operator-(f16 a, f16 b) noexcept { return _mm512_sub_ps(a, b); }
inline f16 operator*(f16 a, f16 b) noexcept { return _mm512_mul_ps(a, b); }
inline f16 min(f16 a, f16 b) noexcept { return _mm512_min_ps(a, b); }
inline f16 max(f16 a, f16 b) noexcept { return _mm512_max_ps(a, b); }
inline f16 abs(f16 a) noexcept { return _mm512_abs_ps(a); }
inline f16 fma(f16 a, f16 b, f16 c) noexcept { return _mm512_fmadd_ps(a, b, c); }
inline f16 nearbyint(f16 a) noexcept { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline i16 to_int(f16 a) noexcept { return _mm512_cvttps_epi32(a); }
inline f16 to_float(i16 a) noexcept { return _mm512_cvtepi32_ps(a); }
inline f16b isfinite(f16 a) noexcept {
  return _mm512_cmp_ps_mask(_mm512_sub_ps(a, a), _mm512_setzero_ps(), _CMP_EQ_OQ);
}
inline f16b operator&(f16b a, f16b b) noexcept { return static_cast<__mmask16>(a.v & b.v); }
inline bool all(f16b a) noexcept { return a.v == 0xFFFF; }
inline f16 select(f16b c, f16 a, f16 b) noexcept { return _mm512_mask_blend_ps(c, b, a); }
inline f16b bool_cast(i16b c) noexcept { return c.v; }
inline float hadd(f16 a) noexcept {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55)));
}

inline i16 operator+(i16 a, i16 b) noexcept { return _mm512_add_epi32(a, b); }
inline i16 operator-(i16 a, i16 b) noexcept { return _mm512_sub_epi32(a, b); }
inline i16 operator*(i16 a, i16 b) noexcept { return _mm512_mullo_epi32(a, b); }
inline i16 operator&(i16 a, i16 b) noexcept { return _mm512_and_si512(a, b); }
inline i16 operator|(i16 a, i16 b) noexcept { return _mm512_or_si512(a, b); }
// Count in a register: GCC's immediate forms are macros that need a constant at -O0 (a Debug build).
inline i16 operator<<(i16 a, int n) noexcept { return _mm512_sll_epi32(a, _mm_cvtsi32_si128(n)); }
inline i16 operator>>(i16 a, int n) noexcept { return _mm512_sra_epi32(a, _mm_cvtsi32_si128(n)); }
inline i16 max(i16 a, i16 b) noexcept { return _mm512_max_epi32(a, b); }
inline i16b operator>(i16 a, i16 b) noexcept { return _mm512_cmpgt_epi32_mask(a, b); }
inline i16b operator<(i16 a, i16 b) noexcept { return _mm512_cmplt_epi32_mask(a, b); }

inline d8 operator+(d8 a, d8 b) noexcept { return _mm512_add_pd(a, b); }
inline d8 operator-(d8 a, d8 b) noexcept { return _mm512_sub_pd(a, b); }
inline d8 max(d8 a, d8 b) noexcept { return _mm512_max_pd(a, b); }
inline d8 abs(d8 a) noexcept { return _mm512_abs_pd(a); }
inline d8 fma(d8 a, d8 b, d8 c) noexcept { return _mm512_fmadd_pd(a, b, c); }
inline double hadd(d8 a) noexcept {
  const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

template <class To>
inline To bitwise_cast(f16 a) noexcept {
  static_assert(std::is_same_v<To, i16>);
  return _mm512_castps_si512(a);
}
template <class To>
inline To bitwise_cast(i16 a) noexcept {
  static_assert(std::is_same_v<To, f16>);
  return _mm512_castsi512_ps(a);
}

}  // namespace mixprec::detail::x86
MIXPREC_TARGET_END

#undef MIXPREC_X86_BATCH_MEMBERS_

#endif  // MIXPREC_X86_TARGETS
