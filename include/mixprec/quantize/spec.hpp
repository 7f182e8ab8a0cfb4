// quant_spec: the run-time description of a quantizer (what plans and files carry), its canonical
// text form, and the exact storage it needs for a given shape.
//
// Text form (to_string / parse_spec), tokens joined by '/':
//   <format>[/<granularity>][/<scheme>][/<calibration>][/<scale type>][/stochastic]
//   format      int2 | int4 | int8 | fp8_e4m3 | fp16 | bf16 | fp32
//   granularity tensor | channel | g<N>             (default: channel)
//   scheme      sym | asym                          (default: sym)
//   calibration minmax | mse | p<percent>           (default: minmax), e.g. p99.9
//   scale type  s32 | s16 | sbf16                   (FP32, FP16 or BF16 scales; default: s32)
//   rounding    stochastic                          (default: nearest-even; the seed is quant_spec::seed)
// e.g. "int4/g32/sym/minmax/s16" is ggml's Q4_0 layout budget (4.5 bits per weight).
// Unscaled float formats (fp16, bf16, fp32) take no other token.
//
// llama.cpp's block types are specs too, named as llama.cpp names them and taking no other token:
//   q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs   (case-insensitive on input)
// (format_id::ggml_block, the type in quant_spec::ggml; layout: formats/ggml_blocks.hpp, searches:
// kernels/ref/ggml_ref.hpp, byte-identical to llama.cpp's quantizer). llama.cpp's float names f32, f16 and bf16 are read as
// fp32, fp16 and bf16, which store exactly what ggml's F32, F16 and BF16 store.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/formats.hpp"
#include "mixprec/formats/ggml_blocks.hpp"

namespace mixprec {

enum class scheme_id : std::uint8_t { symmetric, asymmetric };
enum class granularity_id : std::uint8_t { per_tensor, per_channel, per_group };
enum class calibration_id : std::uint8_t { minmax, percentile, mse };
enum class scale_type : std::uint8_t { fp32, fp16, bf16 };
enum class rounding_id : std::uint8_t { nearest_even, stochastic };

[[nodiscard]] constexpr int bytes_of(scale_type s) noexcept { return s == scale_type::fp32 ? 4 : 2; }

struct quant_spec {
  format_id format = format_id::int8;
  granularity_id granularity = granularity_id::per_channel;
  index_t group_size = 0;  // elements per group along a row (per_group only)
  scheme_id scheme = scheme_id::symmetric;
  calibration_id calibration = calibration_id::minmax;
  float percentile = 99.9f;  // percentile calibration only, in (50, 100]
  scale_type scales = scale_type::fp32;
  rounding_id rounding = rounding_id::nearest_even;
  std::uint64_t seed = 0;  // stochastic rounding only
  ggml_type ggml = ggml_type::f32;  // format_id::ggml_block only: which block type (f32 = none)

  friend bool operator==(const quant_spec&, const quant_spec&) = default;
};

// The spec of llama.cpp's type t: a ggml_block spec for the block types, fp32 / fp16 / bf16 for F32,
// F16 and BF16 (the same bytes).
[[nodiscard]] inline quant_spec ggml_spec(ggml_type t) noexcept {
  quant_spec s;
  switch (t) {
    case ggml_type::f32: s.format = format_id::fp32; break;
    case ggml_type::f16: s.format = format_id::fp16; break;
    case ggml_type::bf16: s.format = format_id::bf16; break;
    default:
      s.format = format_id::ggml_block;
      s.ggml = t;
      break;
  }
  return s;
}

// llama.cpp's type that stores exactly what spec s stores (a block type, or F32/F16/BF16), if any:
// what a GGUF file can hold.
[[nodiscard]] inline std::optional<ggml_type> ggml_type_of(const quant_spec& s) noexcept {
  switch (s.format) {
    case format_id::ggml_block: return s.ggml;
    case format_id::fp32: return ggml_type::f32;
    case format_id::fp16: return ggml_type::f16;
    case format_id::bf16: return ggml_type::bf16;
    default: return std::nullopt;
  }
}

// Throws mixprec::error when the spec is inconsistent (e.g. per_group without a positive group size).
inline void validate(const quant_spec& s) {
  if (s.format == format_id::ggml_block) {
    if (!is_supported_ggml_type(static_cast<std::uint32_t>(s.ggml)) || ggml_spec(s.ggml).format != format_id::ggml_block)
      throw error(errc::invalid_argument, "a ggml_block spec needs one of llama.cpp's block types, not '" +
                                              std::string(to_string(s.ggml)) + "'");
    return;
  }
  if (!needs_scale(s.format)) return;
  if (s.granularity == granularity_id::per_group && s.group_size <= 0)
    throw error(errc::invalid_argument, "per_group granularity needs a positive group size, got " +
                                            std::to_string(s.group_size));
  if (s.calibration == calibration_id::percentile && !(s.percentile > 50.0f && s.percentile <= 100.0f))
    throw error(errc::invalid_argument,
                "percentile calibration needs a percentile in (50, 100], got " + std::to_string(s.percentile));
  if (s.format == format_id::fp8_e4m3 && s.scheme != scheme_id::symmetric)
    throw error(errc::unsupported, "fp8_e4m3 is symmetric only");
}

// Elements that share one scale along a row (the whole row for per_channel and per_tensor).
[[nodiscard]] inline index_t segment_length(const quant_spec& s, index_t cols) noexcept {
  return s.granularity == granularity_id::per_group ? s.group_size : cols;
}

// Number of scales stored for a rows x cols tensor (a shorter last group counts as a group).
[[nodiscard]] inline index_t scale_count(const quant_spec& s, index_t rows, index_t cols) noexcept {
  if (!needs_scale(s.format)) return 0;
  switch (s.granularity) {
    case granularity_id::per_tensor: return 1;
    case granularity_id::per_channel: return rows;
    case granularity_id::per_group: return rows * ((cols + s.group_size - 1) / s.group_size);
  }
  return 0;
}

// Bytes of packed codes in one row (rows start on a byte boundary); not for ggml_block (see row_bytes).
[[nodiscard]] inline std::size_t row_code_bytes(format_id f, index_t cols) noexcept {
  return (static_cast<std::size_t>(cols) * static_cast<std::size_t>(bits_of(f)) + 7) / 8;
}

// The precision rules compare (plan/rules.hpp): bits of one element for mixprec's formats (int4 4,
// fp16 16...), and for llama.cpp's block types their code width: q2_K 2, q3_K 3, q4_* / iq4_* 4,
// q5_* 5, q6_K 6, q8_0 8 (the scales inside the blocks add 0.25-1 bit, which bits_per_weight counts).
[[nodiscard]] inline int nominal_bits(const quant_spec& s) noexcept {
  if (s.format != format_id::ggml_block) return bits_of(s.format);
  switch (s.ggml) {
    case ggml_type::q2_k: return 2;
    case ggml_type::q3_k: return 3;
    case ggml_type::q5_0:
    case ggml_type::q5_1:
    case ggml_type::q5_k: return 5;
    case ggml_type::q6_k: return 6;
    case ggml_type::q8_0: return 8;
    default: return 4;
  }
}

// Whether spec s can store a tensor whose rows have `cols` values: always, except for llama.cpp's
// block types, whose blocks must tile a row (q4_K needs a multiple of 256; llama.cpp falls back to
// another type for such tensors).
[[nodiscard]] inline bool fits(const quant_spec& s, index_t cols) noexcept {
  return s.format != format_id::ggml_block || (cols > 0 && cols % ggml::block_size(s.ggml) == 0);
}

namespace detail {
[[noreturn]] inline void throw_does_not_fit(const quant_spec& s, index_t cols);
}

// Bytes of one row of `cols` values in spec s (codes only: per-row scales are counted by
// quantized_bytes); throws errc::invalid_argument when s does not fit rows of this length.
[[nodiscard]] inline std::size_t row_bytes(const quant_spec& s, index_t cols) {
  if (s.format != format_id::ggml_block) return row_code_bytes(s.format, cols);
  if (!fits(s, cols)) detail::throw_does_not_fit(s, cols);
  return ggml::row_bytes(s.ggml, cols);
}

// Exact storage of a rows x cols tensor quantized with s: codes + scales + zero points (one byte each).
// Throws mixprec::error(invalid_argument) for a negative shape, or for one whose size does not fit 64
// bits (shapes can come from files: a plan JSON's rows and cols).
[[nodiscard]] inline std::size_t quantized_bytes(const quant_spec& s, index_t rows, index_t cols) {
  validate(s);
  if (rows < 0 || cols < 0) throw error(errc::invalid_argument, "quantized_bytes: negative shape");
  using detail::checked_u64;
  if (s.format == format_id::ggml_block) {
    if (!fits(s, cols)) detail::throw_does_not_fit(s, cols);
    const checked_u64 total = checked_u64(static_cast<std::uint64_t>(rows)) *
                              static_cast<std::uint64_t>(cols / ggml::block_size(s.ggml)) *
                              static_cast<std::uint64_t>(ggml::type_size(s.ggml));
    if (!total.ok() || total.value() > std::numeric_limits<std::size_t>::max())
      throw error(errc::invalid_argument, "quantized_bytes: a " + std::to_string(rows) + "x" + std::to_string(cols) +
                                              " tensor's size does not fit 64 bits");
    return static_cast<std::size_t>(total.value());
  }
  const auto r = static_cast<std::uint64_t>(rows), c = static_cast<std::uint64_t>(cols);
  checked_u64 n_scales = 0;
  if (needs_scale(s.format)) {
    switch (s.granularity) {
      case granularity_id::per_tensor: n_scales = 1; break;
      case granularity_id::per_channel: n_scales = r; break;
      case granularity_id::per_group: {
        const auto g = static_cast<std::uint64_t>(s.group_size);
        n_scales = checked_u64(r) * (c / g + (c % g != 0 ? 1 : 0));
        break;
      }
    }
  }
  const checked_u64 zero_points = s.scheme == scheme_id::asymmetric && is_integer(s.format) ? n_scales : checked_u64(0);
  const checked_u64 code_bits = checked_u64(c) * static_cast<std::uint64_t>(bits_of(s.format)) + 7;
  const checked_u64 total = checked_u64(r) * (code_bits.value() / 8) + n_scales * static_cast<std::uint64_t>(bytes_of(s.scales)) +
                            zero_points;
  if (!code_bits.ok() || !total.ok() || total.value() > std::numeric_limits<std::size_t>::max())
    throw error(errc::invalid_argument, "quantized_bytes: a " + std::to_string(rows) + "x" + std::to_string(cols) +
                                            " tensor's size does not fit 64 bits");
  return static_cast<std::size_t>(total.value());
}

// Bits per weight with every scale and zero point counted.
[[nodiscard]] inline double bits_per_weight(const quant_spec& s, index_t rows, index_t cols) {
  return 8.0 * static_cast<double>(quantized_bytes(s, rows, cols)) / (static_cast<double>(rows) * static_cast<double>(cols));
}

// Canonical text form; parse_spec(to_string(s)) == s for every valid spec (seed excluded).
[[nodiscard]] inline std::string to_string(const quant_spec& s) {
  if (s.format == format_id::ggml_block) return std::string(to_string(s.ggml));
  std::string out(to_string(s.format));
  if (!needs_scale(s.format)) return out;
  switch (s.granularity) {
    case granularity_id::per_tensor: out += "/tensor"; break;
    case granularity_id::per_channel: out += "/channel"; break;
    case granularity_id::per_group: out += "/g" + std::to_string(s.group_size); break;
  }
  out += s.scheme == scheme_id::symmetric ? "/sym" : "/asym";
  switch (s.calibration) {
    case calibration_id::minmax: out += "/minmax"; break;
    case calibration_id::mse: out += "/mse"; break;
    case calibration_id::percentile: {
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof buf, s.percentile);
      out += "/p" + std::string(buf, r.ptr);
      break;
    }
  }
  out += s.scales == scale_type::fp32 ? "/s32" : s.scales == scale_type::fp16 ? "/s16" : "/sbf16";
  if (s.rounding == rounding_id::stochastic) out += "/stochastic";
  return out;
}

// Parses the text form above; throws mixprec::error(parse_error) naming the bad token.
[[nodiscard]] inline quant_spec parse_spec(std::string_view text) {
  std::vector<std::string_view> tokens;
  for (std::size_t pos = 0;;) {
    const std::size_t slash = text.find('/', pos);
    tokens.push_back(text.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos));
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  auto fail = [&](std::string_view token, std::string_view what) -> error {
    return error(errc::parse_error, "quantizer spec '" + std::string(text) + "': bad token '" +
                                        std::string(token) + "', expected " + std::string(what));
  };
  quant_spec s;
  // llama.cpp's names: block types, and f32 / f16 / bf16 for the float formats.
  for (ggml_type t : all_ggml_types) {
    std::string lower(tokens[0]);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string name(to_string(t));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower != name) continue;
    if (tokens.size() > 1) throw fail(tokens[1], "nothing after llama.cpp's type " + std::string(to_string(t)));
    return ggml_spec(t);
  }
  bool found = false;
  for (format_id f : {format_id::int2, format_id::int4, format_id::int8, format_id::fp8_e4m3, format_id::fp16,
                      format_id::bf16, format_id::fp32}) {
    if (tokens[0] == to_string(f)) {
      s.format = f;
      found = true;
    }
  }
  if (!found)
    throw fail(tokens[0], "a format (int2, int4, int8, fp8_e4m3, fp16, bf16, fp32) or llama.cpp type (q4_0, q4_K, q8_0...)");
  if (!needs_scale(s.format)) {
    if (tokens.size() > 1) throw fail(tokens[1], "nothing after an unscaled float format");
    return s;
  }
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    auto parse_number = [&](std::string_view digits, auto& value) {
      auto r = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (r.ec != std::errc{} || r.ptr != digits.data() + digits.size()) throw fail(t, "a number");
    };
    if (t == "tensor") {
      s.granularity = granularity_id::per_tensor;
    } else if (t == "channel") {
      s.granularity = granularity_id::per_channel;
    } else if (t.size() > 1 && t[0] == 'g') {
      s.granularity = granularity_id::per_group;
      parse_number(t.substr(1), s.group_size);
    } else if (t == "sym") {
      s.scheme = scheme_id::symmetric;
    } else if (t == "asym") {
      s.scheme = scheme_id::asymmetric;
    } else if (t == "minmax") {
      s.calibration = calibration_id::minmax;
    } else if (t == "mse") {
      s.calibration = calibration_id::mse;
    } else if (t.size() > 1 && t[0] == 'p') {
      s.calibration = calibration_id::percentile;
      parse_number(t.substr(1), s.percentile);
    } else if (t == "s32") {
      s.scales = scale_type::fp32;
    } else if (t == "s16") {
      s.scales = scale_type::fp16;
    } else if (t == "sbf16") {
      s.scales = scale_type::bf16;
    } else if (t == "stochastic") {
      s.rounding = rounding_id::stochastic;
    } else {
      throw fail(t, "tensor|channel|g<N>|sym|asym|minmax|mse|p<pct>|s32|s16|sbf16|stochastic");
    }
  }
  try {
    validate(s);
  } catch (const error& e) {
    throw e.in_context("quantizer spec '" + std::string(text) + "'", errc::parse_error);
  }
  return s;
}

namespace detail {
inline void throw_does_not_fit(const quant_spec& s, index_t cols) {
  throw error(errc::invalid_argument, to_string(s) + " stores rows whose length is a multiple of its block of " +
                                          std::to_string(ggml::block_size(s.ggml)) + " values; these rows have " +
                                          std::to_string(cols));
}
}  // namespace detail

}  // namespace mixprec
