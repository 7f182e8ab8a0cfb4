// FP16 / BF16 / FP8 E4M3 scalar conversions: exhaustive structural checks of IEEE rounding.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "mixprec/formats/float_convert.hpp"

using namespace mixprec;

namespace {
bool is_nan16(std::uint16_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x03FFu) != 0; }
}  // namespace

TEST_CASE("FP16: every finite value round-trips and every midpoint rounds to even", "[formats][fp16]") {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = fp16_to_fp32(bits);
    if (is_nan16(bits)) {
      REQUIRE(std::isnan(f));
      REQUIRE(is_nan16(fp32_to_fp16(f)));
      REQUIRE((fp32_to_fp16(f) & 0x8000u) == (bits & 0x8000u));  // sign kept
      continue;
    }
    REQUIRE(fp32_to_fp16(f) == bits);
    // The next value up in magnitude (same sign), unless this is the largest finite or Inf.
    if ((bits & 0x7FFFu) >= 0x7BFFu) continue;
    const auto next = static_cast<std::uint16_t>(bits + 1);
    const float g = fp16_to_fp32(next);
    const float mid = (f + g) / 2.0f;  // exact: FP16 has 11 significant bits, FP32 24
    const std::uint16_t even = (bits & 1u) == 0 ? bits : next;
    REQUIRE(fp32_to_fp16(mid) == even);
    // Just off the midpoint goes to the nearer side.
    REQUIRE(fp32_to_fp16(std::nextafter(mid, f)) == bits);
    REQUIRE(fp32_to_fp16(std::nextafter(mid, g)) == next);
  }
}

TEST_CASE("FP16: overflow, Inf and NaN", "[formats][fp16]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fp32_to_fp16(65504.0f) == 0x7BFFu);
  CHECK(fp32_to_fp16(65519.99f) == 0x7BFFu);  // below the midpoint to 65536
  CHECK(fp32_to_fp16(65520.0f) == 0x7C00u);   // the midpoint rounds to even: Inf
  CHECK(fp32_to_fp16(1e10f) == 0x7C00u);
  CHECK(fp32_to_fp16(-1e10f) == 0xFC00u);
  CHECK(fp32_to_fp16(inf) == 0x7C00u);
  CHECK(fp32_to_fp16(-inf) == 0xFC00u);
  CHECK(fp32_to_fp16(std::nanf("")) == 0x7E00u);
  CHECK(fp32_to_fp16(-std::nanf("")) == 0xFE00u);
  CHECK(fp16_to_fp32(0x7C00u) == inf);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000u);                    // half the smallest subnormal: even
  CHECK(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 1u);  // just above: rounds up
  CHECK(fp32_to_fp16(-0.0f) == 0x8000u);
}

TEST_CASE("BF16: every value round-trips and midpoints round to even", "[formats][bf16]") {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = bf16_to_fp32(bits);
    if (std::isnan(f)) {
      REQUIRE(std::isnan(bf16_to_fp32(fp32_to_bf16(f))));
      continue;
    }
    REQUIRE(fp32_to_bf16(f) == bits);
    if ((bits & 0x7FFFu) >= 0x7F7Fu) continue;
    const auto next = static_cast<std::uint16_t>(bits + 1);
    const std::uint32_t mid_bits = (static_cast<std::uint32_t>(bits) << 16) | 0x8000u;  // exact midpoint
    const float mid = std::bit_cast<float>(mid_bits);
    REQUIRE(fp32_to_bf16(mid) == ((bits & 1u) == 0 ? bits : next));
    REQUIRE(fp32_to_bf16(std::bit_cast<float>(mid_bits - 1)) == bits);
    REQUIRE(fp32_to_bf16(std::bit_cast<float>(mid_bits + 1)) == next);
  }
  CHECK(fp32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80u);
  CHECK(fp32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80u);  // rounds up to Inf
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0x7F800001u)))));  // signalling NaN stays NaN
}

TEST_CASE("FP8 E4M3: codes, rounding to even, saturation", "[formats][fp8]") {
  CHECK(fp8_e4m3_to_fp32(0x7E) == 448.0f);
  CHECK(fp8_e4m3_to_fp32(0x01) == std::ldexp(1.0f, -9));
  CHECK(fp8_e4m3_to_fp32(0x08) == std::ldexp(1.0f, -6));
  CHECK(fp8_e4m3_to_fp32(0x38) == 1.0f);
  CHECK(std::isnan(fp8_e4m3_to_fp32(0x7F)));
  CHECK(std::isnan(fp8_e4m3_to_fp32(0xFF)));
  for (unsigned c = 0; c < 256; ++c) {
    const auto code = static_cast<std::uint8_t>(c);
    const float f = fp8_e4m3_to_fp32(code);
    if (std::isnan(f)) {
      REQUIRE((fp32_to_fp8_e4m3(f) & 0x7Fu) == 0x7Fu);
      continue;
    }
    if (c == 0x80) {  // -0
      REQUIRE(fp32_to_fp8_e4m3(f) == 0x80);
      continue;
    }
    REQUIRE(fp32_to_fp8_e4m3(f) == code);
    if ((c & 0x7Fu) >= 0x7Eu) continue;
    const auto next = static_cast<std::uint8_t>(c + 1);
    const float g = fp8_e4m3_to_fp32(next);
    const float mid = (f + g) / 2.0f;
    REQUIRE(fp32_to_fp8_e4m3(mid) == ((c & 1u) == 0 ? code : next));
    REQUIRE(fp32_to_fp8_e4m3(std::nextafter(mid, f)) == code);
    REQUIRE(fp32_to_fp8_e4m3(std::nextafter(mid, g)) == next);
  }
  CHECK(fp32_to_fp8_e4m3(464.0f) == 0x7E);  // past the last step: saturates
  CHECK(fp32_to_fp8_e4m3(1e9f) == 0x7E);
  CHECK(fp32_to_fp8_e4m3(-std::numeric_limits<float>::infinity()) == 0xFE);
}
