// ggml rows, checked: one row of n floats to ggml's bytes of type t and back, through the block
// references of kernels/ref/ggml_ref.hpp (the bytes are llama.cpp's). Spans of floats and bytes, no Eigen.
//   ggml::quantize_row(t, x, out, weights)   x: n floats; out: row_bytes(t, n) bytes; weights: optional
//                        per-element importance (llama.cpp's imatrix row; kernels/ref/ggml_ref.hpp
//                        says what each type's search does with it)
//   ggml::dequantize_row(t, in, y)           ggml's dequantize_row_* (F16/BF16: exact conversions)
// Bad input is an error, never silent garbage: a length that is not a multiple of the block or a
// buffer of the wrong size -> errc::invalid_argument / errc::shape_mismatch; NaN/Inf anywhere in x ->
// errc::non_finite; a value beyond what an FP16 block scale can reach, a scale (or an F16 value)
// beyond FP16's range -> errc::not_representable (ggml would store Inf); a negative or non-finite
// importance weight -> errc::invalid_argument.
//
// Speed: one pass per row does the NaN/Inf/range check (integer compares on |x|'s bits, vectorised),
// and the F16/BF16 conversions report overflow and NaN/Inf from their own results. These row passes
// are compiled per instruction-set level (kernels/simd/ggml_row_passes.hpp) and picked by active_isa().
//
// The neighbouring pieces (formats/ggml.hpp includes them all):
//   formats/ggml_blocks.hpp    the block structs, ggml_type and its traits
//   kernels/ref/ggml_ref.hpp   ggml's reference quantizers and decoders, one block at a time
//   quantize/ggml.hpp          matrices: ggml::quantize / quantize_into / dequantize (the importance
//                              checked once per matrix, then this file's row body per row)
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "mixprec/detail/strict_fp.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"
#include "mixprec/kernels/simd/ggml_row_passes.hpp"

namespace mixprec::ggml {

// Every function of this namespace is compiled without FMA contraction (detail/strict_fp.hpp): the
// bytes are ggml's in any user build, -march=native and GCC's GNU modes included.
MIXPREC_STRICT_FP_BEGIN

namespace detail {

inline bool half_overflows(std::uint16_t h) noexcept { return (h & 0x7C00u) == 0x7C00u; }

// ggml's sigma2 of a row for the weighted *_impl paths: one FP32 sum of x^2 in order, over the row length.
inline float row_sigma2(const float* x, std::int64_t n) noexcept {
  float sum_x2 = 0.0f;
  for (std::int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

[[noreturn]] inline void throw_scale_overflow(ggml_type t, std::size_t block, std::string_view what) {
  throw error(errc::not_representable, std::string(to_string(t)) + " block " + std::to_string(block) + ": the " +
                                           std::string(what) + " exceeds FP16's range (|values| too large for this type)");
}

template <class Block>
Block load_block(const std::byte* p) noexcept {
  Block b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

template <class Block>
void store_block(const Block& b, std::byte* p) noexcept {
  std::memcpy(p, &b, sizeof b);
}

// A block's FP16 fields must stay finite: ggml would store Inf, mixprec refuses (errc::not_representable).
template <class Block>
void check_halves(const Block& k, ggml_type t, std::size_t b) {
  if (half_overflows(k.d)) throw_scale_overflow(t, b, "scale d");
  if constexpr (requires { k.m; })
    if (half_overflows(k.m)) throw_scale_overflow(t, b, "minimum m");
  if constexpr (requires { k.dmin; })
    if (half_overflows(k.dmin)) throw_scale_overflow(t, b, "min scale dmin");
}

// Quantizes nb blocks of Block from px into po: plain(x, block) without importance, weighted(x, qw,
// block) with (qw: the importance of the row, or null); each block checked and stored.
template <class Block, class Plain, class Weighted>
void quantize_blocks(ggml_type t, const float* px, const float* qw, std::byte* po, std::size_t nb, Plain plain, Weighted weighted) {
  // Weights per block (the K-quants' and IQ4_XS's super-block of 256, else 32), known at compile time.
  constexpr std::size_t bs = std::is_same_v<Block, block_q2_k> || std::is_same_v<Block, block_q3_k> || std::is_same_v<Block, block_q4_k> ||
                                     std::is_same_v<Block, block_q5_k> || std::is_same_v<Block, block_q6_k> ||
                                     std::is_same_v<Block, block_iq4_xs>
                                 ? qk_k
                                 : 32;
  for (std::size_t b = 0; b < nb; ++b) {
    Block blk{};
    if constexpr (!std::is_same_v<Weighted, std::nullptr_t>) {
      if (qw) weighted(px + b * bs, qw + b * bs, blk);
      else plain(px + b * bs, blk);
    } else {
      plain(px + b * bs, blk);
    }
    check_halves(blk, t, b);
    store_block(blk, po + b * sizeof blk);
  }
}

// quantize_blocks for the 32-element types whose weighted search (ggml's quantize_row_q{4,5}_{0,1}_impl)
// also takes sigma2, the mean x^2 of the whole row of n elements.
template <class Block, class Plain, class Weighted>
void quantize_blocks_row_sigma2(ggml_type t, const float* px, const float* qw, std::byte* po, std::size_t nb, std::int64_t n, Plain plain,
                                Weighted weighted) {
  const float sigma2 = qw ? row_sigma2(px, n) : 0.0f;
  quantize_blocks<Block>(t, px, qw, po, nb, plain, [&](const float* xb, const float* wb, Block& y) { weighted(xb, wb, sigma2, y); });
}

// The error a row whose values fail the range check gets: the first NaN/Inf, else the first element
// beyond `limit` (block types: 1e12, beyond what an FP16 block scale can reach).
[[noreturn]] inline void throw_row_values(ggml_type t, const float* x, std::size_t n, float limit) {
  const std::string tn(to_string(t));
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw error(errc::non_finite, tn + " quantization: " + (std::isnan(x[i]) ? "NaN" : "Inf") + " at element " + std::to_string(i) +
                                        " of the row");
  for (std::size_t i = 0; i < n; ++i)
    if (std::fabs(x[i]) > limit)
      throw error(errc::not_representable, tn + " quantization: element " + std::to_string(i) + " (" + std::to_string(x[i]) +
                                               ") is far beyond what an FP16 block scale can reach");
  throw error(errc::non_finite, tn + " quantization: a value failed the range check");  // not reached
}

// True when the importance weights are all finite and non-negative (one vectorised pass: a negative
// value has the sign bit, NaN/Inf the top exponent).
inline bool weights_valid(const float* w, std::size_t n) noexcept {
  std::uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = std::bit_cast<std::uint32_t>(w[i]);
    bad |= static_cast<std::uint32_t>(b >= 0x7f800000u) & static_cast<std::uint32_t>(b != 0x80000000u);  // -0 is fine
  }
  return bad == 0;
}

[[noreturn]] inline void throw_weights(ggml_type t, const float* w, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i]) || w[i] < 0.0f)
      throw error(errc::invalid_argument, std::string(to_string(t)) + " quantization: importance weight " + std::to_string(i) +
                                              " is negative or not finite");
  throw error(errc::invalid_argument, std::string(to_string(t)) + " quantization: an importance weight is invalid");  // not reached
}

// quantize_row after its argument checks: x finite values are checked here, fused with a pass the
// type makes anyway where it can; qw: validated importance, or null.
MIXPREC_STRICT_FP_ENTRY inline void quantize_row_body(ggml_type t, const float* px, std::size_t n, std::byte* po, const float* qw) {
  constexpr std::int32_t finite_limit = 0x7f7fffff;  // FLT_MAX
  const std::int32_t block_limit = std::bit_cast<std::int32_t>(1e12f);
  const row_passes rp = active_row_passes();
  switch (t) {
    case ggml_type::f32:
      // One memcpy per row first (glibc's `rep movsb` for rows this long, which reads and writes at
      // once, as ggml's single memcpy of the tensor does), then the check on the row it left in L1.
      std::memcpy(po, px, n * sizeof(float));
      if (rp.exceeds(px, n, finite_limit)) throw_row_values(t, px, n, std::numeric_limits<float>::max());
      return;
    case ggml_type::f16:
      // NaN/Inf input and overflow all come out with FP16's top exponent: one conversion pass finds them.
      if (rp.half(px, n, po)) {
        if (rp.exceeds(px, n, finite_limit)) throw_row_values(t, px, n, std::numeric_limits<float>::max());
        for (std::size_t i = 0; i < n; ++i)
          if (half_overflows(fp32_to_fp16(px[i])))
            throw error(errc::not_representable, "f16: element " + std::to_string(i) + " (" + std::to_string(px[i]) +
                                                     ") is beyond FP16's range (max 65504)");
      }
      return;
    case ggml_type::bf16:
      // Rounding up to Inf is BF16's (and ggml's) answer for values near FLT_MAX; NaN/Inf input is an error.
      if (rp.bfloat(px, n, po)) throw_row_values(t, px, n, std::numeric_limits<float>::max());
      return;
    default: break;
  }
  if (rp.exceeds(px, n, block_limit)) throw_row_values(t, px, n, 1e12f);
  const std::size_t nb = n / (t == ggml_type::q8_0 || t == ggml_type::q4_0 || t == ggml_type::q4_1 || t == ggml_type::q5_0 ||
                                      t == ggml_type::q5_1 || t == ggml_type::iq4_nl
                                  ? std::size_t{32}
                                  : static_cast<std::size_t>(qk_k));
  switch (t) {
    case ggml_type::q8_0: return quantize_blocks<block_q8_0>(t, px, nullptr, po, nb, ref::quantize_q8_0, nullptr);
    case ggml_type::q4_0:
      return quantize_blocks_row_sigma2<block_q4_0>(t, px, qw, po, nb, static_cast<std::int64_t>(n), ref::quantize_q4_0,
                                                    ref::quantize_q4_0_weighted);
    case ggml_type::q4_1:
      return quantize_blocks_row_sigma2<block_q4_1>(t, px, qw, po, nb, static_cast<std::int64_t>(n), ref::quantize_q4_1,
                                                    ref::quantize_q4_1_weighted);
    case ggml_type::q5_0:
      return quantize_blocks_row_sigma2<block_q5_0>(t, px, qw, po, nb, static_cast<std::int64_t>(n), ref::quantize_q5_0,
                                                    ref::quantize_q5_0_weighted);
    case ggml_type::q5_1:
      return quantize_blocks_row_sigma2<block_q5_1>(t, px, qw, po, nb, static_cast<std::int64_t>(n), ref::quantize_q5_1,
                                                    ref::quantize_q5_1_weighted);
    case ggml_type::q2_k: return quantize_blocks<block_q2_k>(t, px, qw, po, nb, ref::quantize_q2_k, ref::quantize_q2_k_weighted);
    case ggml_type::q3_k: return quantize_blocks<block_q3_k>(t, px, qw, po, nb, ref::quantize_q3_k, ref::quantize_q3_k_weighted);
    case ggml_type::q4_k: return quantize_blocks<block_q4_k>(t, px, qw, po, nb, ref::quantize_q4_k, ref::quantize_q4_k_weighted);
    case ggml_type::q5_k: return quantize_blocks<block_q5_k>(t, px, qw, po, nb, ref::quantize_q5_k, ref::quantize_q5_k_weighted);
    case ggml_type::q6_k:
      return quantize_blocks<block_q6_k>(
          t, px, qw, po, nb, [](const float* xb, block_q6_k& y) { ref::quantize_q6_k(xb, y); },
          [](const float* xb, const float* wb, block_q6_k& y) { ref::quantize_q6_k(xb, y, wb); });
    case ggml_type::iq4_nl:
      return quantize_blocks<block_iq4_nl>(
          t, px, qw, po, nb, [](const float* xb, block_iq4_nl& y) { ref::quantize_iq4_nl(xb, nullptr, y); }, ref::quantize_iq4_nl);
    case ggml_type::iq4_xs:
      return quantize_blocks<block_iq4_xs>(
          t, px, qw, po, nb, [](const float* xb, block_iq4_xs& y) { ref::quantize_iq4_xs(xb, nullptr, y); }, ref::quantize_iq4_xs);
    default: return;
  }
}

}  // namespace detail

// Quantizes the row x (length a multiple of block_size(t)) into out (exactly row_bytes(t, x.size())
// bytes). weights: optional per-element importance (x.size() finite, non-negative values), see the top.
MIXPREC_STRICT_FP_ENTRY inline void quantize_row(ggml_type t, std::span<const float> x, std::span<std::byte> out,
                         std::optional<std::span<const float>> weights = std::nullopt) {
  const type_traits tr = traits(t);
  const auto n = static_cast<std::int64_t>(x.size());
  const std::size_t bytes = row_bytes(t, n);
  if (out.size() != bytes)
    throw error(errc::shape_mismatch, std::string(to_string(t)) + " row of " + std::to_string(n) + " elements needs " +
                                          std::to_string(bytes) + " output bytes, got " + std::to_string(out.size()));
  const float* qw = nullptr;
  if (weights) {
    if (weights->size() != x.size())
      throw error(errc::shape_mismatch, std::string(to_string(t)) + " quantization: " + std::to_string(weights->size()) +
                                            " importance weights for a row of " + std::to_string(n));
    // The values come first: a row with NaN reports the NaN, as before the weights were looked at.
    if (!detail::weights_valid(weights->data(), weights->size())) {
      const bool is_float = t == ggml_type::f32 || t == ggml_type::f16 || t == ggml_type::bf16;
      const float limit = is_float ? std::numeric_limits<float>::max() : 1e12f;
      if (detail::isa_baseline::row_exceeds(x.data(), x.size(), std::bit_cast<std::int32_t>(limit)))
        detail::throw_row_values(t, x.data(), x.size(), limit);
      detail::throw_weights(t, weights->data(), weights->size());
    }
    if (tr.takes_weights) qw = weights->data();
  }
  detail::quantize_row_body(t, x.data(), x.size(), out.data(), qw);
}

// Decodes one row: in holds row_bytes(t, y.size()) bytes.
MIXPREC_STRICT_FP_ENTRY inline void dequantize_row(ggml_type t, std::span<const std::byte> in, std::span<float> y) {
  const type_traits tr = traits(t);
  const auto n = static_cast<std::int64_t>(y.size());
  const std::size_t bytes = row_bytes(t, n);
  if (in.size() != bytes)
    throw error(errc::shape_mismatch, std::string(to_string(t)) + " row of " + std::to_string(n) + " elements is " +
                                          std::to_string(bytes) + " bytes, got " + std::to_string(in.size()));
  const std::byte* p = in.data();
  float* py = y.data();
  const auto nb = static_cast<std::size_t>(n / tr.block_size);
  const auto bs = static_cast<std::size_t>(tr.block_size);
  const auto ts = static_cast<std::size_t>(tr.type_size);
  switch (t) {
    case ggml_type::f32: std::memcpy(py, p, bytes); return;
    case ggml_type::f16:
      for (std::size_t i = 0; i < y.size(); ++i) py[i] = fp16_to_fp32(detail::load_block<std::uint16_t>(p + 2 * i));
      return;
    case ggml_type::bf16:
      for (std::size_t i = 0; i < y.size(); ++i) py[i] = bf16_to_fp32(detail::load_block<std::uint16_t>(p + 2 * i));
      return;
    case ggml_type::q8_0:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q8_0(detail::load_block<block_q8_0>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q4_0:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q4_0(detail::load_block<block_q4_0>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q4_1:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q4_1(detail::load_block<block_q4_1>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q5_0:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q5_0(detail::load_block<block_q5_0>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q5_1:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q5_1(detail::load_block<block_q5_1>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q4_k:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q4_k(detail::load_block<block_q4_k>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q5_k:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q5_k(detail::load_block<block_q5_k>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q2_k:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q2_k(detail::load_block<block_q2_k>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q3_k:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q3_k(detail::load_block<block_q3_k>(p + b * ts), py + b * bs);
      return;
    case ggml_type::iq4_nl:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_iq4_nl(detail::load_block<block_iq4_nl>(p + b * ts), py + b * bs);
      return;
    case ggml_type::iq4_xs:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_iq4_xs(detail::load_block<block_iq4_xs>(p + b * ts), py + b * bs);
      return;
    case ggml_type::q6_k:
      for (std::size_t b = 0; b < nb; ++b) ref::dequantize_q6_k(detail::load_block<block_q6_k>(p + b * ts), py + b * bs);
      return;
  }
}

MIXPREC_STRICT_FP_END
}  // namespace mixprec::ggml
