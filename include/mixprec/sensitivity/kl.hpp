// The one implementation of log-softmax and of KL(P || Q) between two sets of logits in mixprec: the
// sensitivity metrics, the measurement of a model's tensors, plan verification and the studies all
// compute their KL here.
//   log_softmax(logits)          rows x classes -> log-probabilities, in double
//   kl_reference(ref_logits)     P kept for KL(P || Q) against many Q (a measurement's reference pass)
//   kl_per_row(ref, test)        per row KL(softmax(ref) || softmax(test)); kl_divergence: their mean
// Rows are samples (tokens, images), columns classes (the vocabulary). Every sum is in double;
// logits are max-shifted, so huge logits neither overflow nor lose the small probabilities.
// Errors (mixprec::error): shape_mismatch for different shapes, empty_input for no rows or no classes,
// non_finite for a NaN or Inf logit (a KL of a broken model is a bug to report, not a number to rank).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include <Eigen/Core>

#include "mixprec/detail/parallel.hpp"
#include "mixprec/error.hpp"
#include "mixprec/types.hpp"

namespace mixprec {

using row_matrix_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {

template <class A, class B>
void check_logits(const Eigen::MatrixBase<A>& p, const Eigen::MatrixBase<B>& q, const char* what) {
  if (p.rows() != q.rows() || p.cols() != q.cols())
    throw error(errc::shape_mismatch, std::string(what) + ": shapes " + std::to_string(p.rows()) + "x" + std::to_string(p.cols()) + " and " +
                                          std::to_string(q.rows()) + "x" + std::to_string(q.cols()) + " differ");
  if (p.size() == 0) throw error(errc::empty_input, std::string(what) + ": empty input");
  if (!p.allFinite() || !q.allFinite()) throw error(errc::non_finite, std::string(what) + ": logits must be finite");
}

template <class X>
void check_logits(const Eigen::MatrixBase<X>& x, const char* what) {
  if (x.rows() == 0 || x.cols() == 0) throw error(errc::empty_input, std::string(what) + ": no logits");
  if (!x.allFinite()) throw error(errc::non_finite, std::string(what) + ": logits must be finite");
}

// log(sum exp(x)) of row r, max-shifted so that no exp overflows.
template <class X>
double log_sum_exp_row(const X& x, index_t r) {
  double m = static_cast<double>(x.coeff(r, 0));
  for (index_t c = 1; c < x.cols(); ++c) m = std::max(m, static_cast<double>(x.coeff(r, c)));
  double z = 0.0;
  for (index_t c = 0; c < x.cols(); ++c) z += std::exp(static_cast<double>(x.coeff(r, c)) - m);
  return m + std::log(z);  // z >= 1 (the maximum contributes exp(0))
}

}  // namespace detail

// Per row, log softmax(x) = x - logsumexp(x), in double (rows x classes, as x). Throws empty_input,
// non_finite (banner).
template <class X>
[[nodiscard]] row_matrix_d log_softmax(const Eigen::MatrixBase<X>& logits) {
  detail::check_logits(logits, "log_softmax");
  row_matrix_d out(logits.rows(), logits.cols());
  for (index_t r = 0; r < logits.rows(); ++r) {
    const double lse = detail::log_sum_exp_row(logits.derived(), r);
    for (index_t c = 0; c < logits.cols(); ++c) out(r, c) = static_cast<double>(logits.coeff(r, c)) - lse;
  }
  return out;
}

// The reference side P = softmax(ref_logits) of KL(P || Q), kept to compare many Q with (e.g. one
// model run per quantized tensor against the full-precision run): P per row and sum_v P_v log P_v.
// Per row, KL(P || Q) = sum_v P_v log P_v - sum_v P_v (l_v - logsumexp(l)) for Q = softmax(l) (sum_v
// P_v = 1): one exp per class, exactly 0 for a row equal to the reference's (both sums take the same
// terms in the same order), clamped at 0 against rounding. Memory: rows x classes doubles.
class kl_reference {
 public:
  // ref_logits: rows x classes. Throws empty_input, non_finite.
  template <class A>
  explicit kl_reference(const Eigen::MatrixBase<A>& ref_logits) : p_(log_softmax(ref_logits)), p_log_p_(ref_logits.rows()) {
    for (index_t r = 0; r < p_.rows(); ++r) {
      double s = 0.0;
      for (index_t c = 0; c < p_.cols(); ++c) {
        const double lp = p_(r, c);
        p_(r, c) = std::exp(lp);
        s += p_(r, c) * lp;
      }
      p_log_p_[r] = s;
    }
  }

  [[nodiscard]] index_t rows() const noexcept { return p_.rows(); }
  [[nodiscard]] index_t cols() const noexcept { return p_.cols(); }
  // P, rows x classes.
  [[nodiscard]] const row_matrix_d& probabilities() const noexcept { return p_; }

  // KL(P_r || softmax(logits)) in nats for one row of test logits (1 x classes, or classes x 1).
  // Throws shape_mismatch (r out of range or another class count), non_finite.
  template <class B>
  [[nodiscard]] double row_kl(index_t r, const Eigen::MatrixBase<B>& logits) const {
    if (r < 0 || r >= rows() || logits.size() != cols() || (logits.rows() != 1 && logits.cols() != 1))
      throw error(errc::shape_mismatch, "kl_reference: row " + std::to_string(r) + " with " + std::to_string(logits.size()) +
                                            " logits, the reference has " + std::to_string(rows()) + " rows of " + std::to_string(cols()));
    if (!logits.allFinite()) throw error(errc::non_finite, "kl_reference: logits must be finite");
    const B& l = logits.derived();
    if (l.rows() == 1) return row_kl_unchecked(r, [&](index_t c) { return static_cast<double>(l.coeff(0, c)); });
    return row_kl_unchecked(r, [&](index_t c) { return static_cast<double>(l.coeff(c, 0)); });
  }

  // Per row, KL(P_r || softmax(test_logits_r)) in nats (rows x classes in, rows out); rows over
  // `threads` workers (0: every core), the result not depending on their number. Throws shape_mismatch,
  // non_finite.
  template <class B>
  [[nodiscard]] Eigen::VectorXd per_row(const Eigen::MatrixBase<B>& test_logits, unsigned threads = 1) const {
    if (test_logits.rows() != rows() || test_logits.cols() != cols())
      throw error(errc::shape_mismatch, "kl_reference: " + std::to_string(test_logits.rows()) + "x" + std::to_string(test_logits.cols()) +
                                            " logits, the reference is " + std::to_string(rows()) + "x" + std::to_string(cols()));
    if (!test_logits.allFinite()) throw error(errc::non_finite, "kl_reference: logits must be finite");
    Eigen::VectorXd out(rows());
    const auto n = static_cast<std::size_t>(rows());
    detail::parallel_for(n, detail::worker_count(threads, n), [&](std::size_t i, unsigned) {
      const auto r = static_cast<index_t>(i);
      out[r] = row_kl_unchecked(r, [&](index_t c) { return static_cast<double>(test_logits.derived().coeff(r, c)); });
    });
    return out;
  }

 private:
  // l(c): the test logit of class c, as a double.
  template <class Logit>
  [[nodiscard]] double row_kl_unchecked(index_t r, const Logit& l) const {
    double m = l(0);
    for (index_t c = 1; c < cols(); ++c) m = std::max(m, l(c));
    double z = 0.0;
    for (index_t c = 0; c < cols(); ++c) z += std::exp(l(c) - m);
    const double lse = m + std::log(z);
    double cross = 0.0;
    for (index_t c = 0; c < cols(); ++c) cross += p_(r, c) * (l(c) - lse);
    return std::max(0.0, p_log_p_[r] - cross);
  }

  row_matrix_d p_;
  Eigen::VectorXd p_log_p_;
};

// Per row, KL(softmax(ref_row) || softmax(test_row)) in nats (a vector of ref.rows()); 0 for identical
// rows; never negative. Throws shape_mismatch, empty_input, non_finite (banner).
template <class A, class B>
[[nodiscard]] Eigen::VectorXd kl_per_row(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_logits(ref_logits, test_logits, "kl_per_row");
  return kl_reference(ref_logits).per_row(test_logits);
}

// Mean over rows of kl_per_row, in nats.
template <class A, class B>
[[nodiscard]] double kl_divergence(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  return kl_per_row(ref_logits, test_logits).mean();
}

}  // namespace mixprec
