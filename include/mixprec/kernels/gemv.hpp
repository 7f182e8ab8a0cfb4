// Quantized matrix products with the dequantisation fused in: y = Q(W) x (gemv) and Y = X Q(W)^T for
// a batch of activation rows (gemm), straight from a quantized_tensor; no FP32 copy of W is made.
// Every call runs the kernels of the best instruction set this CPU has (kernels/isa.hpp:
// SSE2 / AVX2+FMA+F16C / AVX-512 / AVX-512 VNNI); kernel_dispatch (kernels/dispatch.hpp) runs a chosen one.
//
// Paths (kernel source in kernels/simd/*.inl, one copy per instruction set):
// - fused integer (INT4/INT8 weights, any batch; simd/gemv_int.inl): codes are decoded in registers
//   by masking fields in place, sum u*x is accumulated per group and scaled once per group, the zero
//   point enters once per row; batch 1 runs 4 rows per pass (AVX-512; 2 elsewhere), batches run up
//   to 8 activation columns per decoded weight vector. A column gets the same bits whatever the batch.
// - FP16 / BF16 (batch 1): converted in registers (F16C where available, else exact bit operations);
// - llama.cpp's block types (format_id::ggml_block) with activations automatic (the default): the
//   activations quantized to ggml's vec_dot_type, exact integer block products (simd/gemv_ggml.inl),
//   bit-identical to ggml::ref::vec_dot (kernels/ref/ggml_dot_ref.hpp) on every instruction set;
// - row-decode (every other case: FP16/BF16 batches, block types with activations fp32): one row at a
//   time is dequantized into an L1-resident buffer by the SIMD kernels, then dotted with every activation row.
// - INT8 activations (gemv_options::activations = activation_type::int8): quantized per token, exact
//   integer dot products (AVX-512 VNNI, vpmaddubsw, SSE2 pmaddwd, or scalar; simd/gemv_q8.inl),
//   bit-identical to ref::gemv_int8 on every instruction set.
// Accuracy (FP32 activations): exact products summed in FP32 in an order other than the double
// reference's; per output |y - Q(W)x| <= cols * 2^-23 * ref::gemv_magnitude(W, x) (sum |w x| for float
// formats, sum |s| (u + z) |x| for integer ones); the tests check this bound on every instruction set.
#pragma once

#include <span>
#include <string>

#include "mixprec/error.hpp"
#include "mixprec/kernels/gemv_options.hpp"
#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/simd/targets.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"

namespace mixprec {

namespace detail {

inline std::string shape_text(index_t rows, index_t cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

inline void check_gemm_shapes(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x,
                              const Eigen::Ref<row_matrix>& y) {
  if (x.cols() != w.cols() || y.rows() != x.rows() || y.cols() != w.rows())
    throw error(errc::shape_mismatch, "gemm: X is " + shape_text(x.rows(), x.cols()) + ", W " +
                                          shape_text(w.rows(), w.cols()) + ", Y " + shape_text(y.rows(), y.cols()) +
                                          " (expected X batch x " + std::to_string(w.cols()) + ", Y batch x " +
                                          std::to_string(w.rows()) + ")");
}

// Whether o sends w through ggml's quantized-activation products.
[[nodiscard]] inline bool ggml_activations(const quantized_tensor& w, const gemv_options& o) noexcept {
  return o.activations == activation_type::automatic && w.spec().format == format_id::ggml_block;
}

// Y = X Q(W)^T on a block type with activations quantized to its vec_dot_type (shapes checked).
inline void ggml_gemm(isa i, const quantized_tensor& w, const float* x, index_t ldx, index_t batch, float* y, index_t ldy,
                      const gemv_options& o) {
  thread_local ggml::ref::quantized_activations act;
  ggml::ref::quantize_activations(ggml::vec_dot_type(w.spec().ggml), x, ldx, batch, static_cast<std::size_t>(w.cols()), act);
  with_isa(i, [&]<class K>() { K::ggml_product(w, act, y, ldy, o.threads); });
}

}  // namespace detail

// y = Q(W) x with the kernels of level i. x has w.cols() floats and y w.rows(), else mixprec::error
// (shape_mismatch); o.activations int8 needs INT4/INT8 weights (else unsupported) and finite x (else
// non_finite); it is bit-identical to ref::gemv_int8 (kernels/ref/gemv_q8_ref.hpp states the numerics).
// On llama.cpp's block types with o.activations automatic (the default) x must be finite too (else
// non_finite), and y is bit-identical to ggml::ref::vec_dot (kernels/ref/ggml_dot_ref.hpp).
inline void gemv(isa i, const quantized_tensor& w, std::span<const float> x, std::span<float> y,
                 const gemv_options& o = {}) {
  if (x.size() != static_cast<std::size_t>(w.cols()) || y.size() != static_cast<std::size_t>(w.rows()))
    throw error(errc::shape_mismatch, "gemv: x has " + std::to_string(x.size()) + " floats and y " +
                                          std::to_string(y.size()) + ", W is " + detail::shape_text(w.rows(), w.cols()) +
                                          " (x needs " + std::to_string(w.cols()) + ", y " + std::to_string(w.rows()) + ")");
  if (detail::ggml_activations(w, o))
    detail::ggml_gemm(i, w, x.data(), w.cols(), 1, y.data(), w.rows(), o);
  else if (o.activations == activation_type::int8)
    detail::with_isa(i, [&]<class K>() {
      K::gemm_int8(w, x.data(), w.cols(), 1, y.data(), w.rows(), o, i == isa::avx512_vnni);
    });
  else
    detail::with_isa(i, [&]<class K>() { K::gemv(w, x.data(), y.data(), o); });
}
inline void gemv(const quantized_tensor& w, std::span<const float> x, std::span<float> y, const gemv_options& o = {}) {
  gemv(active_isa(), w, x, y, o);
}

// Y = X Q(W)^T with the kernels of level i: X is batch x w.cols() (one activation row per token), Y
// batch x w.rows(); other shapes throw mixprec::error (shape_mismatch). With o.activations int8 every
// token is quantized on its own, so row k of Y is bit-identical to gemv of row k of X (each row of codes
// is loaded once for up to four tokens); so is it on block types with o.activations automatic (NaN/Inf
// in X: non_finite).
inline void gemm(isa i, const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                 const gemv_options& o = {}) {
  detail::check_gemm_shapes(w, x, y);
  if (detail::ggml_activations(w, o))
    detail::ggml_gemm(i, w, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), o);
  else if (o.activations == activation_type::int8)
    detail::with_isa(i, [&]<class K>() {
      K::gemm_int8(w, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), o, i == isa::avx512_vnni);
    });
  else
    detail::with_isa(i, [&]<class K>() { K::gemm(w, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), o); });
}
inline void gemm(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                 const gemv_options& o = {}) {
  gemm(active_isa(), w, x, y, o);
}

}  // namespace mixprec
