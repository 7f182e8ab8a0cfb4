#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include <mixprec/sensitivity/rank.hpp>

using mixprec::kendall_tau_b;
using mixprec::spearman;

TEST_CASE("ranks share the mean rank among ties", "[rank]") {
  const std::vector<double> v = {3.0, 1.0, 3.0, 2.0, 3.0};
  const auto r = mixprec::ranks(v);
  CHECK(r == std::vector<double>{4.0, 1.0, 4.0, 2.0, 4.0});
}

TEST_CASE("spearman without ties equals 1 - 6 sum d^2 / (n (n^2 - 1))", "[rank]") {
  std::mt19937_64 gen(3);
  for (int trial = 0; trial < 20; ++trial) {
    const std::size_t n = 2 + static_cast<std::size_t>(trial);
    std::vector<double> a(n), b(n);
    std::iota(a.begin(), a.end(), 1.0);
    std::iota(b.begin(), b.end(), 1.0);
    std::shuffle(a.begin(), a.end(), gen);
    std::shuffle(b.begin(), b.end(), gen);
    double d2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) d2 += (a[i] - b[i]) * (a[i] - b[i]);
    const double nn = static_cast<double>(n);
    const double expected = 1.0 - 6.0 * d2 / (nn * (nn * nn - 1.0));
    // Ranks, not values, matter: transform a monotonically.
    std::vector<double> a_exp(n);
    std::transform(a.begin(), a.end(), a_exp.begin(), [](double x) { return std::exp(x) - 7.0; });
    REQUIRE(spearman(a_exp, b).has_value());
    CHECK(*spearman(a_exp, b) == Approx(expected).margin(1e-12));
  }
}

TEST_CASE("spearman and kendall: perfect agreement, reversal, constants", "[rank]") {
  const std::vector<double> a = {0.1, 0.5, 0.2, 0.9}, up = {1.0, 5.0, 2.0, 9.0}, down = {-1.0, -5.0, -2.0, -9.0};
  CHECK(*spearman(a, up) == Approx(1.0));
  CHECK(*spearman(a, down) == Approx(-1.0));
  CHECK(*kendall_tau_b(a, up) == Approx(1.0));
  CHECK(*kendall_tau_b(a, down) == Approx(-1.0));
  const std::vector<double> flat = {2.0, 2.0, 2.0, 2.0};
  CHECK_FALSE(spearman(a, flat).has_value());
  CHECK_FALSE(kendall_tau_b(flat, a).has_value());
}

TEST_CASE("kendall tau-b by hand, with and without ties", "[rank]") {
  // Pairs: 5 concordant, 1 discordant.
  CHECK(*kendall_tau_b(std::vector<double>{1, 2, 3, 4}, std::vector<double>{1, 3, 2, 4}) == Approx(4.0 / 6.0));
  // a ties its first two values: C - D = 2, 2 pairs untied in a, 3 in b.
  CHECK(*kendall_tau_b(std::vector<double>{1, 1, 2}, std::vector<double>{1, 2, 3}) == Approx(2.0 / std::sqrt(6.0)));
  // Spearman with ties is the Pearson correlation of the fractional ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3).
  const double ra[] = {1.5, 1.5, 3.0}, rb[] = {1.0, 2.0, 3.0};
  double sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < 3; ++i) {
    sab += (ra[i] - 2.0) * (rb[i] - 2.0);
    saa += (ra[i] - 2.0) * (ra[i] - 2.0);
    sbb += (rb[i] - 2.0) * (rb[i] - 2.0);
  }
  CHECK(*spearman(std::vector<double>{1, 1, 2}, std::vector<double>{1, 2, 3}) == Approx(sab / std::sqrt(saa * sbb)));
}

TEST_CASE("rank correlations reject bad input", "[rank]") {
  const std::vector<double> a = {1, 2, 3}, b = {1, 2}, nan = {1, std::nan(""), 3};
  CHECK_THROWS_AS(spearman(a, b), mixprec::error);
  CHECK_THROWS_AS(spearman(a, nan), mixprec::error);
  CHECK_THROWS_AS(kendall_tau_b(std::vector<double>{1}, std::vector<double>{2}), mixprec::error);
  CHECK_THROWS_AS(mixprec::ranks(nan), mixprec::error);
}
