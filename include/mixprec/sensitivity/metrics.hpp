// Metrics between a reference tensor and its quantized version (SQNR, MSE, max error, cosine), and
// between two sets of output logits (KL divergence of the softmaxes, top-1 agreement). Eigen in,
// double accumulation.
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include <Eigen/Core>

#include "mixprec/error.hpp"

namespace mixprec {

namespace detail {
template <class A, class B>
void check_same_shape(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, const char* what) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    throw error(errc::shape_mismatch, std::string(what) + ": shapes " + std::to_string(a.rows()) + "x" +
                                          std::to_string(a.cols()) + " and " + std::to_string(b.rows()) + "x" +
                                          std::to_string(b.cols()) + " differ");
  if (a.size() == 0) throw error(errc::empty_input, std::string(what) + ": empty input");
}
}  // namespace detail

// Sum of squared differences, in double.
template <class A, class B>
[[nodiscard]] double squared_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  detail::check_same_shape(ref, test, "squared_error");
  return (ref.template cast<double>() - test.template cast<double>()).squaredNorm();
}

// Mean squared error.
template <class A, class B>
[[nodiscard]] double mse(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return squared_error(ref, test) / static_cast<double>(ref.size());
}

// Signal-to-quantization-noise ratio 10 log10(|ref|^2 / |ref - test|^2) in dB; +inf when equal.
template <class A, class B>
[[nodiscard]] double sqnr_db(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  const double noise = squared_error(ref, test);
  const double signal = ref.template cast<double>().squaredNorm();
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  if (signal == 0.0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

// Largest absolute difference.
template <class A, class B>
[[nodiscard]] double max_abs_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  detail::check_same_shape(ref, test, "max_abs_error");
  return (ref.template cast<double>() - test.template cast<double>()).cwiseAbs().maxCoeff();
}

// Cosine similarity of the flattened tensors; 1 when both are zero, 0 when exactly one is.
template <class A, class B>
[[nodiscard]] double cosine_similarity(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  detail::check_same_shape(ref, test, "cosine_similarity");
  const auto a = ref.template cast<double>();
  const auto b = test.template cast<double>();
  const double na = a.norm(), nb = b.norm();
  if (na == 0.0 || nb == 0.0) return na == nb ? 1.0 : 0.0;
  return a.cwiseProduct(b).sum() / (na * nb);
}

namespace detail {
// log-softmax of one row, in double (max-shifted for stability).
template <class Row>
Eigen::VectorXd log_softmax(const Row& logits) {
  const Eigen::VectorXd x = logits.template cast<double>().transpose();
  const double m = x.maxCoeff();
  const double lse = m + std::log((x.array() - m).exp().sum());
  return x.array() - lse;
}
}  // namespace detail

// Mean over rows of KL(softmax(ref_row) || softmax(test_row)), in nats. Rows are samples (tokens),
// columns classes. Non-finite logits are an error.
template <class A, class B>
[[nodiscard]] double kl_divergence(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_same_shape(ref_logits, test_logits, "kl_divergence");
  if (!ref_logits.allFinite() || !test_logits.allFinite())
    throw error(errc::non_finite, "kl_divergence: logits must be finite");
  double total = 0.0;
  for (Eigen::Index r = 0; r < ref_logits.rows(); ++r) {
    const Eigen::VectorXd lp = detail::log_softmax(ref_logits.row(r));
    const Eigen::VectorXd lq = detail::log_softmax(test_logits.row(r));
    total += (lp.array().exp() * (lp - lq).array()).sum();
  }
  return std::max(0.0, total / static_cast<double>(ref_logits.rows()));
}

// Fraction of rows whose arg-max class agrees (first maximum wins ties).
template <class A, class B>
[[nodiscard]] double top1_agreement(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_same_shape(ref_logits, test_logits, "top1_agreement");
  Eigen::Index agree = 0;
  for (Eigen::Index r = 0; r < ref_logits.rows(); ++r) {
    Eigen::Index a = 0, b = 0;
    ref_logits.row(r).maxCoeff(&a);
    test_logits.row(r).maxCoeff(&b);
    agree += a == b ? 1 : 0;
  }
  return static_cast<double>(agree) / static_cast<double>(ref_logits.rows());
}

}  // namespace mixprec
