// Scalar reference kernels: the ground truth every SIMD kernel must match bit for bit.
//
// Numerics (written down once, here):
// - Integer quantize of x with stored scale d (already rounded to the scale type), inv = 1/d in FP32
//   (inv = 0 when d = 0), zero point z and largest code M = 2^bits - 1:
//       t = x * inv                      (multiply by the inverse, never divide)
//       t = min(max(t, -z), M - z)       (clamp in FP32 before rounding; bounds are integers, so this
//                                         equals clamping after rounding)
//       u = nearbyint(t) + z             (round half to even: the default FP environment)
//   u is the stored unsigned code (0..M). Dequantize: x' = d * float(u - z) (integer subtraction,
//   exact conversion, one FP32 multiply).
// - Stochastic rounding replaces nearbyint(t) by floor(t + r), r in [0, 1) from a counter-based hash of
//   (seed, element index), so results do not depend on threading or vector width.
// - FP16 / BF16 / FP8 conversions: see formats/float_convert.hpp. FP8 codes are fp8(x * inv),
//   dequantized as d * float(code).
// - Packing: see formats/formats.hpp (element 2i in the low nibble of byte i for INT4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mixprec/types.hpp"
#include "mixprec/formats/float_convert.hpp"

namespace mixprec::ref {

struct range_stats {
  float lo;     // smallest element
  float hi;     // largest element
  bool finite;  // every element finite
};

// Smallest and largest element of x[0..n), and whether all are finite (lo/hi undefined otherwise).
inline range_stats min_max(const float* x, index_t n) noexcept {
  range_stats s{x[0], x[0], true};
  for (index_t i = 0; i < n; ++i) {
    s.finite = s.finite && std::isfinite(x[i]);
    s.lo = x[i] < s.lo ? x[i] : s.lo;
    s.hi = x[i] > s.hi ? x[i] : s.hi;
  }
  return s;
}

// The clamp-and-round step shared by every integer path (see the numerics above).
inline float clamp_round(float x, float inv, float z, float max_code) noexcept {
  float t = x * inv;
  t = std::min(std::max(t, -z), max_code - z);
  return std::nearbyint(t) + z;
}

// One unsigned code per byte: u[i] = nearbyint(clamp(x[i] * inv, -z, M - z)) + z.
inline void quantize_codes(const float* x, index_t n, float inv, int z, int max_code, std::uint8_t* u) noexcept {
  const auto zf = static_cast<float>(z);
  const auto mf = static_cast<float>(max_code);
  for (index_t i = 0; i < n; ++i) u[i] = static_cast<std::uint8_t>(clamp_round(x[i], inv, zf, mf));
}

// 32-bit finaliser of MurmurHash3: a well-mixed counter-based random source.
inline std::uint32_t hash32(std::uint64_t seed, std::uint64_t index) noexcept {
  std::uint64_t h = seed * 0x9E3779B97F4A7C15ull + index;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return static_cast<std::uint32_t>(h);
}

// Stochastic rounding: u[i] = floor(clamp(x[i] * inv) + r_i) + z, r_i = hash(seed, first + i) / 2^24.
inline void quantize_codes_stochastic(const float* x, index_t n, float inv, int z, int max_code,
                                      std::uint64_t seed, std::uint64_t first, std::uint8_t* u) noexcept {
  const auto zf = static_cast<float>(z);
  const auto mf = static_cast<float>(max_code);
  for (index_t i = 0; i < n; ++i) {
    float t = x[i] * inv;
    t = std::min(std::max(t, -zf), mf - zf);
    const float r = static_cast<float>(hash32(seed, first + static_cast<std::uint64_t>(i)) >> 8) * 0x1.0p-24f;
    const float v = std::min(std::floor(t + r), mf - zf);
    u[i] = static_cast<std::uint8_t>(v + zf);
  }
}

// x'[i] = d * float(u[i] - z).
inline void dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
  for (index_t i = 0; i < n; ++i) y[i] = d * static_cast<float>(static_cast<int>(u[i]) - z);
}

// Packs n codes of Bits bits (one per byte in u) into (n * Bits + 7) / 8 bytes.
template <int Bits>
inline void pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
  constexpr int per_byte = 8 / Bits;
  const index_t bytes = (n * Bits + 7) / 8;
  for (index_t b = 0; b < bytes; ++b) {
    unsigned v = 0;
    for (int k = 0; k < per_byte; ++k) {
      const index_t i = b * per_byte + k;
      if (i < n) v |= static_cast<unsigned>(u[i]) << (k * Bits);
    }
    out[b] = static_cast<std::uint8_t>(v);
  }
}

// Unpacks n codes of Bits bits into one byte each.
template <int Bits>
inline void unpack(const std::uint8_t* packed, index_t n, std::uint8_t* u) noexcept {
  constexpr int per_byte = 8 / Bits;
  constexpr unsigned mask = (1u << Bits) - 1u;
  for (index_t i = 0; i < n; ++i)
    u[i] = static_cast<std::uint8_t>((packed[i / per_byte] >> ((i % per_byte) * Bits)) & mask);
}

inline void to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept {
  for (index_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(x[i]);
}
inline void from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept {
  for (index_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(h[i]);
}
inline void to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept {
  for (index_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(x[i]);
}
inline void from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept {
  for (index_t i = 0; i < n; ++i) x[i] = bf16_to_fp32(h[i]);
}
// c[i] = fp8(x[i] * inv).
inline void to_fp8(const float* x, index_t n, float inv, std::uint8_t* c) noexcept {
  for (index_t i = 0; i < n; ++i) c[i] = fp32_to_fp8_e4m3(x[i] * inv);
}
// x[i] = d * float(c[i]).
inline void from_fp8(const std::uint8_t* c, index_t n, float d, float* x) noexcept {
  for (index_t i = 0; i < n; ++i) x[i] = d * fp8_e4m3_to_fp32(c[i]);
}

}  // namespace mixprec::ref
