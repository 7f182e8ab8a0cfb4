// quantized_tensor: packed codes, scales and zero points of one weight matrix, with its spec and shape.
//
// Storage (all counted by bytes()):
// - codes: rows * row_code_bytes(format, cols) bytes; each row packed as formats/formats.hpp describes
//   (FP16/BF16: little-endian uint16 per element; FP32: the float bytes). llama.cpp's block types
//   (format_id::ggml_block): each row is its ggml blocks, exactly as ggml and GGUF store them, scales
//   inside; no separate scales or zero points.
// - scales: scale_count(spec, rows, cols) values in the spec's scale type (little-endian), row-major
//   over (row, group); one value for per_tensor.
// - zero points: one byte per scale for asymmetric integer formats, none otherwise.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// Stored scale value as FP32 (exact).
[[nodiscard]] inline float decode_scale(scale_type t, const std::uint8_t* p) noexcept {
  if (t == scale_type::fp32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return t == scale_type::fp16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
}
// Rounds d to the scale type (returns the stored value as FP32) and writes its bytes to p if non-null.
inline float encode_scale(scale_type t, float d, std::uint8_t* p = nullptr) noexcept {
  if (t == scale_type::fp32) {
    if (p) std::memcpy(p, &d, 4);
    return d;
  }
  const std::uint16_t h = t == scale_type::fp16 ? fp32_to_fp16(d) : fp32_to_bf16(d);
  if (p) std::memcpy(p, &h, 2);
  return t == scale_type::fp16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
}

class quantized_tensor {
 public:
  quantized_tensor() = default;

  // Takes ownership of the buffers; throws mixprec::error if their sizes do not match spec and shape.
  quantized_tensor(quant_spec spec, index_t rows, index_t cols, std::vector<std::uint8_t> codes,
                   std::vector<std::uint8_t> scales, std::vector<std::uint8_t> zero_points)
      : spec_(spec), rows_(rows), cols_(cols), codes_(std::move(codes)), scales_(std::move(scales)),
        zero_points_(std::move(zero_points)) {
    validate(spec_);
    if (rows <= 0 || cols <= 0)
      throw error(errc::empty_input, "quantized_tensor: shape " + std::to_string(rows) + "x" + std::to_string(cols));
    (void)mixprec::row_bytes(spec_, cols);  // throws when a ggml block type does not tile the rows
    const auto n_scales = static_cast<std::size_t>(scale_count(spec_, rows, cols));
    const bool has_zero = spec_.scheme == scheme_id::asymmetric && is_integer(spec_.format);
    if (codes_.size() != static_cast<std::size_t>(rows) * row_bytes() ||
        scales_.size() != n_scales * static_cast<std::size_t>(bytes_of(spec_.scales)) ||
        zero_points_.size() != (has_zero ? n_scales : 0))
      throw error(errc::shape_mismatch, "quantized_tensor: buffer sizes do not match " + to_string(spec_) + " " +
                                            std::to_string(rows) + "x" + std::to_string(cols));
  }

  [[nodiscard]] const quant_spec& spec() const noexcept { return spec_; }
  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t size() const noexcept { return rows_ * cols_; }

  // Bytes of packed codes per row.
  [[nodiscard]] std::size_t row_bytes() const noexcept {
    return spec_.format == format_id::ggml_block ? static_cast<std::size_t>(cols_ / ggml::block_size(spec_.ggml)) *
                                                       static_cast<std::size_t>(ggml::type_size(spec_.ggml))
                                                 : row_code_bytes(spec_.format, cols_);
  }
  // Scales per row (1 for per_channel, ceil(cols / group) for per_group; per_tensor shares one).
  [[nodiscard]] index_t groups_per_row() const noexcept {
    return spec_.granularity == granularity_id::per_group ? (cols_ + spec_.group_size - 1) / spec_.group_size : 1;
  }
  // Elements covered by one scale along a row.
  [[nodiscard]] index_t group_length() const noexcept { return segment_length(spec_, cols_); }

  [[nodiscard]] std::span<const std::uint8_t> codes() const noexcept { return codes_; }
  [[nodiscard]] const std::uint8_t* row_codes(index_t r) const noexcept {
    return codes_.data() + static_cast<std::size_t>(r) * row_bytes();
  }
  [[nodiscard]] std::span<const std::uint8_t> scale_bytes() const noexcept { return scales_; }
  [[nodiscard]] std::span<const std::uint8_t> zero_point_bytes() const noexcept { return zero_points_; }

  // Scale of group g of row r, as FP32 (0 for unscaled formats).
  [[nodiscard]] float scale(index_t r, index_t g) const noexcept {
    if (!needs_scale(spec_.format)) return 0.0f;
    return decode_scale(spec_.scales, scales_.data() + scale_index(r, g) * bytes_of(spec_.scales));
  }
  // Zero point of group g of row r (fixed 2^(bits-1) for symmetric integer formats).
  [[nodiscard]] int zero_point(index_t r, index_t g) const noexcept {
    if (!is_integer(spec_.format)) return 0;
    if (spec_.scheme == scheme_id::symmetric) return 1 << (bits_of(spec_.format) - 1);
    return zero_points_[scale_index(r, g)];
  }

  // Moves the buffers out (leaving this tensor empty) so that a new quantization can reuse them.
  void release_buffers(std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& scales,
                       std::vector<std::uint8_t>& zero_points) noexcept {
    codes.swap(codes_);
    scales.swap(scales_);
    zero_points.swap(zero_points_);
    codes_.clear();
    scales_.clear();
    zero_points_.clear();
    rows_ = cols_ = 0;
  }

  // Exact storage: codes + scales + zero points. Equals quantized_bytes(spec(), rows(), cols()).
  [[nodiscard]] std::size_t bytes() const noexcept { return codes_.size() + scales_.size() + zero_points_.size(); }
  // Bits per weight with every scale and zero point counted.
  [[nodiscard]] double bits_per_weight() const noexcept {
    return 8.0 * static_cast<double>(bytes()) / static_cast<double>(size());
  }

 private:
  [[nodiscard]] std::size_t scale_index(index_t r, index_t g) const noexcept {
    if (spec_.granularity == granularity_id::per_tensor) return 0;
    return static_cast<std::size_t>(r * groups_per_row() + g);
  }

  quant_spec spec_{};
  index_t rows_ = 0;
  index_t cols_ = 0;
  std::vector<std::uint8_t> codes_;
  std::vector<std::uint8_t> scales_;
  std::vector<std::uint8_t> zero_points_;
};

}  // namespace mixprec
