// Hessian-based sensitivity (HAWQ-V2/V3) from a user-supplied Hessian-vector product Hv = H v of the
// loss with respect to one layer's weights (flattened row-major, n = rows * cols entries):
// - Hutchinson: Tr(H) ~ mean of z^T H z over Rademacher probes z (Hutchinson 1990; HAWQ-V2), with a
//   running standard error and a stop rule;
// - power iteration: the dominant eigenvalue of H (HAWQ-V1);
// - the HAWQ-V2 score Omega = Tr(H) / n * ||Q(W) - W||^2.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <random>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace mixprec {

template <class F>
concept HessianVectorProduct = std::invocable<F&, const Eigen::VectorXd&, Eigen::VectorXd&>;

struct hutchinson_options {
  int min_probes = 16;
  int max_probes = 512;
  double rel_tol = 0.01;  // stop once standard error <= rel_tol * |mean| (after min_probes)
  std::uint64_t seed = 0;
};

struct trace_estimate {
  double trace = 0.0;      // mean of z^T H z
  double std_error = 0.0;  // of the mean
  int probes = 0;
  bool converged = false;  // the stop rule was met before max_probes
};

// Hutchinson's estimate of Tr(H) for an n x n operator. The sample variance uses Welford's update.
template <HessianVectorProduct Hvp>
[[nodiscard]] trace_estimate hutchinson_trace(Hvp&& hvp, Eigen::Index n, const hutchinson_options& o = {}) {
  if (n <= 0) throw error(errc::empty_input, "hutchinson_trace: dimension must be positive");
  if (o.min_probes < 2 || o.max_probes < o.min_probes)
    throw error(errc::invalid_argument, "hutchinson_trace: need 2 <= min_probes <= max_probes");
  std::mt19937_64 gen(o.seed);
  Eigen::VectorXd z(n), hz(n);
  double mean = 0.0, m2 = 0.0;
  trace_estimate t;
  for (int k = 1; k <= o.max_probes; ++k) {
    for (Eigen::Index i = 0; i < n; ++i) z[i] = (gen() & 1u) ? 1.0 : -1.0;
    hz.setZero(n);
    hvp(z, hz);
    if (hz.size() != n) throw error(errc::shape_mismatch, "hutchinson_trace: Hessian-vector product has the wrong size");
    const double sample = z.dot(hz);
    if (!std::isfinite(sample)) throw error(errc::non_finite, "hutchinson_trace: non-finite Hessian-vector product");
    const double delta = sample - mean;
    mean += delta / k;
    m2 += delta * (sample - mean);
    t.probes = k;
    t.trace = mean;
    t.std_error = std::sqrt(m2 / (k - 1) / k);
    if (k >= o.min_probes && t.std_error <= o.rel_tol * std::fabs(mean)) {
      t.converged = true;
      break;
    }
  }
  return t;
}

struct power_iteration_options {
  int max_iterations = 200;
  double tol = 1e-8;  // relative change of the Rayleigh quotient
  std::uint64_t seed = 0;
};

struct eigen_estimate {
  double value = 0.0;  // dominant eigenvalue (largest magnitude), with its sign
  Eigen::VectorXd vector;
  int iterations = 0;
  bool converged = false;
};

// Power iteration on a symmetric operator: the eigenvalue of largest magnitude and its eigenvector.
template <HessianVectorProduct Hvp>
[[nodiscard]] eigen_estimate power_iteration(Hvp&& hvp, Eigen::Index n, const power_iteration_options& o = {}) {
  if (n <= 0) throw error(errc::empty_input, "power_iteration: dimension must be positive");
  std::mt19937_64 gen(o.seed);
  std::normal_distribution<double> normal;
  eigen_estimate e;
  e.vector.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) e.vector[i] = normal(gen);
  e.vector.normalize();
  Eigen::VectorXd hv(n);
  double previous = 0.0;
  for (int k = 1; k <= o.max_iterations; ++k) {
    hv.setZero(n);
    hvp(e.vector, hv);
    if (!hv.allFinite()) throw error(errc::non_finite, "power_iteration: non-finite Hessian-vector product");
    e.value = e.vector.dot(hv);  // Rayleigh quotient of the unit vector
    e.iterations = k;
    const double norm = hv.norm();
    if (norm == 0.0) {
      e.converged = true;  // H v = 0: v is an eigenvector with eigenvalue 0
      break;
    }
    e.vector = hv / norm;
    if (k > 1 && std::fabs(e.value - previous) <= o.tol * std::fabs(e.value)) {
      e.converged = true;
      break;
    }
    previous = e.value;
  }
  return e;
}

// HAWQ-V2 sensitivity Omega = Tr(H) / n * ||Q(W) - W||_F^2 of a layer quantized by spec.
[[nodiscard]] inline double hawq_score(double hessian_trace, const row_matrix_ref& w, const quant_spec& spec) {
  const row_matrix back = dequantize(quantize(w, spec));
  return hessian_trace / static_cast<double>(w.size()) * (back - w).cast<double>().squaredNorm();
}

}  // namespace mixprec
