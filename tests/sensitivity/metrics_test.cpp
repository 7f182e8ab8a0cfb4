// Output and tensor metrics against hand-computed values.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "mixprec/sensitivity/metrics.hpp"

using namespace mixprec;

TEST_CASE("tensor metrics against hand-computed values", "[sensitivity][metrics]") {
  Eigen::MatrixXf a(1, 4), b(1, 4);
  a << 1, 2, 3, 4;
  b << 1, 2, 3, 2;  // one error of 2
  CHECK(squared_error(a, b) == 4.0);
  CHECK(mse(a, b) == 1.0);
  CHECK(max_abs_error(a, b) == 2.0);
  CHECK(sqnr_db(a, b) == Approx(10.0 * std::log10(30.0 / 4.0)));
  CHECK(cosine_similarity(a, b) == Approx(22.0 / (std::sqrt(30.0) * std::sqrt(18.0))));
  CHECK(sqnr_db(a, a) == std::numeric_limits<double>::infinity());
  CHECK(sqnr_db(Eigen::MatrixXf::Zero(1, 4), a) == -std::numeric_limits<double>::infinity());
  CHECK(cosine_similarity(a, -a) == Approx(-1.0));
  CHECK(cosine_similarity(Eigen::MatrixXf::Zero(2, 2), Eigen::MatrixXf::Zero(2, 2)) == 1.0);
  CHECK(cosine_similarity(Eigen::MatrixXf::Zero(1, 4), a) == 0.0);
  CHECK_THROWS_AS(mse(a, Eigen::MatrixXf(1, 3)), error);
  CHECK_THROWS_AS(mse(Eigen::MatrixXf(0, 3), Eigen::MatrixXf(0, 3)), error);
}

TEST_CASE("KL divergence and top-1 agreement of logits", "[sensitivity][metrics]") {
  Eigen::MatrixXd p(2, 2), q(2, 2);
  // Row 0: softmax(0, 0) = (1/2, 1/2) vs softmax(log 3, 0) = (3/4, 1/4).
  p << 0, 0, 5, 1;
  q << std::log(3.0), 0, 5, 1;
  const double kl0 = 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25);
  CHECK(kl_divergence(p, q) == Approx(kl0 / 2.0));  // row 1 is identical: KL 0
  CHECK(kl_divergence(p, p) == Approx(0.0).margin(1e-15));
  // Large logits do not overflow (the log-softmax is max-shifted).
  Eigen::MatrixXd big = p.array() + 1000.0;
  CHECK(std::isfinite(kl_divergence(big, q)));
  CHECK(top1_agreement(p, q) == 1.0);  // row 0: a tie takes the first class in p; q agrees
  Eigen::MatrixXd r(2, 2);
  r << 0, 1, 1, 0;
  CHECK(top1_agreement(p, r) == 0.5);
  Eigen::MatrixXd nan = p;
  nan(0, 0) = std::nan("");
  CHECK_THROWS_AS(kl_divergence(nan, q), error);
}
