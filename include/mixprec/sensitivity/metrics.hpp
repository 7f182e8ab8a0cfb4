// Metrics between a reference tensor and its quantized version (SQNR, MSE, max abs error, cosine
// similarity), and between two sets of output logits (top-1 agreement; the KL of the softmaxes is kl.hpp's);
// a bootstrap interval for a mean over groups of samples (bootstrap_ratio_interval).
// Eigen in (any dense expression, float or double), every sum accumulated in double.
//
// Conventions, for every function here:
// - shapes must agree (errc::shape_mismatch) and hold at least one element (errc::empty_input);
// - NaN or Inf in an input is errc::non_finite (a metric of a broken tensor is a bug to report, not a
//   number to rank);
// - identical inputs: noise 0, SQNR +inf dB, MSE 0, cosine 1 (also when both are all zeros);
// - zero signal (ref all zeros) with a non-zero test: SQNR -inf dB; cosine 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>
#include <type_traits>

#include <Eigen/Core>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/sensitivity/error_stats.hpp"
#include "mixprec/sensitivity/kl.hpp"

namespace mixprec {


namespace detail {

// The same for any scalar types, one element at a time.
inline void accumulate_error_scalar(double x, double y, error_stats& s) noexcept {
  const double e = x - y;
  s.signal += x * x;
  s.test_energy += y * y;
  s.noise += e * e;
  s.dot += x * y;
  s.max_abs = std::max(s.max_abs, std::fabs(e));
  ++s.count;
}

template <class A, class B>
void check_same_shape(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, const char* what) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    throw error(errc::shape_mismatch, std::string(what) + ": shapes " + std::to_string(a.rows()) + "x" +
                                          std::to_string(a.cols()) + " and " + std::to_string(b.rows()) + "x" +
                                          std::to_string(b.cols()) + " differ");
  if (a.size() == 0) throw error(errc::empty_input, std::string(what) + ": empty input");
}

// Throws non_finite if a sum shows a NaN or Inf input (finite floats cannot overflow a double square).
inline void check_finite(const error_stats& s, const char* what) {
  if (!std::isfinite(s.signal) || !std::isfinite(s.test_energy) || !std::isfinite(s.noise) || !std::isfinite(s.dot))
    throw error(errc::non_finite, std::string(what) + ": inputs contain NaN or Inf");
}

// True when X's outer slices (rows if row-major, columns otherwise) are contiguous floats.
template <class X>
inline constexpr bool float_direct_v =
    std::is_same_v<typename X::Scalar, float> && (static_cast<unsigned>(X::Flags) & Eigen::DirectAccessBit) != 0;

}  // namespace detail

// All comparison sums of ref and test in one pass (see error_stats; throws as the file header says).
template <class A, class B>
[[nodiscard]] error_stats error_stats_of(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test,
                                         const char* what = "error_stats_of") {
  detail::check_same_shape(ref, test, what);
  error_stats s;
  const A& a = ref.derived();
  const B& b = test.derived();
  if constexpr (detail::float_direct_v<A> && detail::float_direct_v<B> &&
                static_cast<bool>(A::IsRowMajor) == static_cast<bool>(B::IsRowMajor)) {
    if (a.innerStride() == 1 && b.innerStride() == 1) {
      const index_t inner = A::IsRowMajor ? a.cols() : a.rows();
      const index_t outer = A::IsRowMajor ? a.rows() : a.cols();
      with_kernels(active_isa(), [&]<class K>() {
        for (index_t o = 0; o < outer; ++o)
          K::accumulate_error(a.data() + o * a.outerStride(), b.data() + o * b.outerStride(), inner, s);
      });
      detail::check_finite(s, what);
      return s;
    }
  }
  for (index_t r = 0; r < a.rows(); ++r)
    for (index_t c = 0; c < a.cols(); ++c)
      detail::accumulate_error_scalar(static_cast<double>(a.coeff(r, c)), static_cast<double>(b.coeff(r, c)), s);
  detail::check_finite(s, what);
  return s;
}

// Sum of squared differences.
template <class A, class B>
[[nodiscard]] double squared_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return error_stats_of(ref, test, "squared_error").noise;
}

// Mean squared error.
template <class A, class B>
[[nodiscard]] double mse(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return error_stats_of(ref, test, "mse").mse();
}

// Signal-to-quantization-noise ratio 10 log10(|ref|^2 / |ref - test|^2) in dB (+inf when equal).
template <class A, class B>
[[nodiscard]] double sqnr_db(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return error_stats_of(ref, test, "sqnr_db").sqnr_db();
}

// Largest absolute difference.
template <class A, class B>
[[nodiscard]] double max_abs_error(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return error_stats_of(ref, test, "max_abs_error").max_abs;
}

// Cosine similarity of the flattened tensors; 1 when both are zero, 0 when exactly one is.
template <class A, class B>
[[nodiscard]] double cosine_similarity(const Eigen::MatrixBase<A>& ref, const Eigen::MatrixBase<B>& test) {
  return error_stats_of(ref, test, "cosine_similarity").cosine();
}

// Fraction of rows whose arg-max column agrees (ties: the first maximum of each row counts).
template <class A, class B>
[[nodiscard]] double top1_agreement(const Eigen::MatrixBase<A>& ref_logits, const Eigen::MatrixBase<B>& test_logits) {
  detail::check_logits(ref_logits, test_logits, "top1_agreement");
  auto argmax = [](const auto& x, index_t r) {
    index_t best = 0;
    for (index_t c = 1; c < x.cols(); ++c)
      if (x.coeff(r, c) > x.coeff(r, best)) best = c;
    return best;
  };
  index_t agree = 0;
  for (index_t r = 0; r < ref_logits.rows(); ++r)
    agree += argmax(ref_logits.derived(), r) == argmax(test_logits.derived(), r) ? 1 : 0;
  return static_cast<double>(agree) / static_cast<double>(ref_logits.rows());
}

// An interval [low, high] of a statistic.
struct interval {
  double low = 0.0, high = 0.0;
};

// Percentile bootstrap interval (Efron and Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13)
// of sum(sums) / sum(counts), the mean of samples that come in groups (group g: `counts[g]` samples
// summing to `sums[g]`; e.g. the per-position KLs of one calibration stream, which are not independent of
// each other): `resamples` times the groups are drawn with replacement (std::mt19937_64(seed), the same on
// every platform), the ratio recomputed, and the (1 - level)/2 and (1 + level)/2 quantiles of those
// ratios returned. Throws errc::invalid_argument for mismatched or empty inputs, counts not positive,
// resamples < 1 or level outside (0, 1).
[[nodiscard]] inline interval bootstrap_ratio_interval(std::span<const double> sums, std::span<const double> counts, int resamples,
                                                       std::uint64_t seed, double level = 0.95) {
  if (sums.empty() || sums.size() != counts.size() || resamples < 1 || !(level > 0.0 && level < 1.0))
    throw error(errc::invalid_argument, "bootstrap_ratio_interval: " + std::to_string(sums.size()) + " sums, " + std::to_string(counts.size()) +
                                            " counts, " + std::to_string(resamples) + " resamples, level " + std::to_string(level));
  for (double c : counts)
    if (!(c > 0.0)) throw error(errc::invalid_argument, "bootstrap_ratio_interval: a group of " + std::to_string(c) + " samples");
  std::mt19937_64 gen(seed);
  const std::uint64_t n = sums.size();
  std::vector<double> ratios(static_cast<std::size_t>(resamples));
  for (double& r : ratios) {
    double sum = 0.0, count = 0.0;
    for (std::uint64_t k = 0; k < n; ++k) {
      const auto g = static_cast<std::size_t>(gen() % n);  // modulo bias below 2^-50 for any realistic n
      sum += sums[g], count += counts[g];
    }
    r = sum / count;
  }
  std::sort(ratios.begin(), ratios.end());
  auto quantile = [&](double q) {
    const auto i = static_cast<std::size_t>(std::floor(q * static_cast<double>(ratios.size())));
    return ratios[std::min(ratios.size() - 1, i)];
  };
  return {quantile((1.0 - level) / 2.0), quantile((1.0 + level) / 2.0)};
}

}  // namespace mixprec
