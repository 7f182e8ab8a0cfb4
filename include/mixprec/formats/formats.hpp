// Number formats as types (int2/int4/int8, fp8_e4m3, fp16, bf16, fp32) with their traits.
//
// Integer codes are stored unsigned, `Bits` bits each, packed little-end first within a byte:
// element 2i of a row sits in the low nibble of byte i and element 2i+1 in the high nibble (INT4);
// INT2 puts element 4i+k at bits 2k..2k+1. Every row starts on a byte boundary. The value of a code u
// is scale * (u - zero_point); a symmetric scheme fixes zero_point = 2^(Bits-1), so INT4 symmetric
// codes are ggml's Q4_0 offset-binary codes and INT8 symmetric code u is the int8 value u ^ 0x80.
//
// ggml_block stands for llama.cpp's block formats (Q4_0 ... Q6_K, IQ4_NL, IQ4_XS): the quant_spec
// names which one (quantize/spec.hpp), formats/ggml.hpp lays them out and quantizes them (its pieces:
// formats/ggml_blocks.hpp, kernels/ref/ggml_ref.hpp, kernels/ggml_row.hpp, quantize/ggml.hpp). Their
// scales live inside the blocks, so the format has no element width of its own (bits_of: 0; a spec's
// nominal_bits gives the type's).
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>

namespace mixprec {

enum class format_id : std::uint8_t { int2, int4, int8, fp8_e4m3, fp16, bf16, fp32, ggml_block };

// An integer format of Bits bits, codes 0 .. 2^Bits - 1.
template <int Bits>
struct int_format {
  static_assert(Bits == 2 || Bits == 4 || Bits == 8, "codes must tile a byte");
  static constexpr format_id id = Bits == 2 ? format_id::int2 : Bits == 4 ? format_id::int4 : format_id::int8;
  static constexpr int bits = Bits;
  static constexpr bool is_integer = true;
  static constexpr bool needs_scale = true;
  static constexpr int max_code = (1 << Bits) - 1;
  static constexpr int codes_per_byte = 8 / Bits;
};
using int2 = int_format<2>;
using int4 = int_format<4>;
using int8 = int_format<8>;

// OCP FP8 E4M3 ("E4M3FN"), scaled so that the largest magnitude maps to 448.
struct fp8_e4m3 {
  static constexpr format_id id = format_id::fp8_e4m3;
  static constexpr int bits = 8;
  static constexpr bool is_integer = false;
  static constexpr bool needs_scale = true;
};
// IEEE binary16, stored unscaled.
struct fp16 {
  static constexpr format_id id = format_id::fp16;
  static constexpr int bits = 16;
  static constexpr bool is_integer = false;
  static constexpr bool needs_scale = false;
};
// bfloat16 (the top half of an FP32), stored unscaled.
struct bf16 {
  static constexpr format_id id = format_id::bf16;
  static constexpr int bits = 16;
  static constexpr bool is_integer = false;
  static constexpr bool needs_scale = false;
};
// FP32 kept as is: the "do not quantize" choice of a plan.
struct fp32 {
  static constexpr format_id id = format_id::fp32;
  static constexpr int bits = 32;
  static constexpr bool is_integer = false;
  static constexpr bool needs_scale = false;
};

// One of llama.cpp's block formats (which one: quant_spec::ggml); scales are inside the blocks.
struct ggml_block {
  static constexpr format_id id = format_id::ggml_block;
  static constexpr int bits = 0;  // no fixed element width: see quant_spec's nominal_bits
  static constexpr bool is_integer = false;
  static constexpr bool needs_scale = false;
};

template <class F>
concept Format = requires {
  { F::id } -> std::convertible_to<format_id>;
  { F::bits } -> std::convertible_to<int>;
  { F::is_integer } -> std::convertible_to<bool>;
  { F::needs_scale } -> std::convertible_to<bool>;
};
template <class F>
concept IntegerFormat = Format<F> && F::is_integer;
template <class F>
concept FloatFormat = Format<F> && !F::is_integer;

static_assert(IntegerFormat<int4> && IntegerFormat<int8> && IntegerFormat<int2>);
static_assert(FloatFormat<fp16> && FloatFormat<bf16> && FloatFormat<fp8_e4m3> && FloatFormat<fp32>);
static_assert(int4::codes_per_byte == 2 && int2::codes_per_byte == 4 && int8::max_code == 255);

// Storage bits of one element of the format (without scales).
[[nodiscard]] constexpr int bits_of(format_id f) noexcept {
  switch (f) {
    case format_id::int2: return 2;
    case format_id::int4: return 4;
    case format_id::int8: return 8;
    case format_id::fp8_e4m3: return 8;
    case format_id::fp16: return 16;
    case format_id::bf16: return 16;
    case format_id::fp32: return 32;
    case format_id::ggml_block: return 0;
  }
  return 0;
}
[[nodiscard]] constexpr bool is_integer(format_id f) noexcept {
  return f == format_id::int2 || f == format_id::int4 || f == format_id::int8;
}
// Whether the format carries scales (integer formats and FP8).
[[nodiscard]] constexpr bool needs_scale(format_id f) noexcept { return is_integer(f) || f == format_id::fp8_e4m3; }

[[nodiscard]] constexpr std::string_view to_string(format_id f) noexcept {
  switch (f) {
    case format_id::int2: return "int2";
    case format_id::int4: return "int4";
    case format_id::int8: return "int8";
    case format_id::fp8_e4m3: return "fp8_e4m3";
    case format_id::fp16: return "fp16";
    case format_id::bf16: return "bf16";
    case format_id::fp32: return "fp32";
    case format_id::ggml_block: return "ggml";
  }
  return "?";
}

// Calls f(Format{}) with the compile-time type of a run-time format id: the one switch from the
// run-time description to the compile-time form.
template <class F>
decltype(auto) visit_format(format_id id, F&& f) {
  switch (id) {
    case format_id::int2: return f(int2{});
    case format_id::int4: return f(int4{});
    case format_id::int8: return f(int8{});
    case format_id::fp8_e4m3: return f(fp8_e4m3{});
    case format_id::fp16: return f(fp16{});
    case format_id::bf16: return f(bf16{});
    case format_id::ggml_block: return f(ggml_block{});
    case format_id::fp32: break;
  }
  return f(fp32{});
}

}  // namespace mixprec
