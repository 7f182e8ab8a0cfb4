// Rank agreement between two sensitivity measures: do the cheap metrics (SQNR, a Hessian score) order
// the layers the way the expensive one (the accuracy drop) does?
// - ranks: 1-based ranks, tied values sharing the mean of the ranks they span ("fractional ranking");
// - spearman: Spearman's rho, the Pearson correlation of those ranks (exact with ties);
// - kendall_tau_b: Kendall's tau-b, the normalised balance of concordant and discordant pairs, with the
//   tie correction of Kendall (1945); O(n^2), meant for per-layer lists.
// Both are nullopt when either list is constant (the correlation is undefined).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mixprec/error.hpp"

namespace mixprec {

namespace detail {
inline void check_rank_inputs(std::span<const double> a, std::span<const double> b, const char* what) {
  if (a.size() != b.size())
    throw error(errc::shape_mismatch, std::string(what) + ": lists of " + std::to_string(a.size()) + " and " +
                                          std::to_string(b.size()) + " values");
  if (a.size() < 2) throw error(errc::empty_input, std::string(what) + ": needs at least 2 pairs");
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a[i]) || !std::isfinite(b[i]))
      throw error(errc::non_finite, std::string(what) + ": value " + std::to_string(i) + " is NaN or Inf");
}
}  // namespace detail

// 1-based fractional ranks of v (ties share their mean rank); throws for NaN.
[[nodiscard]] inline std::vector<double> ranks(std::span<const double> v) {
  for (double x : v)
    if (std::isnan(x)) throw error(errc::non_finite, "ranks: a value is NaN");
  std::vector<std::size_t> order(v.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return v[i] < v[j]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + j) + 1.0;
    for (std::size_t k = i; k <= j; ++k) r[order[k]] = mean_rank;
    i = j + 1;
  }
  return r;
}

// Spearman's rank correlation in [-1, 1]; nullopt when a list is constant.
[[nodiscard]] inline std::optional<double> spearman(std::span<const double> a, std::span<const double> b) {
  detail::check_rank_inputs(a, b, "spearman");
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double mean = 0.5 * static_cast<double>(a.size() + 1);
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    const double x = ra[i] - mean, y = rb[i] - mean;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  if (saa == 0.0 || sbb == 0.0) return std::nullopt;
  return std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
}

// Kendall's tau-b in [-1, 1]; nullopt when a list is constant.
[[nodiscard]] inline std::optional<double> kendall_tau_b(std::span<const double> a, std::span<const double> b) {
  detail::check_rank_inputs(a, b, "kendall_tau_b");
  double concordant_minus_discordant = 0.0, pairs_untied_a = 0.0, pairs_untied_b = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = i + 1; j < a.size(); ++j) {
      const int sa = (a[i] < a[j]) - (a[i] > a[j]);
      const int sb = (b[i] < b[j]) - (b[i] > b[j]);
      concordant_minus_discordant += sa * sb;
      pairs_untied_a += sa != 0 ? 1.0 : 0.0;
      pairs_untied_b += sb != 0 ? 1.0 : 0.0;
    }
  if (pairs_untied_a == 0.0 || pairs_untied_b == 0.0) return std::nullopt;
  return std::clamp(concordant_minus_discordant / std::sqrt(pairs_untied_a * pairs_untied_b), -1.0, 1.0);
}

}  // namespace mixprec
