// Hutchinson trace and power iteration against closed forms: a quadratic loss 1/2 w^T A w has Hessian A.
#include <catch2/catch.hpp>

#include <Eigen/Eigenvalues>

#include "mixprec/sensitivity/hessian.hpp"
#include "mixprec/sensitivity/classify.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {
Eigen::MatrixXd spd(int n, std::uint32_t seed) {
  const Eigen::MatrixXd b = test::gaussian(n, n, 1.0f, seed).cast<double>();
  return b * b.transpose() / n + Eigen::MatrixXd::Identity(n, n);
}
}  // namespace

TEST_CASE("Hutchinson trace is within 3 standard errors of the exact trace", "[sensitivity][hessian]") {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    const Eigen::MatrixXd a = spd(60, seed);
    auto hvp = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
    const trace_estimate t = hutchinson_trace(hvp, 60, {.min_probes = 16, .max_probes = 2000, .rel_tol = 0.01, .seed = seed});
    INFO("estimate " << t.trace << " +- " << t.std_error << " exact " << a.trace() << " probes " << t.probes);
    CHECK(t.converged);
    CHECK(std::fabs(t.trace - a.trace()) <= 3.0 * t.std_error);
    CHECK(t.std_error <= 0.01 * t.trace);
  }
  // A diagonal operator: Rademacher probes give z^T D z = Tr(D) exactly, with zero variance.
  const Eigen::VectorXd d = Eigen::VectorXd::LinSpaced(10, 1.0, 10.0);
  auto diag = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = d.cwiseProduct(v); };
  const trace_estimate t = hutchinson_trace(diag, 10);
  CHECK(t.trace == Approx(55.0));
  CHECK(t.std_error == 0.0);
  CHECK(t.probes == 16);
}

TEST_CASE("power iteration finds the top eigenvalue", "[sensitivity][hessian]") {
  const Eigen::MatrixXd a = spd(40, 9);
  auto hvp = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
  const eigen_estimate e = power_iteration(hvp, 40, {.max_iterations = 2000, .tol = 1e-12, .seed = 1});
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(a);
  CHECK(e.converged);
  CHECK(e.value == Approx(solver.eigenvalues().maxCoeff()).epsilon(1e-6));
  CHECK(std::fabs(e.vector.dot(solver.eigenvectors().col(39))) == Approx(1.0).epsilon(1e-3));
  auto zero = [](const Eigen::VectorXd&, Eigen::VectorXd& out) { out.setZero(); };
  CHECK(power_iteration(zero, 5).value == 0.0);
  CHECK_THROWS_AS(power_iteration(hvp, 0), error);
}

TEST_CASE("HAWQ score is trace / n times the quantization error", "[sensitivity][hessian]") {
  const row_matrix w = test::gaussian(4, 32, 1.0f, 3);
  const quant_spec s = parse_spec("int4/g32");
  const double err = (dequantize(quantize(w, s)) - w).cast<double>().squaredNorm();
  CHECK(hawq_score(256.0, w, s) == Approx(256.0 / 128.0 * err));
  CHECK(hawq_score(1.0, w, parse_spec("fp32")) == 0.0);
}

TEST_CASE("sensitivity classes follow the seed's table", "[sensitivity][classify]") {
  CHECK(classify(0.021) == sensitivity_class::high);
  CHECK(classify(0.02) == sensitivity_class::medium);
  CHECK(classify(0.0051) == sensitivity_class::medium);
  CHECK(classify(0.005) == sensitivity_class::low);
  CHECK(classify(0.001) == sensitivity_class::low);
  CHECK(classify(0.0) == sensitivity_class::insensitive);
  CHECK(classify(-0.03) == sensitivity_class::high);
  CHECK(classify(0.01, {0.05, 0.02, 0.01}) == sensitivity_class::insensitive);
  CHECK_THROWS_AS(classify(0.01, {0.01, 0.02, 0.0}), error);
  const class_suggestions s;
  CHECK(s[sensitivity_class::medium] == parse_spec("int8"));
  CHECK(bits_per_weight(s[sensitivity_class::insensitive], 64, 4096) < bits_per_weight(s[sensitivity_class::low], 64, 4096));
  CHECK(parse_sensitivity_class("low") == sensitivity_class::low);
  CHECK_THROWS_AS(parse_sensitivity_class("lowish"), error);
}
