// ggml quantization of Eigen matrices: a weight matrix (row_matrix, one row per output channel) to
// llama.cpp's bytes of a ggml type and back, row by row through kernels/ggml_row.hpp.
//   ggml::quantize(t, W, importance, name)   a row-major matrix, one row per output channel (ggml's
//                        ne1), cols = ne0; importance (optional) has one entry per column, shared by rows
//   ggml::quantize_into(t, W, out, importance, name)   the same into a caller's buffer (an engine's
//                        own, or a tensor's place in a file being written)
//   ggml::dequantize(t, bytes, rows, cols, name)       back to a row_matrix
// Errors name the tensor and the row: a row's error comes back as "ggml quantize 'name', row r: ..."
// with the row's code (error::in_context).
//
// Why quantize/: this is the layer of quantize/quantize.hpp, whose quantize() takes the same Eigen
// matrices to a quantized_tensor and sends llama.cpp's block types (a quant_spec of
// format_id::ggml_block) here; nothing below quantize/ takes an Eigen matrix. The pieces below it,
// which formats/ggml.hpp includes together with this one:
//   formats/ggml_blocks.hpp    the block structs, ggml_type and its traits
//   kernels/ref/ggml_ref.hpp   ggml's reference quantizers and decoders, one block at a time
//   kernels/ggml_row.hpp       checked rows: ggml::quantize_row / ggml::dequantize_row
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/detail/strict_fp.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/ggml_row.hpp"

namespace mixprec::ggml {

// Compiled without FMA contraction, as the rest of the ggml code (detail/strict_fp.hpp).
MIXPREC_STRICT_FP_BEGIN

// Quantizes a weight matrix (rows = ggml's ne1, cols = ne0) row by row into out, which holds exactly
// rows * row_bytes(t, cols) bytes (errc::shape_mismatch otherwise): an engine's own buffer, or a
// tensor's place in a file being written. importance: optional, one entry per column (an imatrix
// vector), applied to every row. `name` appears in error messages.
inline void quantize_into(ggml_type t, const row_matrix_ref& w, std::span<std::byte> out,
                          std::optional<std::span<const float>> importance = std::nullopt, std::string_view name = "tensor") {
  const std::string tn = "'" + std::string(name) + "'";
  if (w.size() == 0) throw error(errc::empty_input, "ggml quantize " + tn + ": empty matrix");
  std::size_t rb = 0;
  try {
    rb = row_bytes(t, w.cols());
  } catch (const error& e) {
    throw e.in_context("ggml quantize " + tn + " (" + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + ")");
  }
  if (importance && static_cast<index_t>(importance->size()) != w.cols())
    throw error(errc::shape_mismatch, "ggml quantize " + tn + ": importance has " + std::to_string(importance->size()) +
                                          " entries, expected one per column (" + std::to_string(w.cols()) + ")");
  if (out.size() / rb != static_cast<std::size_t>(w.rows()) || out.size() % rb != 0)
    throw error(errc::shape_mismatch, "ggml quantize " + tn + ": " + std::to_string(w.rows()) + " rows of " +
                                          std::string(to_string(t)) + " need " + std::to_string(rb) + " bytes each, the output has " +
                                          std::to_string(out.size()));
  // The importance is checked once here, not per row; a bad one takes quantize_row's checks, which
  // report it (or row 0's bad values) exactly as they did.
  const bool fast = !importance || detail::weights_valid(importance->data(), importance->size());
  const float* qw = importance && traits(t).takes_weights ? importance->data() : nullptr;
  const auto n = static_cast<std::size_t>(w.cols());
  for (index_t r = 0; r < w.rows(); ++r) {
    const std::span<const float> row(w.data() + r * w.outerStride(), n);
    try {
      if (fast) detail::quantize_row_body(t, row.data(), n, out.data() + static_cast<std::size_t>(r) * rb, qw);
      else quantize_row(t, row, out.subspan(static_cast<std::size_t>(r) * rb, rb), importance);
    } catch (const error& e) {
      throw e.in_context("ggml quantize " + tn + ", row " + std::to_string(r));
    }
  }
}

// quantize_into a new buffer of rows * row_bytes(t, cols) bytes.
[[nodiscard]] inline std::vector<std::byte> quantize(ggml_type t, const row_matrix_ref& w,
                                                     std::optional<std::span<const float>> importance = std::nullopt,
                                                     std::string_view name = "tensor") {
  std::size_t rb = 0;
  try {
    rb = row_bytes(t, w.cols());
  } catch (const error& e) {
    throw e.in_context("ggml quantize '" + std::string(name) + "' (" + std::to_string(w.rows()) + "x" + std::to_string(w.cols()) + ")");
  }
  std::vector<std::byte> out(rb * static_cast<std::size_t>(w.rows()));
  quantize_into(t, w, out, importance, name);
  return out;
}

// Decodes rows x cols values of type t from bytes (exactly rows * row_bytes(t, cols) of them).
[[nodiscard]] inline row_matrix dequantize(ggml_type t, std::span<const std::byte> bytes, index_t rows, index_t cols,
                                           std::string_view name = "tensor") {
  if (rows <= 0) throw error(errc::empty_input, "ggml dequantize '" + std::string(name) + "': no rows");
  const std::size_t rb = row_bytes(t, cols);
  if (bytes.size() / rb < static_cast<std::size_t>(rows) || bytes.size() != rb * static_cast<std::size_t>(rows))
    throw error(errc::shape_mismatch, "ggml dequantize '" + std::string(name) + "': " + std::to_string(rows) + "x" +
                                          std::to_string(cols) + " " + std::string(to_string(t)) + " needs " +
                                          std::to_string(rb) + " bytes per row, got " + std::to_string(bytes.size()) +
                                          " bytes in all");
  row_matrix m(rows, cols);
  for (index_t r = 0; r < rows; ++r)
    dequantize_row(t, bytes.subspan(static_cast<std::size_t>(r) * rb, rb),
                   std::span<float>(m.data() + r * cols, static_cast<std::size_t>(cols)));
  return m;
}

MIXPREC_STRICT_FP_END
}  // namespace mixprec::ggml
