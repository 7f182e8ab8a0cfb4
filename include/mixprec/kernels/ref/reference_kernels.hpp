// reference_kernels: the scalar reference (kernels/ref/quantize_ref.hpp) as a kernel set
// (kernels/kernel_set.hpp states the interface); the ground truth every SIMD kernel set is tested against.
#pragma once

#include <cstdint>

#include "mixprec/types.hpp"
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

}  // namespace mixprec
