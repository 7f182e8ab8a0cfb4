// Hutchinson trace, power iteration and the HAWQ score against closed forms: a quadratic loss
// L(W) = 1/2 vec(W - W0)^T A vec(W - W0) has Hessian A, so its trace and eigenvalues are known.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <Eigen/Eigenvalues>

#include "mixprec/sensitivity/hessian.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {

// A symmetric positive definite matrix with a spread-out spectrum.
Eigen::MatrixXd spd(index_t n, std::uint32_t seed) {
  const Eigen::MatrixXd b = test::gaussian(n, n, 1.0f, seed).cast<double>();
  return b * b.transpose() / static_cast<double>(n) + Eigen::MatrixXd::Identity(n, n);
}

// The quadratic loss of one layer and its gradient; the HVP is taken the way a user without double
// backward would: central differences of the gradient (exact for a quadratic, up to rounding).
struct quadratic_layer {
  Eigen::MatrixXd a;   // the Hessian
  Eigen::VectorXd w0;  // the minimum
  [[nodiscard]] double loss(const Eigen::VectorXd& w) const { return 0.5 * (w - w0).dot(a * (w - w0)); }
  [[nodiscard]] Eigen::VectorXd gradient(const Eigen::VectorXd& w) const { return a * (w - w0); }
  [[nodiscard]] hvp_function hvp() const {
    return [this](const Eigen::VectorXd& v, Eigen::VectorXd& out) {
      const double h = 1e-3;
      out = (gradient(w0 + h * v) - gradient(w0 - h * v)) / (2.0 * h);
    };
  }
};

Eigen::VectorXd flatten(const row_matrix& w) {
  return Eigen::Map<const Eigen::VectorXf>(w.data(), w.size()).cast<double>();
}

}  // namespace

TEST_CASE("Hutchinson trace is within 3 standard errors of the exact trace", "[sensitivity][hessian]") {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    const Eigen::MatrixXd a = spd(60, seed);
    auto hvp = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
    const trace_estimate t = hutchinson_trace(hvp, 60, {.min_probes = 16, .max_probes = 2000, .rel_tol = 0.01, .seed = seed});
    INFO("estimate " << t.trace << " +- " << t.std_error << " exact " << a.trace() << " probes " << t.probes);
    CHECK(t.converged);
    CHECK(t.probes >= 16);
    CHECK(t.probes < 2000);
    CHECK(std::fabs(t.trace - a.trace()) <= 3.0 * t.std_error);
    CHECK(t.std_error <= 0.01 * std::fabs(t.trace));
  }
  // Variance of z^T A z for Rademacher z is 2 sum_{i != j} A_ij^2: the standard error after k probes
  // estimates sqrt(that / k).
  const Eigen::MatrixXd a = spd(30, 5);
  auto hvp = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
  const trace_estimate t = hutchinson_trace(hvp, 30, {.min_probes = 4000, .max_probes = 4000, .rel_tol = 0.0, .seed = 9});
  const double off = a.squaredNorm() - a.diagonal().squaredNorm();
  CHECK_FALSE(t.converged);
  CHECK(t.probes == 4000);
  CHECK(t.std_error == Approx(std::sqrt(2.0 * off / 4000.0)).epsilon(0.1));
  // A diagonal operator: z^T D z = Tr(D) for every probe, so the variance is zero and the rule stops
  // at min_probes.
  const Eigen::VectorXd d = Eigen::VectorXd::LinSpaced(10, 1.0, 10.0);
  auto diag = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = d.cwiseProduct(v); };
  const trace_estimate td = hutchinson_trace(diag, 10);
  CHECK(td.trace == 55.0);
  CHECK(td.std_error == 0.0);
  CHECK(td.probes == 16);
  CHECK(td.converged);
  // Seeded: the same seed gives the same estimate, another seed another one.
  const auto t1 = hutchinson_trace(hvp, 30, {.seed = 1}), t2 = hutchinson_trace(hvp, 30, {.seed = 1});
  const auto t3 = hutchinson_trace(hvp, 30, {.seed = 2});
  CHECK(t1.trace == t2.trace);
  CHECK(t1.trace != t3.trace);
  // Bad input.
  CHECK_THROWS_AS(hutchinson_trace(hvp, 0), error);
  CHECK_THROWS_AS(hutchinson_trace(hvp, 30, {.min_probes = 1}), error);
  CHECK_THROWS_AS(hutchinson_trace(hvp, 30, {.min_probes = 10, .max_probes = 5}), error);
  auto wrong_size = [](const Eigen::VectorXd&, Eigen::VectorXd& out) { out.resize(3); out.setOnes(); };
  CHECK_THROWS_AS(hutchinson_trace(wrong_size, 30), error);
  auto nan = [](const Eigen::VectorXd&, Eigen::VectorXd& out) { out.setConstant(std::nan("")); };
  CHECK_THROWS_AS(hutchinson_trace(nan, 30), error);
}

TEST_CASE("power iteration matches Eigen's SelfAdjointEigenSolver", "[sensitivity][hessian]") {
  for (std::uint32_t seed : {7u, 9u}) {
    const Eigen::MatrixXd a = spd(40, seed);
    auto hvp = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
    const eigen_estimate e = power_iteration(hvp, 40, {.max_iterations = 5000, .tol = 1e-13, .seed = 1});
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(a);
    INFO("iterations " << e.iterations);
    CHECK(e.converged);
    CHECK(e.value == Approx(solver.eigenvalues()(39)).epsilon(1e-8));
    CHECK(std::fabs(e.vector.dot(solver.eigenvectors().col(39))) == Approx(1.0).epsilon(1e-4));
  }
  // Indefinite: the dominant eigenvalue is the one of largest magnitude, here negative.
  Eigen::MatrixXd b = Eigen::MatrixXd::Zero(3, 3);
  b.diagonal() << 2.0, -5.0, 1.0;
  const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(spd(3, 4)).householderQ();
  const Eigen::MatrixXd c = q * b * q.transpose();
  auto hc = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = c * v; };
  CHECK(power_iteration(hc, 3, {.max_iterations = 1000, .tol = 1e-14}).value == Approx(-5.0).epsilon(1e-9));
  // The iteration cap is honoured and reported.
  const Eigen::MatrixXd a = spd(40, 7);
  auto ha = [&](const Eigen::VectorXd& v, Eigen::VectorXd& out) { out = a * v; };
  const eigen_estimate capped = power_iteration(ha, 40, {.max_iterations = 3, .tol = 0.0});
  CHECK(capped.iterations == 3);
  CHECK_FALSE(capped.converged);
  auto zero = [](const Eigen::VectorXd&, Eigen::VectorXd& out) { out.setZero(); };
  const eigen_estimate z = power_iteration(zero, 5);
  CHECK(z.value == 0.0);
  CHECK(z.converged);
  CHECK_THROWS_AS(power_iteration(ha, 0), error);
  CHECK_THROWS_AS(power_iteration(ha, 40, {.max_iterations = 0}), error);
}

TEST_CASE("HAWQ score is trace / n times the quantization error", "[sensitivity][hessian]") {
  const row_matrix w = test::gaussian(4, 32, 1.0f, 3);
  const quant_spec s = parse_spec("int4/g32");
  const double err = (dequantize(quantize(w, s)) - w).cast<double>().squaredNorm();
  CHECK(hawq_score(256.0, w, s) == Approx(256.0 / 128.0 * err));
  CHECK(hawq_score(10.0, 5, 2.0) == 4.0);
  CHECK(hawq_score(1.0, w, parse_spec("fp32")) == 0.0);
  CHECK_THROWS_AS(hawq_score(1.0, 0, 1.0), error);
}

TEST_CASE("analyze_hessian on quadratic losses: exact trace, top eigenvalue and the loss increase",
          "[sensitivity][hessian]") {
  // Two 6 x 8 layers (n = 48). Layer "flat" has Hessian c I, so Omega = c ||E||^2 = 2 (L(Q(W)) - L(W))
  // exactly at the minimum W = W0; layer "sharp" has an SPD Hessian 50x larger.
  row_matrix w_flat = test::gaussian(6, 8, 0.5f, 1), w_sharp = test::gaussian(6, 8, 0.5f, 2);
  const double c = 3.0;
  const quadratic_layer flat{c * Eigen::MatrixXd::Identity(48, 48), flatten(w_flat)};
  const quadratic_layer sharp{50.0 * spd(48, 3), flatten(w_sharp)};
  const std::vector<layer> layers = {make_layer("flat", w_flat), make_layer("sharp", w_sharp)};
  const std::vector<hvp_function> hvps = {flat.hvp(), sharp.hvp()};
  const std::vector<quant_spec> cand = {parse_spec("int4/channel"), parse_spec("int8/channel")};
  std::size_t ticks = 0;
  hessian_options o;
  o.trace = {.min_probes = 32, .max_probes = 4000, .rel_tol = 0.005, .seed = 11};
  o.top_eigenvalue = true;
  o.power = {.max_iterations = 5000, .tol = 1e-12};
  o.progress = [&](std::size_t, std::size_t total, const std::string&) { ticks += total == 2 ? 1 : 100; };
  const auto h = analyze_hessian(layers, hvps, cand, o);
  CHECK(ticks == 2);
  REQUIRE(h.size() == 2);
  // flat: z^T (cI) z = 48 c for every probe.
  CHECK(h[0].parameters == 48);
  CHECK(h[0].trace.trace == Approx(48.0 * c).epsilon(1e-9));
  CHECK(h[0].top->value == Approx(c).epsilon(1e-9));
  CHECK(h[0].top->vector.size() == 0);
  // sharp: within 3 standard errors of the exact trace; top eigenvalue exact.
  const double exact = sharp.a.trace();
  INFO("sharp trace " << h[1].trace.trace << " +- " << h[1].trace.std_error << " exact " << exact);
  CHECK(std::fabs(h[1].trace.trace - exact) <= 3.0 * h[1].trace.std_error);
  CHECK(h[1].top->value == Approx(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(sharp.a).eigenvalues()(47)).epsilon(1e-8));
  for (std::size_t k = 0; k < cand.size(); ++k) {
    const row_matrix q_flat = dequantize(quantize(w_flat, cand[k]));
    const double err = (q_flat - w_flat).cast<double>().squaredNorm();
    CHECK(h[0].candidates[k].spec == cand[k]);
    CHECK(h[0].candidates[k].weight_error == Approx(err).epsilon(1e-12));
    CHECK(h[0].candidates[k].omega == Approx(h[0].trace.trace / 48.0 * err).epsilon(1e-12));
    // Second-order picture is exact for a quadratic: Omega = 2 * loss increase when H = c I.
    CHECK(h[0].candidates[k].omega == Approx(2.0 * flat.loss(flatten(q_flat))).epsilon(1e-6));
  }
  // The sharper layer is the more sensitive one at every candidate; INT4 worse than INT8.
  CHECK(h[1].candidates[0].omega > h[0].candidates[0].omega);
  CHECK(h[1].candidates[1].omega > h[0].candidates[1].omega);
  CHECK(h[1].candidates[0].omega > h[1].candidates[1].omega);
  // One HVP per layer.
  CHECK_THROWS_AS(analyze_hessian(layers, std::vector<hvp_function>{flat.hvp()}, cand), error);
  CHECK_THROWS_AS(analyze_hessian(layers, std::vector<hvp_function>{flat.hvp(), hvp_function{}}, cand), error);
}
