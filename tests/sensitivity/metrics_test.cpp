// Tensor and output metrics against hand-computed values, their edge cases and errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "mixprec/sensitivity/metrics.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
}

TEST_CASE("tensor metrics against hand-computed values", "[sensitivity][metrics]") {
  Eigen::MatrixXf a(1, 4), b(1, 4);
  a << 1, 2, 3, 4;
  b << 1, 2, 3, 2;  // one error of 2
  // |a|^2 = 30, |b|^2 = 18, a.b = 22, noise = 4.
  CHECK(squared_error(a, b) == 4.0);
  CHECK(mse(a, b) == 1.0);
  CHECK(max_abs_error(a, b) == 2.0);
  CHECK(sqnr_db(a, b) == Approx(10.0 * std::log10(30.0 / 4.0)));
  CHECK(sqnr_db(a, b) == Approx(8.750612633917));
  CHECK(cosine_similarity(a, b) == Approx(22.0 / std::sqrt(30.0 * 18.0)));
  const error_stats s = error_stats_of(a, b);
  CHECK(s.signal == 30.0);
  CHECK(s.test_energy == 18.0);
  CHECK(s.dot == 22.0);
  CHECK(s.count == 4);
}

TEST_CASE("tensor metrics over lanes and a tail (19 elements) and every storage", "[sensitivity][metrics]") {
  // a_i = i + 1, b_i = a_i + 0.5 where i % 3 == 0 (7 of 19 elements): noise 7 * 0.25, signal
  // sum k^2 = 19 * 20 * 39 / 6 = 2470, max error 0.5.
  Eigen::RowVectorXf a(19), b(19);
  for (int i = 0; i < 19; ++i) {
    a[i] = static_cast<float>(i + 1);
    b[i] = a[i] + (i % 3 == 0 ? 0.5f : 0.0f);
  }
  CHECK(squared_error(a, b) == 1.75);
  CHECK(max_abs_error(a, b) == 0.5);
  CHECK(sqnr_db(a, b) == Approx(10.0 * std::log10(2470.0 / 1.75)));
  // Column-major, row-major, a strided block and double give the same numbers (exact here).
  const Eigen::VectorXf ac = a.transpose(), bc = b.transpose();
  CHECK(squared_error(ac, bc) == 1.75);
  const Eigen::RowVectorXd ad = a.cast<double>(), bd = b.cast<double>();
  CHECK(squared_error(ad, bd) == 1.75);
  Eigen::MatrixXf big = Eigen::MatrixXf::Zero(3, 19), bigb = Eigen::MatrixXf::Zero(3, 19);
  big.row(1) = a;
  bigb.row(1) = b;
  CHECK(squared_error(big.row(1), bigb.row(1)) == 1.75);  // inner stride 3: the generic path
  CHECK(squared_error(big, bigb) == 1.75);
  // Mixed storage orders go through the generic path too.
  const row_matrix rm = test::gaussian(7, 9, 1.0f, 1);
  const Eigen::MatrixXf cm = rm;
  CHECK(squared_error(rm, cm) == 0.0);
  CHECK(squared_error(rm, (cm.array() + 1.0f).matrix()) == Approx(63.0));
}

TEST_CASE("the SIMD pass equals a scalar double reference at awkward sizes", "[sensitivity][metrics]") {
  for (index_t n : {1, 2, 3, 7, 8, 15, 16, 17, 33, 129, 1000}) {
    const row_matrix a = test::gaussian(3, n, 1.0f, static_cast<std::uint32_t>(n));
    row_matrix b = a + test::gaussian(3, n, 0.01f, static_cast<std::uint32_t>(n + 1000));
    b(2, n - 1) += 0.5f;  // the largest error sits in the last element (a tail for most n)
    double sa = 0, sb = 0, se = 0, sd = 0, mx = 0;
    for (index_t r = 0; r < 3; ++r)
      for (index_t c = 0; c < n; ++c) {
        const double x = a(r, c), y = b(r, c);
        sa += x * x;
        sb += y * y;
        se += (x - y) * (x - y);
        sd += x * y;
        mx = std::max(mx, std::fabs(x - y));
      }
    const error_stats s = error_stats_of(a, b);  // float, row-major: the SIMD kernel
    INFO("n = " << n);
    CHECK(s.count == 3 * n);
    CHECK(s.signal == Approx(sa).epsilon(1e-13));
    CHECK(s.test_energy == Approx(sb).epsilon(1e-13));
    CHECK(s.noise == Approx(se).epsilon(1e-13));
    CHECK(s.dot == Approx(sd).epsilon(1e-13));
    CHECK(s.max_abs == mx);
    // Sums of at most 3000 products: double accumulation keeps them far inside float's precision.
    const error_stats sd_path = error_stats_of(a.cast<double>(), b.cast<double>());
    CHECK(sd_path.noise == Approx(s.noise).epsilon(1e-13));
  }
}

TEST_CASE("identical inputs, zero signal and the error cases", "[sensitivity][metrics]") {
  const row_matrix a = test::gaussian(5, 33, 1.0f, 2);
  CHECK(sqnr_db(a, a) == inf);
  CHECK(mse(a, a) == 0.0);
  CHECK(max_abs_error(a, a) == 0.0);
  CHECK(cosine_similarity(a, a) == 1.0);
  CHECK(cosine_similarity(a, (-a).eval()) == Approx(-1.0));
  const row_matrix zero = row_matrix::Zero(5, 33);
  CHECK(sqnr_db(zero, a) == -inf);   // no signal, some noise
  CHECK(sqnr_db(zero, zero) == inf);  // identical
  CHECK(cosine_similarity(zero, zero) == 1.0);
  CHECK(cosine_similarity(zero, a) == 0.0);
  CHECK(cosine_similarity(a, zero) == 0.0);
  CHECK(sqnr_db(a, zero) == Approx(0.0).margin(1e-12));  // noise = signal
  // Errors.
  CHECK(test::error_code_of([&] { (void)mse(a, row_matrix(5, 32)); }) == errc::shape_mismatch);
  CHECK(test::error_code_of([] { (void)sqnr_db(row_matrix(0, 3), row_matrix(0, 3)); }) == errc::empty_input);
  row_matrix bad = a;
  bad(4, 32) = std::numeric_limits<float>::quiet_NaN();
  CHECK(test::error_code_of([&] { (void)sqnr_db(a, bad); }) == errc::non_finite);
  bad(4, 32) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(cosine_similarity(bad, a), error);
}

TEST_CASE("KL divergence of softmaxes against hand-computed values", "[sensitivity][metrics]") {
  Eigen::MatrixXd p(2, 2), q(2, 2);
  // Row 0: softmax(0, 0) = (1/2, 1/2) vs softmax(log 3, 0) = (3/4, 1/4):
  // KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3). Row 1 is identical: 0.
  p << 0, 0, 5, 1;
  q << std::log(3.0), 0, 5, 1;
  CHECK(kl_divergence(p, q) == Approx(0.5 * std::log(4.0 / 3.0) / 2.0));
  CHECK(kl_divergence(p, p) == 0.0);
  // Three classes: softmax(ln 1, ln 2, ln 5) = (1, 2, 5) / 8 vs uniform: sum p ln(3 p).
  Eigen::MatrixXf p3(1, 3), q3(1, 3);
  p3 << 0.0f, std::log(2.0f), std::log(5.0f);
  q3 << 7.0f, 7.0f, 7.0f;
  const double expected = (1.0 * std::log(3.0 / 8.0) + 2.0 * std::log(6.0 / 8.0) + 5.0 * std::log(15.0 / 8.0)) / 8.0;
  CHECK(kl_divergence(p3, q3) == Approx(expected).epsilon(1e-6));
  // Shifting a row's logits changes nothing (the log-softmax is max-shifted: no overflow at 1000).
  const Eigen::MatrixXd big = p.array() + 1000.0;
  CHECK(kl_divergence(big, q) == Approx(kl_divergence(p, q)).epsilon(1e-12));
  // A vanishing probability: softmax(0, -1000) = (1, e^-1000) vs (1/2, 1/2): KL = ln 2 (a naive
  // softmax would compute 0 * log 0 = NaN).
  Eigen::MatrixXd r(1, 2), u(1, 2);
  r << 0, -1000;
  u << 0, 0;
  CHECK(kl_divergence(r, u) == Approx(std::log(2.0)));
  // Reverse direction: KL((1/2, 1/2) || (1, e^-1000)) = 1/2 ln(1/2) + 1/2 (ln(1/2) + 1000).
  CHECK(kl_divergence(u, r) == Approx(0.5 * 1000.0 - std::log(2.0)));
  Eigen::MatrixXd nan = p;
  nan(0, 0) = std::nan("");
  CHECK_THROWS_AS(kl_divergence(nan, q), error);
  CHECK_THROWS_AS(kl_divergence(p, Eigen::MatrixXd(2, 3)), error);
}

TEST_CASE("top-1 agreement", "[sensitivity][metrics]") {
  Eigen::MatrixXd p(4, 3), q(4, 3);
  p << 1, 2, 3,   //
      3, 2, 1,    //
      0, 0, 0,    // a tie: the first column counts
      5, 5, 1;    // a tie: column 0
  q << 0, 0, 9,   // agrees (2)
      0, 1, 0,    // disagrees (1 vs 0)
      1, 0, 0,    // agrees (0)
      1, 2, 0;    // disagrees (1 vs 0)
  CHECK(top1_agreement(p, q) == 0.5);
  CHECK(top1_agreement(p, p) == 1.0);
  Eigen::MatrixXd inf_logits = p;
  inf_logits(0, 0) = inf;
  CHECK_THROWS_AS(top1_agreement(inf_logits, q), error);
  CHECK_THROWS_AS(top1_agreement(Eigen::MatrixXd(0, 3), Eigen::MatrixXd(0, 3)), error);
}

TEST_CASE("kl_per_row: each row's KL, whose mean is kl_divergence", "[sensitivity][metrics]") {
  Eigen::MatrixXf p(3, 4), q(3, 4);
  p << 1, 2, 3, 4, 0, 0, 0, 0, -5, 5, 0, 1;
  q << 1, 2, 3, 4, 1, 0, 0, 0, 5, -5, 0, 1;
  const Eigen::VectorXd k = kl_per_row(p, q);
  REQUIRE(k.size() == 3);
  CHECK(k[0] == 0.0);  // identical rows
  CHECK(k[1] > 0.0);
  CHECK(k[2] > k[1]);  // swapping the two extreme logits costs more than nudging one
  CHECK(kl_divergence(p, q) == Approx(k.mean()));
  CHECK(kl_divergence(p.topRows(2), q.topRows(2)) == Approx((k[0] + k[1]) / 2.0));
}

TEST_CASE("kl_reference: one reference against many test logits, as kl_per_row", "[sensitivity][metrics][kl]") {
  std::mt19937_64 gen(11);
  std::normal_distribution<float> n(0.0f, 3.0f);
  row_matrix ref(5, 37), test(5, 37);
  for (index_t i = 0; i < ref.size(); ++i) ref.data()[i] = n(gen), test.data()[i] = n(gen);
  const kl_reference k(ref);
  REQUIRE(k.rows() == 5);
  REQUIRE(k.cols() == 37);
  // P is the softmax: rows sum to 1, and log P is log_softmax.
  const row_matrix_d lp = log_softmax(ref);
  for (index_t r = 0; r < 5; ++r) {
    CHECK(k.probabilities().row(r).sum() == Approx(1.0).epsilon(1e-14));
    CHECK(std::log(k.probabilities()(r, 3)) == Approx(lp(r, 3)).epsilon(1e-12));
    CHECK(lp.row(r).array().exp().sum() == Approx(1.0).epsilon(1e-14));
  }
  // Per row: sum_v P_v (log P_v - log Q_v), computed from the log-softmaxes directly.
  const row_matrix_d lq = log_softmax(test);
  const Eigen::VectorXd per = k.per_row(test);
  for (index_t r = 0; r < 5; ++r) {
    const double direct = (lp.row(r).array().exp() * (lp.row(r) - lq.row(r)).array()).sum();
    CHECK(per[r] == Approx(direct).epsilon(1e-12));
    CHECK(k.row_kl(r, test.row(r)) == per[r]);
    CHECK(k.row_kl(r, Eigen::VectorXf(test.row(r).transpose())) == per[r]);
  }
  // Threads change nothing; the reference against itself is exactly 0; kl_per_row is the same sum.
  const Eigen::VectorXd per2 = k.per_row(test, 2);
  CHECK((per2.array() == per.array()).all());
  CHECK((k.per_row(ref).array() == 0.0).all());
  CHECK((kl_per_row(ref, test).array() == per.array()).all());
  // Errors: another shape, a row out of range, non-finite logits, no logits.
  CHECK(test::error_code_of([&] { (void)k.per_row(row_matrix(4, 37)); }) == errc::shape_mismatch);
  CHECK(test::error_code_of([&] { (void)k.row_kl(5, test.row(0)); }) == errc::shape_mismatch);
  CHECK(test::error_code_of([&] { (void)k.row_kl(0, test.block(0, 0, 1, 36)); }) == errc::shape_mismatch);
  row_matrix bad = test;
  bad(2, 7) = std::numeric_limits<float>::infinity();
  CHECK(test::error_code_of([&] { (void)k.per_row(bad); }) == errc::non_finite);
  CHECK(test::error_code_of([&] { (void)k.row_kl(2, bad.row(2)); }) == errc::non_finite);
  CHECK(test::error_code_of([&] { (void)kl_reference(bad); }) == errc::non_finite);
  CHECK(test::error_code_of([&] { (void)kl_reference(row_matrix(0, 3)); }) == errc::empty_input);
  CHECK(test::error_code_of([&] { (void)log_softmax(row_matrix(2, 0)); }) == errc::empty_input);
}

TEST_CASE("bootstrap_ratio_interval: the spread of a mean over resampled groups", "[sensitivity][metrics]") {
  // Groups with the same ratio: every resample gives it.
  const std::vector<double> sums = {2.0, 4.0, 6.0}, counts = {1.0, 2.0, 3.0};
  const interval same = bootstrap_ratio_interval(sums, counts, 200, 1);
  CHECK(same.low == Approx(2.0));
  CHECK(same.high == Approx(2.0));
  // Groups that differ: the interval holds the ratio of the whole, widens with the spread, narrows with
  // more groups, and is the same for the same seed.
  std::mt19937_64 gen(3);
  std::normal_distribution<double> noise(1.0, 0.3);
  auto groups = [&](int n, double spread) {
    std::vector<double> s, c;
    for (int g = 0; g < n; ++g) s.push_back(10.0 * (1.0 + spread * (noise(gen) - 1.0))), c.push_back(10.0);
    return std::make_pair(s, c);
  };
  const auto [s8, c8] = groups(8, 1.0);
  const interval a = bootstrap_ratio_interval(s8, c8, 1000, 7);
  double total = 0.0;
  for (double x : s8) total += x;
  CHECK(a.low < total / 80.0);
  CHECK(a.high > total / 80.0);
  const interval again = bootstrap_ratio_interval(s8, c8, 1000, 7);
  CHECK((again.low == a.low && again.high == a.high));
  const auto [s8x, c8x] = groups(8, 4.0);
  const auto [s200, c200] = groups(200, 1.0);
  const interval wide = bootstrap_ratio_interval(s8x, c8x, 1000, 7), narrow = bootstrap_ratio_interval(s200, c200, 1000, 7);
  CHECK(wide.high - wide.low > a.high - a.low);
  CHECK(narrow.high - narrow.low < a.high - a.low);
  CHECK(test::error_code_of([&] { (void)bootstrap_ratio_interval(std::vector<double>{}, std::vector<double>{}, 10, 1); }) == errc::invalid_argument);
  CHECK(test::error_code_of([&] { (void)bootstrap_ratio_interval(sums, std::vector<double>{1.0}, 10, 1); }) == errc::invalid_argument);
  CHECK(test::error_code_of([&] { (void)bootstrap_ratio_interval(sums, std::vector<double>{1.0, 0.0, 1.0}, 10, 1); }) == errc::invalid_argument);
  CHECK(test::error_code_of([&] { (void)bootstrap_ratio_interval(sums, counts, 0, 1); }) == errc::invalid_argument);
  CHECK(test::error_code_of([&] { (void)bootstrap_ratio_interval(sums, counts, 10, 1, 1.0); }) == errc::invalid_argument);
}
