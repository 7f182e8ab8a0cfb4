// ggml's reference quantizers and decoders, one block at a time (mixprec::ggml::ref): the algorithms
// of ggml's `quantize_row_*_ref` and, with importance weights, `quantize_row_*_impl` (ggml-quants.c)
// operation for operation, and its `dequantize_row_*`. This is the ground truth of mixprec's ggml
// bytes, which equal llama.cpp's (tests/interop checks them against llama.cpp itself).
// Unchecked: a block's input is finite and its output is not validated here; kernels/ggml_row.hpp
// checks rows and calls these.
//
// The neighbouring pieces (formats/ggml.hpp includes them all):
//   formats/ggml_blocks.hpp            the block structs, ggml_type and its traits
//   kernels/simd/ggml_row_passes.hpp   the per-level code (half_bits, make_qkx2_quants' AVX2 grids)
//   kernels/ggml_row.hpp               checked rows: ggml::quantize_row / ggml::dequantize_row
//   quantize/ggml.hpp                  matrices: ggml::quantize / quantize_into / dequantize
//
// Numerics (ggml's, reproduced exactly; everything in FP32, no FMA contraction in any build that
// includes this header: the namespace is a strict region, detail/strict_fp.hpp, so a user's
// -march=native GNU-mode build gets the same bytes; tests/cmake/consumer checks it):
// - Q8_0: amax = max |x|; d = amax / 127; id = d ? 1/d : 0; q = roundf(x * id) (half away from zero).
// - Q4_0: max = the value of largest magnitude WITH its sign (first one on ties); d = max / -8;
//   id = d ? 1/d : 0; q = min(15, trunc(x * id + 8.5)). The extreme lands exactly on code 0 (= -8 d).
// - Q4_1: d = (max - min) / 15; id = d ? 1/d : 0; q = min(15, trunc((x - min) * id + 0.5)); m = min.
// - In all three, q is computed with the unrounded FP32 d; d (and m) are rounded to FP16 afterwards.
// - Q6_K / Q4_K: ggml's make_qx_quants (rmse_type 1) and make_qkx2_quants searches, then 8-bit / 6-bit
//   sub-block scales against an FP16 super-block scale, and a final re-quantization with the stored
//   scales. Rounding is ggml's nearest_int (add 1.5*2^23, i.e. round half to even), bit for bit also
//   where ggml's debug builds would assert (|value| > 4194303, only with a denormal-small scale).
// - Casts C leaves undefined (NaN or out-of-range float -> int, only when 1/d overflows to Inf) give
//   what they give on x86-64, where llama.cpp runs them: see to_int / to_int8.
//
// Importance weights (llama.cpp's --imatrix; io/imatrix.hpp reads them), per element of the row:
// - Q4_0: ggml's quantize_row_q4_0_impl: search weights w_j = qw_j * sqrt(sigma2 + x_j^2), sigma2 =
//   mean x^2 over the whole row; make_qx_quants(32, 8, ..., rmse_type 1, w): from the RTN grid, 18
//   nearby grids (-(8 + 0.1 k) / max, k = -9..9), each with its weighted least-squares scale
//   sum(w x l) / sum(w l^2); the best by that criterion is stored.
// - Q6_K: ggml's quantize_row_q6_K_impl: make_qx_quants(16, 32, ..., qw) per sub-block.
// - Q8_0: ggml ignores the weights (quantize_q8_0 calls the reference), and so does mixprec: the bytes
//   are llama.cpp's with or without an imatrix.
// - Q4_1: ggml's quantize_row_q4_1_impl: the same search weights; make_qkx3_quants(32, 15, rmin -0.9,
//   rdelta 0.05, 36 steps): scale and min refitted by weighted least squares on 37 grids.
// - Q4_K: ggml's quantize_row_q4_K_impl: w = qw * sqrt(sigma2 + x^2) with sigma2 = 2 mean x^2 of the
//   super-block, make_qkx3_quants per sub-block, then the 6-bit scales and mins by make_qp_quants
//   (weighted by each sub-block's sum of w) instead of plain rounding.
// - Q5_0 / Q5_1 / Q5_K: their Q4 counterparts' searches with 32 levels. Q3_K (make_qx_quants per
//   sub-block, then on the scales), Q2_K (make_qkx3_quants, make_qp_quants): ggml's *_impl.
// - IQ4_NL / IQ4_XS: quantize_row_iq4_nl_impl with 7 tries each side, weights qw * sqrt(sigma2 + x^2);
//   without importance ggml_quantize_chunk runs the same search with weights x^2 (not the ntry -1
//   reference), and so does mixprec.
// - F32/F16/BF16 ignore the weights too.
// Without weights every type gives the reference bytes.
//
// Speed (at least ggml_quantize_chunk's rate, one thread, with kernels/simd/ggml_row_passes.hpp's row passes;
// benchmarks/ggml_bench.cpp measures both in one run) without changing a bit. The functions here are
// these fast forms of ggml's loops; each is exact, and tests/kernels/ggml_fast_paths_test.cpp compares it
// with the one-candidate-at-a-time code it replaced on adversarial blocks, on every instruction-set level:
// - Max/min searches run as integer max/min over the bits (then the first occurrence, as ggml's scans
//   take it; ties of +-0 and non-finite values fall back to ggml's scan); roundf and the (int) casts
//   are plain conversions where 1/d is finite (the only case where they are defined and equal).
// - The search loops try candidate grids that do not depend on each other (make_qx_quants' 19,
//   make_qkx2_quants' nstep + 1, IQ4's 16) side by side, one lane per grid: every lane sums in ggml's
//   order, and the best grid is then taken in ggml's order. make_qkx2_quants' grids after a win that
//   moves the minimum are recomputed from it, as ggml's loop uses the new minimum. Its lanes are the
//   one place this reference leaves scalar code: 8 grids in an AVX2 register on the avx2 level and
//   above (kernels/simd/ggml_row_passes.hpp), the same bits as the scalar lanes.
// - Packing loops without a branch per element (Q3_K's and Q5_K's high bits).
//
// How Q4_0 differs from mixprec's own "int4/g32/sym/minmax/s16" (quantize/): both map the value of
// largest magnitude to code 0 (-8 d) with d = max / -8, but mixprec rounds d to FP16 first and
// quantizes with the stored scale (round half to even), while Q4_0 quantizes with the unrounded d and
// rounds half up (trunc(v + 8.5)); and mixprec packs elements 2i / 2i+1 into byte i, Q4_0 packs j /
// j+16. The codes agree for most elements; the tests measure both SQNRs.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "mixprec/detail/simd/target.hpp"
#include "mixprec/detail/strict_fp.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/simd/ggml_row_passes.hpp"

// Small helpers the compiler leaves out of line in the block loops (a call per block scale costs
// more than the conversion): inlined always where the compiler offers it.
// And the searches kept out of line: inlined into their callers' loops they vectorise worse.
#if defined(__GNUC__) || defined(__clang__)
#define MIXPREC_GGML_INLINE_ [[gnu::always_inline]] inline
#define MIXPREC_GGML_OUTLINE_ [[gnu::noinline]] inline
#else
#define MIXPREC_GGML_INLINE_ inline
#define MIXPREC_GGML_OUTLINE_ inline
#endif

namespace mixprec::ggml {

// Every function of this namespace is compiled without FMA contraction (detail/strict_fp.hpp): the
// bytes are ggml's in any user build, -march=native and GCC's GNU modes included.
MIXPREC_STRICT_FP_BEGIN

// The references, one block at a time (ggml's numerics; see the top of the file).
namespace ref {

// fp32_to_fp16 (formats/float_convert.hpp) for the block scales: the same operations, compiled in
// this region so that they inline (kernels/simd/ggml_row_passes.hpp says why that matters).
[[nodiscard]] MIXPREC_GGML_INLINE_ std::uint16_t to_half(float f) noexcept { return detail::isa_baseline::half_bits(f); }

// ggml's nearest_int: round half to even through the FP32 adder. Defined for every float: where ggml
// asserts |fval| <= 4194303 (debug builds only; only reached with a denormal-small scale, when 1/d is
// Inf or huge) this returns what ggml's release builds compute, the same bit arithmetic.
[[nodiscard]] inline int nearest_int(float fval) noexcept {
  const float val = fval + 12582912.f;
  const auto i = std::bit_cast<std::int32_t>(val);
  return (i & 0x007fffff) - 0x00400000;
}

// float -> int truncating toward zero like C's cast, and where C leaves the cast undefined (NaN, values
// out of int's range: only when a block's scale is so small, e.g. denormal, that 1/d overflows to
// Inf) what x86-64's cvttss2si gives, as in the llama.cpp builds mixprec is compared with: INT_MIN.
[[nodiscard]] inline int to_int(float v) noexcept {
  if (!(v >= -2147483648.0f && v < 2147483648.0f)) return std::numeric_limits<int>::min();
  return static_cast<int>(v);
}

// float -> int8_t as ggml's `(int8_t)` casts compile on x86-64: to_int, then the low byte.
[[nodiscard]] inline std::int8_t to_int8(float v) noexcept {
  return static_cast<std::int8_t>(static_cast<std::uint8_t>(static_cast<std::uint32_t>(to_int(v)) & 0xffu));
}

// |x| as its bit pattern: for non-negative floats the integer order is the float order (NaN above
// Inf), and integer max/min reductions vectorise where float comparison reductions do not.
[[nodiscard]] inline std::int32_t abs_bits(float x) noexcept { return std::bit_cast<std::int32_t>(x) & 0x7fffffff; }

// The largest |x[j]| (+0 for all zeros); exact for non-NaN input (ggml's max(amax, fabsf(x)) loops).
[[nodiscard]] inline float max_abs(const float* x, int n) noexcept {
  std::int32_t m = 0;
  for (int j = 0; j < n; ++j) m = std::max(m, abs_bits(x[j]));
  return std::bit_cast<float>(m);
}

// C's roundf (half away from zero) for |v| < 2^23: the truncation's remainder v - trunc(v) is exact.
[[nodiscard]] inline int round_away(float v) noexcept {
  const int t = static_cast<int>(v);
  const float f = v - static_cast<float>(t);
  return t + static_cast<int>(f >= 0.5f) - static_cast<int>(f <= -0.5f);
}

inline void quantize_q8_0(const float* x, block_q8_0& y) noexcept {
  const float amax = max_abs(x, qk8_0);  // the input is finite (checked by the row)
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  if (id <= std::numeric_limits<float>::max()) {
    // |x * id| <= 127 (1 + a few ulps): roundf without a libm call, vectorisable.
    for (int j = 0; j < qk8_0; ++j) y.qs[j] = static_cast<std::int8_t>(round_away(x[j] * id));
  } else {  // 1/d overflowed (denormal d): the casts C leaves undefined, as x86-64 computes them
    for (int j = 0; j < qk8_0; ++j) y.qs[j] = to_int8(std::roundf(x[j] * id));
  }
}

// The value of largest magnitude among x[0..n), with its sign (the first one on ties), as Q4_0/Q5_0 take it.
inline float signed_absmax(const float* x, int n) noexcept {
  // The largest magnitude first (an integer max, vectorised), then its first occurrence: the same
  // value as ggml's sequential scan for finite x; Inf/NaN (only ever in scales computed from extreme
  // importance weights) take ggml's scan itself.
  std::int32_t m = 0;
  for (int j = 0; j < n; ++j) m = std::max(m, abs_bits(x[j]));
  if (m == 0) return 0.0f;
  if (m < 0x7f800000) {
    for (int j = 0; j < n; ++j)
      if (abs_bits(x[j]) == m) return x[j];
  }
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// A float's bits as an integer that orders like the float (-0 before +0; NaN outside): min/max
// reductions over it vectorise.
[[nodiscard]] inline std::int32_t order_key(float x) noexcept {
  const auto b = std::bit_cast<std::int32_t>(x);
  return b ^ ((b >> 31) & 0x7fffffff);
}
[[nodiscard]] inline float from_order_key(std::int32_t k) noexcept { return std::bit_cast<float>(k ^ ((k >> 31) & 0x7fffffff)); }

// ggml's scan for the smallest and largest of x[0..n) (the first of equal values).
inline std::pair<float, float> min_max_seq(const float* x, int n) noexcept {
  float min = 3.40282347e+38f;
  float max = -3.40282347e+38f;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  return {min, max};
}

// The smallest and largest of x[0..n), as Q4_1/Q5_1 take them.
MIXPREC_GGML_INLINE_ std::pair<float, float> min_max(const float* x, int n) noexcept {
  std::int32_t kmin = std::numeric_limits<std::int32_t>::max();
  std::int32_t kmax = std::numeric_limits<std::int32_t>::min();
  for (int j = 0; j < n; ++j) {
    const std::int32_t k = order_key(x[j]);
    kmin = std::min(kmin, k);
    kmax = std::max(kmax, k);
  }
  const float lo = from_order_key(kmin);
  const float hi = from_order_key(kmax);
  // Exact unless a zero is the extreme (ggml keeps the first of -0/+0) or the row is not finite.
  if (lo != 0.0f && hi != 0.0f && std::isfinite(lo) && std::isfinite(hi)) return {lo, hi};
  return min_max_seq(x, n);
}

inline void quantize_q4_0(const float* x, block_q4_0& y) noexcept {
  const float max = signed_absmax(x, qk4_0);
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  if (id <= std::numeric_limits<float>::max()) {
    // x * id is in [-8, 8] (up to rounding): the truncation sees [0.5, 16.5], a plain int cast.
    for (int j = 0; j < qk4_0 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + qk4_0 / 2] * id + 8.5f));
      y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
    return;
  }
  for (int j = 0; j < qk4_0 / 2; ++j) {  // 1/d overflowed: see to_int8
    const auto q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8(x[j] * id + 8.5f))));
    const auto q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8(x[j + qk4_0 / 2] * id + 8.5f))));
    y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

inline void quantize_q4_1(const float* x, block_q4_1& y) noexcept {
  const auto [min, max] = min_max(x, qk4_1);
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  y.m = to_half(min);
  if (id <= std::numeric_limits<float>::max()) {
    for (int j = 0; j < qk4_1 / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>((x[j] - min) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((x[j + qk4_1 / 2] - min) * id + 0.5f));
      y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
    return;
  }
  for (int j = 0; j < qk4_1 / 2; ++j) {
    const auto q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8((x[j] - min) * id + 0.5f))));
    const auto q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(to_int8((x[j + qk4_1 / 2] - min) * id + 0.5f))));
    y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
}

// Q5_0/Q5_1 store the low nibbles like Q4_0 (element j low, j + 16 high) and the fifth bits in qh.
inline void pack_q5(const std::uint8_t* L, std::uint8_t* qs, std::uint8_t* qh) noexcept {
  std::uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<std::uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    h |= ((L[j] & 0x10u) >> 4) << j;
    h |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh, &h, 4);
}

// ggml's quantize_row_q5_0_ref: as Q4_0 with 32 levels, d = max / -16.
inline void quantize_q5_0(const float* x, block_q5_0& y) noexcept {
  const float max = signed_absmax(x, qk5_0);
  const float d = max / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  std::uint8_t L[qk5_0];
  if (id <= std::numeric_limits<float>::max()) {
    for (int j = 0; j < qk5_0; ++j) L[j] = static_cast<std::uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
  } else {
    for (int j = 0; j < qk5_0; ++j) L[j] = static_cast<std::uint8_t>(std::min(31, static_cast<int>(to_int8(x[j] * id + 16.5f))));
  }
  pack_q5(L, y.qs, y.qh);
}

// ggml's quantize_row_q5_1_ref: as Q4_1 with 32 levels, d = (max - min) / 31; no clamp (ggml has none).
inline void quantize_q5_1(const float* x, block_q5_1& y) noexcept {
  const auto [min, max] = min_max(x, qk5_1);
  const float d = (max - min) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = to_half(d);
  y.m = to_half(min);
  std::uint8_t L[qk5_1];
  if (id <= std::numeric_limits<float>::max()) {
    for (int j = 0; j < qk5_1; ++j) L[j] = static_cast<std::uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
  } else {
    for (int j = 0; j < qk5_1; ++j) L[j] = static_cast<std::uint8_t>(to_int8((x[j] - min) * id + 0.5f));
  }
  pack_q5(L, y.qs, y.qh);
}

// ggml's make_qx_quants with rmse_type 1: codes L in [0, 2 nmax) and the returned scale (x ~ scale *
// (L - nmax)). Weights qw (n of them) or, when null, x^2. n <= 32.
// The 18 candidate grids are independent until the choice: they are computed side by side (one lane
// per grid, each lane summing in ggml's order, so every sum is ggml's bit for bit) and then chosen in
// ggml's order. Values in a lane are rounded as ggml's nearest_int and clamped as floats, the same
// thing because |iscale x| <= nmax + 1 when every x is finite (|x| <= |max|); anything else takes
// make_qx_quants_seq, ggml's loop as written.
inline float make_qx_quants_seq(int n, int nmax, const float* x, std::int8_t* L, const float* qw, float max) noexcept {
  const auto fnmax = static_cast<float>(nmax);
  auto weight = [&](int i) { return qw ? qw[i] : x[i] * x[i]; };
  auto clamp_l = [&](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  float iscale = -fnmax / max;
  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = clamp_l(nearest_int(iscale * x[i]));
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = weight(i);
    const auto fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(fnmax + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const auto fl = static_cast<float>(clamp_l(nearest_int(iscale * x[i])));
      const float w = weight(i);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(nmax + clamp_l(nearest_int(iscale * x[i])));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

MIXPREC_GGML_OUTLINE_ float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, const float* qw) noexcept {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  constexpr int lanes = 19;  // the RTN grid (is = 0) and ggml's 18 others, is = -9..9
  float w[32], wx[32];
  std::int32_t bad = 0;
  for (int i = 0; i < n; ++i) {
    w[i] = qw ? qw[i] : x[i] * x[i];
    wx[i] = w[i] * x[i];  // ggml's w * x[i] * l is (w * x[i]) * l
    bad |= -static_cast<std::int32_t>(abs_bits(x[i]) >= 0x7f800000);
  }
  if (bad || n > 32 || !std::isfinite(max)) return make_qx_quants_seq(n, nmax, x, L, qw, max);
  const auto fnmax = static_cast<float>(nmax);
  const float lo = -fnmax, hi = fnmax - 1.0f;
  float iscale[lanes];
  iscale[0] = -fnmax / max;
  for (int k = 1; k < lanes; ++k) {
    const int is = k <= 9 ? k - 10 : k - 9;
    iscale[k] = -(fnmax + 0.1f * static_cast<float>(is)) / max;
  }
  float sumlx[lanes] = {}, suml2[lanes] = {};
  for (int i = 0; i < n; ++i) {
    const float xi = x[i], wi = w[i], wxi = wx[i];
    for (int k = 0; k < lanes; ++k) {
      const float fl = std::min(hi, std::max(lo, static_cast<float>(nearest_int(iscale[k] * xi))));
      sumlx[k] += wxi * fl;
      suml2[k] += wi * fl * fl;
    }
  }
  float scale = suml2[0] != 0.0f ? sumlx[0] / suml2[0] : 0.0f;
  float best = scale * sumlx[0];
  int chosen = 0;
  for (int k = 1; k < lanes; ++k) {
    if (suml2[k] > 0.0f && sumlx[k] * sumlx[k] > best * suml2[k]) {
      chosen = k;
      scale = sumlx[k] / suml2[k];
      best = scale * sumlx[k];
    }
  }
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<std::int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale[chosen] * x[i]))));
  return scale;
}

// ggml's make_qkx2_quants (squared error, or absolute error with use_mad): codes L in [0, nmax], returns
// the scale and sets *the_min (x ~ scale * L - the_min). n <= 32.
// The nstep + 1 candidate grids are computed `lanes` at a time, side by side (each lane summing in
// ggml's order: every sum is ggml's bit for bit), then taken in ggml's order. ggml's loop updates `min`
// when a candidate wins and the later candidates use the new one: the lanes after a win that moved
// the minimum are recomputed from it. Codes are rounded by nearest_int (always an integer of
// magnitude < 2^22, exact as a float) and clamped as floats: the same values as ggml's int clamp.
// Grids: qkx2_grids_scalar (any CPU, 4 lanes in plain loops) or qkx2_grids_avx2 (8 in a register, on
// the avx2 level and above), by active_isa().
template <bool UseMad>
struct qkx2_grids_scalar {
  static constexpr int lanes = 4;
  static void run(int n, const float* x, const float* weights, float min, float fnmax, const float* isc, float sum_w, float sum_x,
                  float* D, float* this_scale, float* this_min, float* cur_error) noexcept {
    float sum_l[lanes] = {}, sum_l2[lanes] = {}, sum_xl[lanes] = {};
    float codes[32][lanes];  // the lanes' codes (ggml's Laux), for the error pass
    for (int i = 0; i < n; ++i) {
      const float xm = x[i] - min, w = weights[i], xi = x[i];
      for (int k = 0; k < lanes; ++k) {
        const float fl = std::min(fnmax, std::max(0.0f, static_cast<float>(nearest_int(isc[k] * xm))));
        codes[i][k] = fl;
        const float wfl = w * fl;  // ggml: w*l, w*l*l, w*l*x[i], left to right
        sum_l[k] += wfl;
        sum_l2[k] += wfl * fl;
        sum_xl[k] += wfl * xi;
      }
    }
    for (int k = 0; k < lanes; ++k) {
      D[k] = sum_w * sum_l2[k] - sum_l[k] * sum_l[k];
      this_scale[k] = (sum_w * sum_xl[k] - sum_x * sum_l[k]) / D[k];
      this_min[k] = (sum_l2[k] * sum_x - sum_l[k] * sum_xl[k]) / D[k];
      if (this_min[k] > 0) {
        this_min[k] = 0;
        this_scale[k] = sum_xl[k] / sum_l2[k];
      }
      cur_error[k] = 0;
    }
    for (int i = 0; i < n; ++i) {
      const float w = weights[i], xi = x[i];
      for (int k = 0; k < lanes; ++k) {
        float diff = this_scale[k] * codes[i][k] + this_min[k] - xi;
        diff = UseMad ? std::fabs(diff) : diff * diff;
        cur_error[k] += w * diff;
      }
    }
  }
};

#if MIXPREC_X86_TARGETS
// The AVX2 lanes: 8 grids in one register (detail::isa_avx2::qkx2_grids).
template <bool UseMad>
struct qkx2_grids_avx2 {
  static constexpr int lanes = 8;
  static void run(int n, const float* x, const float* weights, float min, float fnmax, const float* isc, float sum_w, float sum_x,
                  float* D, float* this_scale, float* this_min, float* cur_error) noexcept {
    detail::isa_avx2::qkx2_grids<UseMad>(n, x, weights, min, fnmax, isc, sum_w, sum_x, D, this_scale, this_min, cur_error);
  }
};
#endif

template <bool UseMad, class Grids>
float make_qkx2_quants_lanes(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min, float rmin,
                             float rdelta, int nstep) noexcept {
  constexpr int lanes = Grids::lanes;
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = UseMad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  bool won = false;
  float won_iscale = 0, won_min = 0;  // the grid of the last winner, and the minimum it was computed with
  int is = 0;
  while (is <= nstep) {
    const int m = std::min(lanes, nstep + 1 - is);
    float isc[lanes];
    for (int k = 0; k < lanes; ++k) isc[k] = (rmin + rdelta * static_cast<float>(is + std::min(k, m - 1)) + fnmax) / (max - min);
    float D[lanes], this_scale[lanes], this_min[lanes], cur_error[lanes];
    Grids::run(n, x, weights, min, fnmax, isc, sum_w, sum_x, D, this_scale, this_min, cur_error);
    int next = is + m;
    for (int k = 0; k < m; ++k) {
      if (D[k] > 0 && cur_error[k] < best_error) {
        best_error = cur_error[k];
        scale = this_scale[k];
        won = true;
        won_iscale = isc[k];
        won_min = min;
        if (this_min[k] != min) {  // the later grids depend on the new minimum: redo them
          min = this_min[k];
          next = is + k + 1;
          break;
        }
        min = this_min[k];
      }
    }
    is = next;
  }
  if (won)
    for (int i = 0; i < n; ++i) L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, nearest_int(won_iscale * (x[i] - won_min)))));
  *the_min = -min;
  return scale;
}

inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                              std::uint8_t* /*Laux*/, float rmin, float rdelta, int nstep, bool use_mad = false) noexcept {
#if MIXPREC_X86_TARGETS
  if (active_isa() != isa::baseline)  // avx2 and above
    return use_mad ? make_qkx2_quants_lanes<true, qkx2_grids_avx2<true>>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep)
                   : make_qkx2_quants_lanes<false, qkx2_grids_avx2<false>>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep);
#endif
  return use_mad ? make_qkx2_quants_lanes<true, qkx2_grids_scalar<true>>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep)
                 : make_qkx2_quants_lanes<false, qkx2_grids_scalar<false>>(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep);
}

// Q4_K's 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) noexcept {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// ggml's make_qp_quants: non-negative x (sub-block scales or mins) on a grid of nmax + 1 levels from
// 0, weighted by quant_weights; codes in L (uint8, as ggml stores them), returns the grid step.
inline float make_qp_quants(int n, int nmax, const float* x, std::uint8_t* L, const float* quant_weights) noexcept {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const auto fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + fnmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<std::uint8_t>(l);
    const float w = quant_weights[i];
    const auto fl = static_cast<float>(L[i]);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ggml's quantize_row_q4_1_impl for one block: importance qw (32), sigma2 = mean x^2 of the row.
// (ggml's make_qkx3_quants with weights is make_qkx2_quants: same steps.)
inline void quantize_q4_1_weighted(const float* x, const float* qw, float sigma2, block_q4_1& y) noexcept {
  float weight[qk4_1];
  std::uint8_t L[qk4_1], Laux[qk4_1];
  for (int j = 0; j < qk4_1; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  float min = 0;
  const float d = make_qkx2_quants(qk4_1, 15, x, weight, L, &min, Laux, -0.9f, 0.05f, 36);
  y.d = to_half(d);
  y.m = to_half(-min);
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
}

// Q4_K's 12 scale bytes from 8 six-bit scales and mins.
inline void pack_scales_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* scales) noexcept {
  for (int j = 0; j < qk_k / 32; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] = static_cast<std::uint8_t>(scales[j - 4] | ((ls[j] >> 4) << 6));
      scales[j - 0] = static_cast<std::uint8_t>(scales[j - 0] | ((lm[j] >> 4) << 6));
    }
  }
}

// Q4_K's and Q5_K's codes from the stored scales and mins (0..nmax; sub-blocks whose scale is 0 keep
// the codes of the search, as ggml does).
template <class Block>
void requantize_k4(const float* x, std::uint8_t* L, const Block& y, int nmax) noexcept {
  for (int j = 0; j < qk_k / 32; ++j) {
    std::uint8_t sc = 0, m = 0;
    get_scale_min_k4(j, y.scales, sc, m);
    const float d = fp16_to_fp32(y.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = fp16_to_fp32(y.dmin) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

// Q4_K's last step: codes from the stored scales, packed.
inline void finish_q4_k(const float* x, std::uint8_t* L, block_q4_k& y) noexcept {
  requantize_k4(x, L, y, 15);
  std::uint8_t* q = y.qs;
  for (int j = 0; j < qk_k; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// Q4_K's and Q5_K's scale search without importance (ggml's quantize_row_q{4,5}_K_ref): each sub-block
// of 32 fitted by make_qkx2_quants with weights av_x + |x| (nmax 15 or 31, each type's search grid),
// then 6-bit scales and mins against the two FP16 super-block scales. The search's codes are left in L.
template <class Block>
void fit_scales_k4(const float* x, int nmax, float rmin, float rdelta, int nstep, std::uint8_t* L, Block& y) noexcept {
  std::uint8_t Laux[32];
  float weights[32];
  float mins[qk_k / 32];
  float scales[qk_k / 32];
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < qk_k / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::uint8_t ls[qk_k / 32], lm[qk_k / 32];
  for (int j = 0; j < qk_k / 32; ++j) {
    // ggml stores nearest_int into a uint8_t (modular), then takes min(63, .).
    ls[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_min * mins[j])));
  }
  pack_scales_k4(ls, lm, y.scales);
  y.d = to_half(max_scale / 63.f);
  y.dmin = to_half(max_min / 63.f);
}

// The same with importance qw (256; ggml's quantize_row_q{4,5}_K_impl): weights qw * sqrt(sigma2 + x^2)
// with sigma2 = 2 mean x^2 of the super-block, make_qkx3_quants per sub-block, then the scales and
// mins by make_qp_quants weighted by each sub-block's sum of weights.
template <class Block>
void fit_scales_k4_weighted(const float* x, const float* qw, int nmax, std::uint8_t* L, Block& y) noexcept {
  std::uint8_t Laux[32];
  std::uint8_t Ls[qk_k / 32];
  std::uint8_t Lm[qk_k / 32];
  float weights[32];
  float sw[qk_k / 32];
  float mins[qk_k / 32];
  float scales[qk_k / 32];
  float sum_x2 = 0;
  for (int l = 0; l < qk_k; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / qk_k;
  for (int j = 0; j < qk_k / 32; ++j) {
    for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
  }
  const float d_block = make_qp_quants(qk_k / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(qk_k / 32, 63, mins, Lm, sw);
  pack_scales_k4(Ls, Lm, y.scales);  // make_qp_quants keeps them <= 63 (ggml's min(63, .) is a no-op)
  y.d = to_half(d_block);
  y.dmin = to_half(m_block);
}

inline void quantize_q4_k_weighted(const float* x, const float* qw, block_q4_k& y) noexcept {
  std::uint8_t L[qk_k];
  fit_scales_k4_weighted(x, qw, 15, L, y);
  finish_q4_k(x, L, y);
}

inline void quantize_q4_k(const float* x, block_q4_k& y) noexcept {
  std::uint8_t L[qk_k];
  fit_scales_k4(x, 15, -1.f, 0.1f, 20, L, y);
  finish_q4_k(x, L, y);
}

// Q5_K's last step: codes 0..31 from the stored scales; low nibbles as Q4_K, fifth bits in qh.
inline void finish_q5_k(const float* x, std::uint8_t* L, block_q5_k& y) noexcept {
  requantize_k4(x, L, y, 31);
  // Codes are 0..31: ggml's "if > 15: set the bit, subtract 16" is bit 4 and the low nibble, written
  // without a branch per element so that the loop vectorises.
  for (int j = 0; j < 32; ++j) {
    unsigned h = 0;
    for (int g = 0; g < 4; ++g) {
      h |= ((L[64 * g + j] >> 4) & 1u) << (2 * g);
      h |= ((L[64 * g + j + 32] >> 4) & 1u) << (2 * g + 1);
    }
    y.qh[j] = static_cast<std::uint8_t>(h);
  }
  for (int g = 0; g < 4; ++g)
    for (int j = 0; j < 32; ++j)
      y.qs[32 * g + j] = static_cast<std::uint8_t>((L[64 * g + j] & 0xFu) | ((L[64 * g + j + 32] & 0xFu) << 4));
}

// ggml's quantize_row_q5_K_ref for one super-block: Q4_K's steps with 32 levels and a shorter search.
inline void quantize_q5_k(const float* x, block_q5_k& y) noexcept {
  std::uint8_t L[qk_k];
  fit_scales_k4(x, 31, -0.5f, 0.1f, 15, L, y);
  finish_q5_k(x, L, y);
}

// ggml's quantize_row_q5_K_impl for one super-block with importance qw (256).
inline void quantize_q5_k_weighted(const float* x, const float* qw, block_q5_k& y) noexcept {
  std::uint8_t L[qk_k];
  fit_scales_k4_weighted(x, qw, 31, L, y);
  finish_q5_k(x, L, y);
}

// Q2_K / Q3_K store 2-bit codes four to a byte: element l, l + 32, l + 64, l + 96 of each 128 in byte l.
inline void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) noexcept {
  for (int j = 0; j < qk_k; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q2_K's last step: codes 0..3 from the stored scales and mins (d, dmin as stored), packed.
inline void finish_q2_k(const float* x, std::uint8_t* L, block_q2_k& y) noexcept {
  const float dm = fp16_to_fp32(y.d), mm = fp16_to_fp32(y.dmin);
  for (int j = 0; j < qk_k / 16; ++j) {
    const float d = dm * static_cast<float>(y.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float m = mm * static_cast<float>(y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + m) / d))));
  }
  pack_2bit(L, y.qs);
}

// ggml's quantize_row_q2_K_ref for one super-block: 16 sub-blocks of 16 fitted by make_qkx2_quants
// (absolute error, weights |x|), 4-bit scales and mins against two FP16 super-block scales.
inline void quantize_q2_k(const float* x, block_q2_k& y) noexcept {
  std::uint8_t L[qk_k];
  std::uint8_t Laux[16];
  float weights[16];
  float mins[qk_k / 16];
  float scales[qk_k / 16];
  constexpr float q4scale = 15.f;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < qk_k / 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < qk_k / 16; ++j) y.scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
    y.d = to_half(max_scale / q4scale);
  } else {
    for (int j = 0; j < qk_k / 16; ++j) y.scales[j] = 0;
    y.d = to_half(0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < qk_k / 16; ++j) y.scales[j] = static_cast<std::uint8_t>(y.scales[j] | (nearest_int(iscale * mins[j]) << 4));
    y.dmin = to_half(max_min / q4scale);
  } else {
    y.dmin = to_half(0.f);
  }
  finish_q2_k(x, L, y);
}

// ggml's quantize_row_q2_K_impl for one super-block with importance qw (256).
inline void quantize_q2_k_weighted(const float* x, const float* qw, block_q2_k& y) noexcept {
  std::uint8_t L[qk_k];
  std::uint8_t Laux[16];
  float mins[qk_k / 16];
  float scales[qk_k / 16];
  float sw[qk_k / 16] = {};
  float weight[16];
  std::uint8_t Ls[qk_k / 16], Lm[qk_k / 16];
  float sumx2 = 0;
  for (int j = 0; j < qk_k; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = sumx2 / qk_k;
  for (int j = 0; j < qk_k / 16; ++j) {
    for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
  }
  const float dm = make_qp_quants(qk_k / 16, 15, scales, Ls, sw);
  const float mm = make_qp_quants(qk_k / 16, 15, mins, Lm, sw);
  y.d = to_half(dm);
  y.dmin = to_half(mm);
  for (int j = 0; j < qk_k / 16; ++j) y.scales[j] = static_cast<std::uint8_t>(Ls[j] | (Lm[j] << 4));
  finish_q2_k(x, L, y);
}

// ggml's make_q3_quants with do_rmse: signed codes in [-nmax, nmax - 1] fitted by weighted least
// squares (weights x^2), returned as L + nmax.
inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L) noexcept {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<std::int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        const int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
        if (new_l != L[i]) {
          const auto fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<std::int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<std::int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Q3_K's 16 six-bit scales (stored + 32): low nibbles in bytes 0..7, the high 2 bits in bytes 8..11.
inline void pack_scales_q3_k(int j, int l, std::uint8_t* scales) noexcept {
  if (j < 8) scales[j] = static_cast<std::uint8_t>(l & 0xF);
  else scales[j - 8] = static_cast<std::uint8_t>(scales[j - 8] | ((l & 0xF) << 4));
  l >>= 4;
  scales[j % 4 + 8] = static_cast<std::uint8_t>(scales[j % 4 + 8] | (l << (2 * (j / 4))));
}
inline int scale_q3_k(int j, const std::uint8_t* scales) noexcept {
  const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Q3_K's last step: codes from the stored scales (sub-blocks whose scale is 0 keep L), the high bits
// into hmask (bit b of hmask[m] for element 32 b + m), the low 2 bits packed.
inline void finish_q3_k(const float* x, std::int8_t* L, block_q3_k& y) noexcept {
  for (int j = 0; j < qk_k / 16; ++j) {
    const auto sc = static_cast<std::int8_t>(scale_q3_k(j, y.scales));
    const float d = fp16_to_fp32(y.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<std::int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  // Codes are 0..7 here: the high bit is bit 2 and the rest L & 3 (ggml's "if > 3: set, subtract 4"),
  // written without a branch per element so that the loops vectorise.
  std::uint8_t U[qk_k];
  for (int j = 0; j < qk_k; ++j) U[j] = static_cast<std::uint8_t>(L[j]);
  for (int m = 0; m < qk_k / 8; ++m) {
    unsigned h = 0;
    for (int b = 0; b < 8; ++b) h |= ((U[32 * b + m] >> 2) & 1u) << b;
    y.hmask[m] = static_cast<std::uint8_t>(h);
  }
  for (int j = 0; j < qk_k; ++j) U[j] = static_cast<std::uint8_t>(U[j] & 3u);
  pack_2bit(U, y.qs);
}

// ggml's quantize_row_q3_K_ref for one super-block.
inline void quantize_q3_k(const float* x, block_q3_k& y) noexcept {
  std::int8_t L[qk_k];
  float scales[qk_k / 16];
  float max_scale = 0, amax = 0;
  for (int j = 0; j < qk_k / 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  std::memset(y.scales, 0, sizeof y.scales);
  if (max_scale != 0.0f) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < qk_k / 16; ++j) {
      auto l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));  // ggml stores it in an int8_t first
      l = static_cast<std::int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
      pack_scales_q3_k(j, l, y.scales);
    }
    y.d = to_half(1 / iscale);
  } else {
    y.d = to_half(0.f);
  }
  finish_q3_k(x, L, y);
}

// ggml's quantize_row_q3_K_impl for one super-block with importance qw (256).
inline void quantize_q3_k_weighted(const float* x, const float* qw, block_q3_k& y) noexcept {
  std::int8_t L[qk_k];
  float scales[qk_k / 16];
  float weight[16];
  float sw[qk_k / 16];
  std::int8_t Ls[qk_k / 16];
  float sumx2 = 0;
  for (int j = 0; j < qk_k; ++j) sumx2 += x[j] * x[j];
  const float sigma2 = 2 * sumx2 / qk_k;
  for (int j = 0; j < qk_k / 16; ++j) {
    for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 16; ++l) sumw += weight[l];
    sw[j] = sumw;
    scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
  }
  std::memset(y.scales, 0, sizeof y.scales);
  const float d_block = make_qx_quants(qk_k / 16, 32, scales, Ls, sw);
  for (int j = 0; j < qk_k / 16; ++j) pack_scales_q3_k(j, Ls[j], y.scales);
  y.d = to_half(d_block);
  finish_q3_k(x, L, y);
}

inline void dequantize_q2_k(const block_q2_k& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
  const std::uint8_t* q = b.qs;
  int is = 0;
  for (int n = 0; n < qk_k; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const std::uint8_t sc = b.scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

inline void dequantize_q3_k(const block_q3_k& b, float* y) noexcept {
  const float d_all = fp16_to_fp32(b.d);
  const std::uint8_t* q = b.qs;
  std::uint8_t m = 1;
  int is = 0;
  for (int n = 0; n < qk_k; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * static_cast<float>(scale_q3_k(is++, b.scales));
        for (int l = 0; l < 16; ++l) {
          const int k = l + 16 * half;
          *y++ = dl * static_cast<float>(((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4));
        }
      }
      shift += 2;
      m = static_cast<std::uint8_t>(m << 1);
    }
    q += 32;
  }
}

// IQ4_NL / IQ4_XS: 4-bit indices into a fixed non-uniform grid (ggml's kvalues_iq4nl).
inline constexpr std::int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ggml's best_index_int8: the index of the grid value nearest x (ties to the upper one; a NaN x
// ends at the top, as ggml's comparisons make it).
inline int best_index_int8(int n, const std::int8_t* val, float x) noexcept {
  if (x <= static_cast<float>(val[0])) return 0;
  if (x >= static_cast<float>(val[n - 1])) return n - 1;
  int ml = 0, mu = n - 1;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < static_cast<float>(val[mav])) mu = mav;
    else ml = mav;
  }
  return x - static_cast<float>(val[mu - 1]) < static_cast<float>(val[mu]) - x ? mu - 1 : mu;
}

// kvalues_iq4nl[best_index_int8(16, kvalues_iq4nl, x)] for finite x, without a branch: lo/hi are the
// grid values around x (x >= each value counted, the integer steps summed: exact in FP32), then
// best_index_int8's own comparison picks one (the ends come out right: below the grid lo wins, above hi).
inline float iq4nl_value(float x) noexcept {
  float lo = kvalues_iq4nl[0], hi = kvalues_iq4nl[1];
  for (int j = 1; j < 15; ++j) {
    const bool ge = x >= static_cast<float>(kvalues_iq4nl[j]);
    lo += ge ? static_cast<float>(kvalues_iq4nl[j] - kvalues_iq4nl[j - 1]) : 0.0f;
    hi += ge ? static_cast<float>(kvalues_iq4nl[j + 1] - kvalues_iq4nl[j]) : 0.0f;
  }
  return x - lo < hi - x ? lo : hi;
}

// ggml's quantize_row_iq4_nl_impl with ntry 7, the search ggml_quantize_chunk runs for IQ4_NL (one
// block of 32: super_block 32) and IQ4_XS (super_block 256, eight 6-bit block scales), with importance
// qw (null: the weights x^2). Writes d (FP16 bits), the packed indices q4, and for IQ4_XS the scales.
inline void quantize_iq4_nl_impl(int super_block, const float* x, std::uint16_t& dh, std::uint8_t* q4, std::uint16_t* scales_h,
                                 std::uint8_t* scales_l, const float* qw) noexcept {
  constexpr int block = 32, ntry = 7;
  const std::int8_t* values = kvalues_iq4nl;
  float scales[qk_k / 32];
  float weight[block];
  std::uint8_t L[qk_k];
  float sigma2 = 0;
  for (int j = 0; j < super_block; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / static_cast<float>(super_block);
  std::memset(q4, 0, static_cast<std::size_t>(super_block / 2));
  std::memset(L, 0, sizeof L);
  dh = to_half(0.f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super_block / block; ++ib) {
    const float* xb = x + ib * block;
    for (int j = 0; j < block; ++j) weight[j] = qw ? qw[ib * block + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    const float max = signed_absmax(xb, block);
    if (std::fabs(max) < group_max_eps) {
      scales[ib] = 0;
      continue;
    }
    // The first grid and ggml's 2 ntry + 1 tries are independent until the choice: computed side by
    // side (each lane summing in ggml's order), then taken in ggml's order. Every id * x here is finite
    // (|x| <= |max|, |max| >= 1e-15), where iq4nl_value is best_index_int8's value. The first grid's
    // codes are not kept: the codes are recomputed from the final scales below, as in ggml.
    constexpr int lanes = 2 * ntry + 2;
    float ids[lanes];
    ids[0] = 1 / (-max / static_cast<float>(values[0]));
    for (int k = 1; k < lanes; ++k) ids[k] = static_cast<float>(k - 1 - ntry + values[0]) / max;
    float sqx[lanes] = {}, sq2[lanes] = {};
    for (int j = 0; j < block; ++j) {
      const float xj = xb[j], w = weight[j];
      for (int k = 0; k < lanes; ++k) {
        const float q = iq4nl_value(ids[k] * xj);
        const float wq = w * q;  // ggml: w*q*x[j] and w*q*q, left to right
        sqx[k] += wq * xj;
        sq2[k] += wq * q;
      }
    }
    float d = sq2[0] > 0 ? sqx[0] / sq2[0] : 0.f;
    float best = d * sqx[0];
    for (int k = 1; k < lanes; ++k) {
      if (sq2[k] > 0 && sqx[k] * sqx[k] > best * sq2[k]) {
        d = sqx[k] / sq2[k];
        best = d * sqx[k];
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  if (super_block / block > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    dh = to_half(d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    for (int ib = 0; ib < super_block / block; ++ib) {
      int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      std::uint8_t* Lb = L + ib * block;
      const float* xb = x + ib * block;
      for (int j = 0; j < block; ++j) Lb[j] = static_cast<std::uint8_t>(best_index_int8(16, values, idl * xb[j]));
      l += 32;
      const auto l_l = static_cast<std::uint8_t>(l & 0xf);
      const auto l_h = static_cast<std::uint8_t>(l >> 4);
      if (ib % 2 == 0) scales_l[ib / 2] = l_l;
      else scales_l[ib / 2] = static_cast<std::uint8_t>(scales_l[ib / 2] | (l_l << 4));
      *scales_h = static_cast<std::uint16_t>(*scales_h | (l_h << 2 * (ib % 8)));
    }
  } else {
    dh = to_half(scales[0]);
    const float id = scales[0] != 0.0f ? 1 / scales[0] : 0;
    for (int j = 0; j < super_block; ++j) L[j] = static_cast<std::uint8_t>(best_index_int8(16, values, id * x[j]));
  }
  for (int i = 0; i < super_block / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<std::uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

inline void quantize_iq4_nl(const float* x, const float* qw, block_iq4_nl& y) noexcept {
  quantize_iq4_nl_impl(32, x, y.d, y.qs, nullptr, nullptr, qw);
}
inline void quantize_iq4_xs(const float* x, const float* qw, block_iq4_xs& y) noexcept {
  quantize_iq4_nl_impl(qk_k, x, y.d, y.qs, &y.scales_h, y.scales_l, qw);
}

inline void dequantize_iq4_nl(const block_iq4_nl& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kvalues_iq4nl[b.qs[j] & 0xf]);
    y[j + 16] = d * static_cast<float>(kvalues_iq4nl[b.qs[j] >> 4]);
  }
}

inline void dequantize_iq4_xs(const block_iq4_xs& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const std::uint8_t* qs = b.qs;
  for (int ib = 0; ib < qk_k / 32; ++ib) {
    const int ls = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b.scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * static_cast<float>(kvalues_iq4nl[qs[j] & 0xf]);
      y[j + 16] = dl * static_cast<float>(kvalues_iq4nl[qs[j] >> 4]);
    }
    y += 32;
    qs += 16;
  }
}

// Q6_K; qw (256 importance weights) selects ggml's quantize_row_q6_K_impl, null the reference.
inline void quantize_q6_k(const float* x, block_q6_k& y, const float* qw = nullptr) noexcept {
  std::int8_t L[qk_k];
  float scales[qk_k / 16];
  float max_scale = 0;
  float max_abs_scale = 0;
  for (int ib = 0; ib < qk_k / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < group_max_eps) {
    std::memset(&y, 0, sizeof y);
    y.d = to_half(0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  y.d = to_half(1 / iscale);
  for (int ib = 0; ib < qk_k / 16; ++ib)
    y.scales[ib] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < qk_k / 16; ++j) {
    const float d = fp16_to_fp32(y.d) * static_cast<float>(y.scales[j]);
    if (d == 0.0f) continue;  // keeps the codes of the search, as ggml does
    for (int ii = 0; ii < 16; ++ii) {
      const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d)));
      L[16 * j + ii] = static_cast<std::int8_t>(l + 32);
    }
  }
  std::uint8_t* ql = y.ql;
  std::uint8_t* qh = y.qh;
  for (int j = 0; j < qk_k; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const auto u = [&](int k) { return static_cast<unsigned>(static_cast<std::uint8_t>(L[j + l + k])); };
      ql[l + 0] = static_cast<std::uint8_t>((u(0) & 0xF) | ((u(64) & 0xF) << 4));
      ql[l + 32] = static_cast<std::uint8_t>((u(32) & 0xF) | ((u(96) & 0xF) << 4));
      qh[l] = static_cast<std::uint8_t>((u(0) >> 4) | ((u(32) >> 4) << 2) | ((u(64) >> 4) << 4) | ((u(96) >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

// ggml's quantize_row_q4_0_impl for one block: importance qw (32), sigma2 = mean x^2 of the row.
inline void quantize_q4_0_weighted(const float* x, const float* qw, float sigma2, block_q4_0& y) noexcept {
  float weight[qk4_0];
  std::int8_t L[qk4_0];
  for (int j = 0; j < qk4_0; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  const float d = make_qx_quants(qk4_0, 8, x, L, weight);
  y.d = to_half(d);
  for (int j = 0; j < 16; ++j) y.qs[j] = static_cast<std::uint8_t>(L[j] | (L[j + 16] << 4));
}

// ggml's quantize_row_q5_0_impl for one block: Q4_0's search with nmax 16.
inline void quantize_q5_0_weighted(const float* x, const float* qw, float sigma2, block_q5_0& y) noexcept {
  float weight[qk5_0];
  std::int8_t L[qk5_0];
  for (int j = 0; j < qk5_0; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  const float d = make_qx_quants(qk5_0, 16, x, L, weight);
  y.d = to_half(d);
  std::uint8_t U[qk5_0];
  for (int j = 0; j < qk5_0; ++j) U[j] = static_cast<std::uint8_t>(L[j]);
  pack_q5(U, y.qs, y.qh);
}

// ggml's quantize_row_q5_1_impl for one block: Q4_1's search with nmax 31.
inline void quantize_q5_1_weighted(const float* x, const float* qw, float sigma2, block_q5_1& y) noexcept {
  float weight[qk5_1];
  std::uint8_t L[qk5_1], Laux[qk5_1];
  for (int j = 0; j < qk5_1; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  float min = 0;
  const float d = make_qkx2_quants(qk5_1, 31, x, weight, L, &min, Laux, -0.9f, 0.05f, 36);
  y.d = to_half(d);
  y.m = to_half(-min);
  pack_q5(L, y.qs, y.qh);
}

inline void dequantize_q5_0(const block_q5_0& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  std::uint32_t qh = 0;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < qk5_0 / 2; ++j) {
    const int x0 = static_cast<int>((b.qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
    const int x1 = static_cast<int>((b.qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
    y[j] = static_cast<float>(x0) * d;
    y[j + qk5_0 / 2] = static_cast<float>(x1) * d;
  }
}

inline void dequantize_q5_1(const block_q5_1& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  std::uint32_t qh = 0;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < qk5_1 / 2; ++j) {
    const int x0 = static_cast<int>((b.qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10));
    const int x1 = static_cast<int>((b.qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
    y[j] = static_cast<float>(x0) * d + m;
    y[j + qk5_1 / 2] = static_cast<float>(x1) * d + m;
  }
}

inline void dequantize_q8_0(const block_q8_0& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < qk8_0; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

inline void dequantize_q4_0(const block_q4_0& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < qk4_0 / 2; ++j) {
    y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
    y[j + qk4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}

inline void dequantize_q4_1(const block_q4_1& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  for (int j = 0; j < qk4_1 / 2; ++j) {
    y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
    y[j + qk4_1 / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
  }
}

inline void dequantize_q4_k(const block_q4_k& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const float min = fp16_to_fp32(b.dmin);
  const std::uint8_t* q = b.qs;
  int is = 0;
  for (int j = 0; j < qk_k; j += 64) {
    std::uint8_t sc = 0, m = 0;
    get_scale_min_k4(is + 0, b.scales, sc, m);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = min * static_cast<float>(m);
    get_scale_min_k4(is + 1, b.scales, sc, m);
    const float d2 = d * static_cast<float>(sc);
    const float m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

inline void dequantize_q5_k(const block_q5_k& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const float min = fp16_to_fp32(b.dmin);
  const std::uint8_t* ql = b.qs;
  int is = 0;
  std::uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < qk_k; j += 64) {
    std::uint8_t sc = 0, m = 0;
    get_scale_min_k4(is + 0, b.scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    get_scale_min_k4(is + 1, b.scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<std::uint8_t>(u1 << 2);
    u2 = static_cast<std::uint8_t>(u2 << 2);
  }
}

inline void dequantize_q6_k(const block_q6_k& b, float* y) noexcept {
  const float d = fp16_to_fp32(b.d);
  const std::uint8_t* ql = b.ql;
  const std::uint8_t* qh = b.qh;
  const std::int8_t* sc = b.scales;
  for (int n = 0; n < qk_k; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace ref

MIXPREC_STRICT_FP_END
}  // namespace mixprec::ggml

#undef MIXPREC_GGML_INLINE_
#undef MIXPREC_GGML_OUTLINE_
