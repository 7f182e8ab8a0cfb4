// Scalar conversions between FP32 and the narrow float formats (FP16, BF16, FP8 E4M3).
//
// Numerics, shared bit for bit by the SIMD kernels (kernels/simd/quantize.inl):
// - FP32 -> FP16: IEEE round-to-nearest-even; overflow -> +-Inf; subnormals kept; Inf -> Inf;
//   NaN -> the quiet NaN 0x7E00 with the input's sign (payload dropped).
// - FP32 -> BF16: round-to-nearest-even on the top 16 bits; NaN stays NaN (quiet bit forced).
// - FP32 -> FP8 E4M3 (OCP "E4M3FN": bias 7, no Inf, max 448, NaN = S.1111.111): round-to-nearest-even,
//   saturating: |x| >= 448 (and +-Inf) -> +-448; NaN -> 0x7F with the input's sign.
// - Narrow -> FP32 is exact.
// The FP16 algorithm is the branch-free one of Maratyszcza's FP16 library (the one PyTorch's c10::Half
// uses): rounding is done by an FP32 addition, which makes it vectorise with plain float/int ops.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace mixprec {

// Bits of x as an unsigned integer (and back).
[[nodiscard]] inline std::uint32_t float_bits(float x) noexcept { return std::bit_cast<std::uint32_t>(x); }
[[nodiscard]] inline float float_from_bits(std::uint32_t u) noexcept { return std::bit_cast<float>(u); }

// FP32 -> FP16 bits, round-to-nearest-even.
[[nodiscard]] inline std::uint16_t fp32_to_fp16(float f) noexcept {
  constexpr float scale_to_inf = 0x1.0p+112f;
  constexpr float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const std::uint32_t w = float_bits(f);
  const std::uint32_t shl1_w = w + w;
  const std::uint32_t sign = w & 0x80000000u;
  std::uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = float_from_bits((bias >> 1) + 0x07800000u) + base;
  const std::uint32_t bits = float_bits(base);
  const std::uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const std::uint32_t mantissa_bits = bits & 0x00000FFFu;
  const std::uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<std::uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

// FP16 bits -> FP32, exact (NaN payloads kept).
[[nodiscard]] inline float fp16_to_fp32(std::uint16_t h) noexcept {
  const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
  const std::uint32_t sign = w & 0x80000000u;
  const std::uint32_t two_w = w + w;
  constexpr std::uint32_t exp_offset = 0xE0u << 23;
  constexpr float exp_scale = 0x1.0p-112f;
  const float normalized = float_from_bits((two_w >> 4) + exp_offset) * exp_scale;
  constexpr std::uint32_t magic_mask = 126u << 23;
  constexpr float magic_bias = 0.5f;
  const float denormalized = float_from_bits((two_w >> 17) | magic_mask) - magic_bias;
  constexpr std::uint32_t denormalized_cutoff = 1u << 27;
  const std::uint32_t result =
      sign | (two_w < denormalized_cutoff ? float_bits(denormalized) : float_bits(normalized));
  return float_from_bits(result);
}

// FP32 -> BF16 bits, round-to-nearest-even.
[[nodiscard]] inline std::uint16_t fp32_to_bf16(float f) noexcept {
  std::uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// BF16 bits -> FP32, exact.
[[nodiscard]] inline float bf16_to_fp32(std::uint16_t h) noexcept {
  return float_from_bits(static_cast<std::uint32_t>(h) << 16);
}

inline constexpr float fp8_e4m3_max = 448.0f;

// FP32 -> FP8 E4M3 (OCP E4M3FN) bits, round-to-nearest-even, saturating to +-448.
[[nodiscard]] inline std::uint8_t fp32_to_fp8_e4m3(float f) noexcept {
  const std::uint32_t w = float_bits(f);
  const auto sign = static_cast<std::uint8_t>((w >> 24) & 0x80u);
  const std::uint32_t a = w & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<std::uint8_t>(sign | 0x7Fu);
  if (a >= 0x43E00000u) return static_cast<std::uint8_t>(sign | 0x7Eu);  // >= 448 or Inf
  if (a < 0x3C800000u) {                                                 // below 2^-6: subnormal
    // |x| * 2^9 is exact; its nearest-even integer is the code (8 lands on the smallest normal).
    const float m = std::nearbyint(float_from_bits(a) * 512.0f);
    return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(m));
  }
  const std::uint32_t rounded = a + 0x7FFFFu + ((a >> 20) & 1u);
  return static_cast<std::uint8_t>(sign | ((rounded >> 20) - (120u << 3)));
}

namespace detail {
inline constexpr std::array<float, 256> make_fp8_e4m3_table() noexcept {
  std::array<float, 256> t{};
  for (unsigned c = 0; c < 256; ++c) {
    const unsigned e = (c >> 3) & 0xFu;
    const unsigned m = c & 7u;
    float v = 0.0f;
    if (e == 0xF && m == 7) {
      v = __builtin_nanf("");
    } else if (e == 0) {
      v = static_cast<float>(m) / 512.0f;
    } else {
      v = static_cast<float>(8 + m) / 8.0f;
      for (unsigned i = 7; i < e; ++i) v *= 2.0f;
      for (unsigned i = e; i < 7; ++i) v *= 0.5f;
    }
    t[c] = (c & 0x80u) ? -v : v;
  }
  return t;
}
inline constexpr std::array<float, 256> fp8_e4m3_table = make_fp8_e4m3_table();
}  // namespace detail

// FP8 E4M3 bits -> FP32, exact.
[[nodiscard]] inline float fp8_e4m3_to_fp32(std::uint8_t c) noexcept { return detail::fp8_e4m3_table[c]; }

}  // namespace mixprec
