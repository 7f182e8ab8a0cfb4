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
// - row-decode (every other case, and FP16/BF16 batches): one row at a time is dequantized into an
//   L1-resident buffer by the SIMD kernels, then dotted with every activation row.
// - gemv_int8 / gemm_int8: activations quantized to INT8 per token, exact integer dot products
//   (AVX-512 VNNI, vpmaddubsw, SSE2 pmaddwd, or scalar; simd/gemv_q8.inl), bit-identical to
//   ref::gemv_int8 on every instruction set.
// Accuracy (FP32 activations): exact products summed in FP32 in an order other than the double
// reference's; per output |y - Q(W)x| <= cols * 2^-23 * ref::gemv_magnitude(W, x) (sum |w x| for float
// formats, sum |s| (u + z) |x| for integer ones); the tests check this bound on every instruction set.
#pragma once

#include <string>

#include "mixprec/error.hpp"
#include "mixprec/kernels/gemv_options.hpp"
#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/simd/targets.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"

namespace mixprec {

namespace detail {

inline void check_gemm_shapes(const char* what, const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x,
                              const Eigen::Ref<row_matrix>& y) {
  if (x.cols() != w.cols() || y.rows() != x.rows() || y.cols() != w.rows())
    throw error(errc::shape_mismatch, std::string(what) + ": X is " + std::to_string(x.rows()) + "x" +
                                          std::to_string(x.cols()) + ", W " + std::to_string(w.rows()) + "x" +
                                          std::to_string(w.cols()) + ", Y " + std::to_string(y.rows()) + "x" +
                                          std::to_string(y.cols()));
}

}  // namespace detail

// y = Q(W) x with the kernels of level i: x has w.cols() floats, y w.rows().
inline void gemv(isa i, const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) {
  detail::with_isa(i, [&]<class K>() { K::gemv(w, x, y, o); });
}
inline void gemv(const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) {
  gemv(active_isa(), w, x, y, o);
}

// Y = X Q(W)^T: X is batch x w.cols() (one activation row per token), Y batch x w.rows(); other shapes
// throw mixprec::error (shape_mismatch).
inline void gemm(isa i, const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                 const gemv_options& o = {}) {
  detail::check_gemm_shapes("gemm", w, x, y);
  detail::with_isa(i, [&]<class K>() { K::gemm(w, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), o); });
}
inline void gemm(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                 const gemv_options& o = {}) {
  gemm(active_isa(), w, x, y, o);
}

// y = Q(W) x with x quantized to INT8 per call (symmetric, one scale max|x| / 127, nearest-even) and
// exact integer dot products (AVX-512 VNNI at level avx512_vnni); INT8 and INT4 weights only (others:
// mixprec::error). Bit-identical to ref::gemv_int8 (kernels/ref/gemv_q8_ref.hpp states the numerics).
inline void gemv_int8(isa i, const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) {
  detail::with_isa(i, [&]<class K>() { K::gemm_int8(w, x, w.cols(), 1, y, w.rows(), o, i == isa::avx512_vnni); });
}
inline void gemv_int8(const quantized_tensor& w, const float* x, float* y, const gemv_options& o = {}) {
  gemv_int8(active_isa(), w, x, y, o);
}

// Y = X Q(W)^T with every activation row (token) quantized to INT8 on its own, as gemv_int8 does: row k
// of Y is bit-identical to gemv_int8 of row k of X. Each row of codes is loaded once for up to four
// tokens.
inline void gemm_int8(isa i, const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x,
                      Eigen::Ref<row_matrix> y, const gemv_options& o = {}) {
  detail::check_gemm_shapes("gemm_int8", w, x, y);
  detail::with_isa(i, [&]<class K>() {
    K::gemm_int8(w, x.data(), x.outerStride(), x.rows(), y.data(), y.outerStride(), o, i == isa::avx512_vnni);
  });
}
inline void gemm_int8(const quantized_tensor& w, const Eigen::Ref<const row_matrix>& x, Eigen::Ref<row_matrix> y,
                      const gemv_options& o = {}) {
  gemm_int8(active_isa(), w, x, y, o);
}

}  // namespace mixprec
