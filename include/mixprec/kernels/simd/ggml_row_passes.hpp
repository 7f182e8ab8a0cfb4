// The per-level code of the ggml quantizers: the row passes every type makes once per row (range
// check, F16/BF16 conversion) and make_qkx2_quants' candidate grids in AVX2 registers. Internal
// (mixprec::ggml::detail); the pieces that call it are kernels/ggml_row.hpp (the row passes) and
// kernels/ref/ggml_ref.hpp (half_bits for the block scales, the AVX2 grids); formats/ggml.hpp
// includes every ggml piece.
//
// The row passes are plain loops the compiler vectorises, compiled once per instruction-set level
// (detail/simd/target.hpp's rule: each level's copy in its own namespace inside its target region;
// written once as a macro expanded per level, not as kernels/simd/targets.hpp's templates on an arch
// tag) and chosen at run time by active_isa(), as the kernels are. Integer and exact operations only:
// every level gives the same bytes.
//   row_exceeds(x, n, limit)        some |x[i]| beyond the float whose bits are `limit`, or NaN
//   half_row(x, n, out)             fp32_to_fp16 of the row; true when a result has the top exponent
//                                   (NaN/Inf input or overflow)
//   bfloat_row(x, n, out)           fp32_to_bf16's rounding; true when the input has NaN/Inf (whose
//                                   output does not matter: the row is an error)
//   active_row_passes()             the three of the level in use
// half_bits is fp32_to_fp16 (formats/float_convert.hpp), the same operations, with its NaN test as a
// mask (a branch keeps the loop scalar) and defined here so that it inlines (GCC does not inline a
// function compiled with other options).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mixprec/detail/simd/target.hpp"
#include "mixprec/detail/strict_fp.hpp"
#include "mixprec/kernels/isa.hpp"

// A small helper the compiler leaves out of line in the block loops (a call per block scale costs
// more than the conversion): inlined always where the compiler offers it.
#if defined(__GNUC__) || defined(__clang__)
#define MIXPREC_GGML_INLINE_ [[gnu::always_inline]] inline
#else
#define MIXPREC_GGML_INLINE_ inline
#endif

#define MIXPREC_GGML_ROW_PASSES_                                                                          \
  inline std::int32_t abs_bits(float x) noexcept { return std::bit_cast<std::int32_t>(x) & 0x7fffffff; } \
  inline bool row_exceeds(const float* x, std::size_t n, std::int32_t limit) noexcept {                  \
    std::int32_t bad = 0;                                                                                 \
    for (std::size_t i = 0; i < n; ++i) bad |= -static_cast<std::int32_t>(abs_bits(x[i]) > limit);      \
    return bad != 0;                                                                                      \
  }                                                                                                       \
  MIXPREC_GGML_INLINE_ std::uint16_t half_bits(float f) noexcept {                                       \
    float base = (std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) & 0x7fffffffu) * 0x1.0p+112f) * 0x1.0p-110f; \
    const std::uint32_t w = std::bit_cast<std::uint32_t>(f);                                              \
    const std::uint32_t shl1_w = w + w;                                                                   \
    const std::uint32_t sign = w & 0x80000000u;                                                           \
    const std::uint32_t bias = std::max(shl1_w & 0xFF000000u, 0x71000000u);                               \
    base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;                                        \
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(base);                                        \
    const std::uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);                    \
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>(shl1_w > 0xFF000000u);                      \
    return static_cast<std::uint16_t>((sign >> 16) | (nan & 0x7E00u) | (~nan & nonsign));                 \
  }                                                                                                       \
  inline bool half_row(const float* x, std::size_t n, std::byte* out) noexcept {                         \
    std::uint32_t special = 0;                                                                            \
    for (std::size_t i = 0; i < n; ++i) {                                                                 \
      const std::uint16_t h = half_bits(x[i]);                                                            \
      std::memcpy(out + 2 * i, &h, 2);                                                                    \
      special |= static_cast<std::uint32_t>((h & 0x7C00u) == 0x7C00u);                                    \
    }                                                                                                     \
    return special != 0;                                                                                  \
  }                                                                                                       \
  inline bool bfloat_row(const float* x, std::size_t n, std::byte* out) noexcept {                       \
    std::int32_t bad = 0;                                                                                 \
    for (std::size_t i = 0; i < n; ++i) {                                                                 \
      const auto u = std::bit_cast<std::uint32_t>(x[i]);                                                  \
      const auto h = static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);                  \
      std::memcpy(out + 2 * i, &h, 2);                                                                    \
      bad |= -static_cast<std::int32_t>(abs_bits(x[i]) > 0x7f7fffff);                                     \
    }                                                                                                     \
    return bad != 0;                                                                                      \
  }

namespace mixprec::ggml::detail::isa_baseline {
MIXPREC_STRICT_FP_BEGIN
MIXPREC_GGML_ROW_PASSES_
MIXPREC_STRICT_FP_END
}  // namespace mixprec::ggml::detail::isa_baseline

#if MIXPREC_X86_TARGETS
MIXPREC_TARGET_AVX2_BEGIN
namespace mixprec::ggml::detail::isa_avx2 {
MIXPREC_GGML_ROW_PASSES_
// make_qkx2_quants' candidate grids, 8 side by side (ref::make_qkx2_quants_lanes states the method):
// for grid k (iscale isc[k]) over x[0..n), n <= 32, with the minimum `min`, ggml's sums in ggml's
// order, its refitted scale and minimum, and its error (absolute with UseMad). Lane for lane the
// operations of the scalar loop (this region does not contract a*b+c), so the results are its bits.
// The AVX-512 level runs it too: 16 lanes were slower, as more of them are redone after a win.
template <bool UseMad>
inline void qkx2_grids(int n, const float* x, const float* w, float min, float fnmax, const float* isc, float sum_w, float sum_x,
                       float* D, float* this_scale, float* this_min, float* error) noexcept {
  const __m256 vis = _mm256_loadu_ps(isc);
  const __m256 magic = _mm256_set1_ps(12582912.f);
  const __m256i mantissa = _mm256_set1_epi32(0x007fffff), half = _mm256_set1_epi32(0x00400000);
  const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(fnmax), sign = _mm256_set1_ps(-0.0f);
  __m256 sl = zero, sl2 = zero, sxl = zero;
  __m256 codes[32];
  for (int i = 0; i < n; ++i) {
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(vis, _mm256_set1_ps(x[i] - min)), magic);
    const __m256i l = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mantissa), half);
    const __m256 fl = _mm256_min_ps(top, _mm256_max_ps(zero, _mm256_cvtepi32_ps(l)));
    codes[i] = fl;
    const __m256 wfl = _mm256_mul_ps(_mm256_set1_ps(w[i]), fl);
    sl = _mm256_add_ps(sl, wfl);
    sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wfl, fl));
    sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wfl, _mm256_set1_ps(x[i])));
  }
  const __m256 sw = _mm256_set1_ps(sum_w), sx = _mm256_set1_ps(sum_x);
  const __m256 d = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
  __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), d);
  __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), d);
  const __m256 positive = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
  tm = _mm256_blendv_ps(tm, zero, positive);
  ts = _mm256_blendv_ps(ts, _mm256_div_ps(sxl, sl2), positive);
  __m256 e = zero;
  for (int i = 0; i < n; ++i) {
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, codes[i]), tm), _mm256_set1_ps(x[i]));
    diff = UseMad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_set1_ps(w[i]), diff));
  }
  _mm256_storeu_ps(D, d);
  _mm256_storeu_ps(this_scale, ts);
  _mm256_storeu_ps(this_min, tm);
  _mm256_storeu_ps(error, e);
}
}  // namespace mixprec::ggml::detail::isa_avx2
MIXPREC_TARGET_END

MIXPREC_TARGET_AVX512_BEGIN
namespace mixprec::ggml::detail::isa_avx512 {
MIXPREC_GGML_ROW_PASSES_
// row_exceeds in 512-bit steps with two accumulators (the compiler's loop uses 256-bit vectors and one):
// the F32 copy's only work besides the memcpy.
inline bool row_exceeds_zmm(const float* x, std::size_t n, std::int32_t limit) noexcept {
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_epi32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), magnitude));
    m1 = _mm512_max_epi32(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), magnitude));
  }
  const bool bad = _mm512_cmpgt_epi32_mask(_mm512_max_epi32(m0, m1), _mm512_set1_epi32(limit)) != 0;
  return bad || row_exceeds(x + i, n - i, limit);
}
}  // namespace mixprec::ggml::detail::isa_avx512
MIXPREC_TARGET_END
#endif
#undef MIXPREC_GGML_ROW_PASSES_

namespace mixprec {
namespace ggml::detail {

// The row passes of the level in use (active_isa()).
struct row_passes {
  bool (*exceeds)(const float*, std::size_t, std::int32_t) noexcept;
  bool (*half)(const float*, std::size_t, std::byte*) noexcept;
  bool (*bfloat)(const float*, std::size_t, std::byte*) noexcept;
};

inline row_passes active_row_passes() {
#if MIXPREC_X86_TARGETS
  const isa level = active_isa();
  if (level == isa::avx512 || level == isa::avx512_vnni)
    return {isa_avx512::row_exceeds_zmm, isa_avx512::half_row, isa_avx512::bfloat_row};
  if (level == isa::avx2) return {isa_avx2::row_exceeds, isa_avx2::half_row, isa_avx2::bfloat_row};
#endif
  return {isa_baseline::row_exceeds, isa_baseline::half_row, isa_baseline::bfloat_row};
}

}  // namespace ggml::detail

}  // namespace mixprec

#undef MIXPREC_GGML_INLINE_
