// Scalar reference for quantized matrix-vector products: y = Q(W) x, each weight dequantized exactly
// as dequantize() does (value = scale * (code - zero point), FP16/BF16/FP8 converted exactly), products
// accumulated in double. The SIMD kernels (kernels/gemv.hpp) are checked against it within a bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/kernels/ref/reference_kernels.hpp"
#include "mixprec/kernels/ref/row_codec.hpp"
#include "mixprec/error.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"

namespace mixprec::ref {

// The FP32 weights of row r of w (exactly dequantize()'s values): the row codec with the scalar kernels.
inline void dequantize_row(const quantized_tensor& w, index_t r, float* out) {
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(w.cols()));
  decode_row<reference_kernels>(w, r, out, codes.data());
}

// y[r] = sum_j Q(W)[r, j] * x[j], in double, rounded once to float.
inline void gemv(const quantized_tensor& w, const float* x, float* y) {
  std::vector<float> row(static_cast<std::size_t>(w.cols()));
  for (index_t r = 0; r < w.rows(); ++r) {
    dequantize_row(w, r, row.data());
    double acc = 0.0;
    for (index_t j = 0; j < w.cols(); ++j) acc += static_cast<double>(row[static_cast<std::size_t>(j)]) * x[j];
    y[r] = static_cast<float>(acc);
  }
}

// Sum over j of |Q(W)[r, j] * x[j]| per row: the scale of the rounding error of any summation order.
inline void gemv_abs(const quantized_tensor& w, const float* x, double* y) {
  std::vector<float> row(static_cast<std::size_t>(w.cols()));
  for (index_t r = 0; r < w.rows(); ++r) {
    dequantize_row(w, r, row.data());
    double acc = 0.0;
    for (index_t j = 0; j < w.cols(); ++j) acc += std::abs(static_cast<double>(row[static_cast<std::size_t>(j)]) * x[j]);
    y[r] = acc;
  }
}

// The error scale of the fused kernels per row: sum_j |s_g| (u_j + z_g) |x_j| for INT2/INT4/INT8 (they
// subtract the zero point after summing), gemv_abs's sum_j |Q(W)[r, j] x_j| for the other formats.
inline void gemv_magnitude(const quantized_tensor& w, const float* x, double* y) {
  const quant_spec& s = w.spec();
  if (s.format != format_id::int2 && s.format != format_id::int4 && s.format != format_id::int8) {
    gemv_abs(w, x, y);
    return;
  }
  const index_t cols = w.cols(), seg = w.group_length();
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
  for (index_t r = 0; r < w.rows(); ++r) {
    const std::uint8_t* p = w.row_codes(r);
    if (s.format == format_id::int4)
      unpack<4>(p, cols, codes.data());
    else if (s.format == format_id::int2)
      unpack<2>(p, cols, codes.data());
    else
      std::copy(p, p + cols, codes.begin());
    double acc = 0.0;
    for (index_t j = 0; j < cols; ++j) {
      const index_t g = j / seg;
      acc += std::abs(static_cast<double>(w.scale(r, g))) *
             (codes[static_cast<std::size_t>(j)] + w.zero_point(r, g)) * std::abs(static_cast<double>(x[j]));
    }
    y[r] = acc;
  }
}

}  // namespace mixprec::ref
