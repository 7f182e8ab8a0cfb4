// Kernel sets: the scalar reference and the xsimd kernels behind one static interface, so that the
// quantize/dequantize drivers are written once and instantiated for either (tests compare the two).
#pragma once

#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "mixprec/kernels/quantize_simd.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"

namespace mixprec {

// The scalar ground truth.
struct reference_kernels {
  static ref::range_stats min_max(const float* x, index_t n) noexcept { return ref::min_max(x, n); }
  static void quantize_codes(const float* x, index_t n, float inv, int z, int m, std::uint8_t* u) noexcept {
    ref::quantize_codes(x, n, inv, z, m, u);
  }
  static void dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
    ref::dequantize_codes(u, n, d, z, y);
  }
  template <int Bits>
  static void pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
    ref::pack<Bits>(u, n, out);
  }
  template <int Bits>
  static void unpack(const std::uint8_t* p, index_t n, std::uint8_t* u) noexcept {
    ref::unpack<Bits>(p, n, u);
  }
  static void to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept { ref::to_fp16(x, n, h); }
  static void from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept { ref::from_fp16(h, n, x); }
  static void to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept { ref::to_bf16(x, n, h); }
  static void from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept { ref::from_bf16(h, n, x); }
};

// xsimd kernels for architecture Arch (FP8 and stochastic rounding fall back to the reference).
template <class Arch>
struct simd_kernels {
  static ref::range_stats min_max(const float* x, index_t n) noexcept { return simd::min_max(Arch{}, x, n); }
  static void quantize_codes(const float* x, index_t n, float inv, int z, int m, std::uint8_t* u) noexcept {
    simd::quantize_codes(Arch{}, x, n, inv, z, m, u);
  }
  static void dequantize_codes(const std::uint8_t* u, index_t n, float d, int z, float* y) noexcept {
    simd::dequantize_codes(Arch{}, u, n, d, z, y);
  }
  template <int Bits>
  static void pack(const std::uint8_t* u, index_t n, std::uint8_t* out) noexcept {
    simd::pack<Bits>(Arch{}, u, n, out);
  }
  template <int Bits>
  static void unpack(const std::uint8_t* p, index_t n, std::uint8_t* u) noexcept {
    simd::unpack<Bits>(Arch{}, p, n, u);
  }
  static void to_fp16(const float* x, index_t n, std::uint16_t* h) noexcept { simd::to_fp16(Arch{}, x, n, h); }
  static void from_fp16(const std::uint16_t* h, index_t n, float* x) noexcept { simd::from_fp16(Arch{}, h, n, x); }
  static void to_bf16(const float* x, index_t n, std::uint16_t* h) noexcept { simd::to_bf16(Arch{}, x, n, h); }
  static void from_bf16(const std::uint16_t* h, index_t n, float* x) noexcept { simd::from_bf16(Arch{}, h, n, x); }
};

// The kernels mixprec uses by default: the best architecture this translation unit is compiled for.
using default_kernels = simd_kernels<xsimd::default_arch>;

}  // namespace mixprec
