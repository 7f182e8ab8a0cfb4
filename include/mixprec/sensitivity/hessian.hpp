// Hessian-based sensitivity (HAWQ) from a user-supplied Hessian-vector product Hv = H v of the loss with
// respect to one layer's weights, flattened row-major (n = rows * cols entries):
// - hutchinson_trace: Tr(H) ~ mean of z^T H z over Rademacher probes z (Hutchinson 1990; HAWQ-V2,
//   Dong et al. 2020), with a running mean and standard error and a stop rule;
// - power_iteration: the dominant eigenvalue of H (HAWQ-V1, Dong et al. 2019);
// - hawq_score: Omega = Tr(H) / n * ||Q(W) - W||_F^2 (HAWQ-V2/V3's per-layer sensitivity);
// - analyze_hessian: all three for every layer x candidate.
// The HVP usually comes from the user's autograd (double backward, or finite differences of
// gradients) and runs on their one model, so the analysis calls it sequentially.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/sensitivity/metrics.hpp"
#include "mixprec/sensitivity/progress.hpp"

namespace mixprec {

// out = H v for a symmetric n x n operator H (out arrives sized n and zeroed).
template <class F>
concept HessianVectorProduct = std::invocable<F&, const Eigen::VectorXd&, Eigen::VectorXd&>;

// The type-erased form, one per layer for analyze_hessian.
using hvp_function = std::function<void(const Eigen::VectorXd& v, Eigen::VectorXd& hv)>;

struct hutchinson_options {
  int min_probes = 16;   // never stop before this many probes
  int max_probes = 512;  // never use more
  double rel_tol = 0.01;  // stop once std_error <= rel_tol * |trace|
  std::uint64_t seed = 0;
};

struct trace_estimate {
  double trace = 0.0;      // running mean of z^T H z
  double std_error = 0.0;  // standard error of that mean: sample standard deviation / sqrt(probes)
  int probes = 0;
  bool converged = false;  // the stop rule was met (else max_probes ran out)
};

namespace detail {

template <class Hvp>
void apply_hvp(Hvp& hvp, const Eigen::VectorXd& v, Eigen::VectorXd& out, const char* what) {
  out.setZero(v.size());
  hvp(v, out);
  if (out.size() != v.size())
    throw error(errc::shape_mismatch, std::string(what) + ": the Hessian-vector product returned " +
                                          std::to_string(out.size()) + " entries, expected " + std::to_string(v.size()));
  if (!out.allFinite()) throw error(errc::non_finite, std::string(what) + ": the Hessian-vector product has NaN or Inf");
}

}  // namespace detail

// Hutchinson's estimate of Tr(H) for an n x n symmetric operator: E[z^T H z] = Tr(H) for z with
// independent +-1 entries. The mean and variance are updated with Welford's recurrence; the estimate is
// unbiased whatever the stop rule.
template <HessianVectorProduct Hvp>
[[nodiscard]] trace_estimate hutchinson_trace(Hvp&& hvp, index_t n, const hutchinson_options& o = {}) {
  if (n <= 0) throw error(errc::empty_input, "hutchinson_trace: dimension must be positive");
  if (o.min_probes < 2 || o.max_probes < o.min_probes)
    throw error(errc::invalid_argument, "hutchinson_trace: need 2 <= min_probes <= max_probes");
  if (!(o.rel_tol >= 0.0)) throw error(errc::invalid_argument, "hutchinson_trace: rel_tol must be >= 0");
  std::mt19937_64 gen(o.seed);
  Eigen::VectorXd z(n), hz(n);
  double mean = 0.0, m2 = 0.0;
  trace_estimate t;
  for (int k = 1; k <= o.max_probes; ++k) {
    for (index_t i = 0; i < n; i += 64) {  // 64 signs per draw
      std::uint64_t bits = gen();
      for (index_t j = i; j < std::min(n, i + 64); ++j, bits >>= 1) z[j] = (bits & 1u) ? 1.0 : -1.0;
    }
    detail::apply_hvp(hvp, z, hz, "hutchinson_trace");
    const double sample = z.dot(hz);
    const double delta = sample - mean;
    mean += delta / k;
    m2 += delta * (sample - mean);
    t.probes = k;
    t.trace = mean;
    t.std_error = k > 1 ? std::sqrt(m2 / (k - 1) / k) : 0.0;
    if (k >= o.min_probes && t.std_error <= o.rel_tol * std::fabs(mean)) {
      t.converged = true;
      break;
    }
  }
  return t;
}

struct power_iteration_options {
  int max_iterations = 200;
  double tol = 1e-8;  // stop once the Rayleigh quotient changes by <= tol * |value| in one step
  std::uint64_t seed = 0;
};

struct eigen_estimate {
  double value = 0.0;      // the dominant eigenvalue (largest magnitude), with its sign
  Eigen::VectorXd vector;  // its unit eigenvector (empty from analyze_hessian, to save memory)
  int iterations = 0;
  bool converged = false;
};

// Power iteration from a seeded Gaussian start: the eigenvalue of largest magnitude of a symmetric
// operator (the top eigenvalue for a positive semi-definite Hessian) and its eigenvector. Convergence
// is linear in |lambda_2 / lambda_1|; with a +-lambda pair on top it does not converge (converged false).
template <HessianVectorProduct Hvp>
[[nodiscard]] eigen_estimate power_iteration(Hvp&& hvp, index_t n, const power_iteration_options& o = {}) {
  if (n <= 0) throw error(errc::empty_input, "power_iteration: dimension must be positive");
  if (o.max_iterations < 1 || !(o.tol >= 0.0))
    throw error(errc::invalid_argument, "power_iteration: need max_iterations >= 1 and tol >= 0");
  std::mt19937_64 gen(o.seed);
  std::normal_distribution<double> normal;
  eigen_estimate e;
  e.vector.resize(n);
  for (index_t i = 0; i < n; ++i) e.vector[i] = normal(gen);
  e.vector.normalize();
  Eigen::VectorXd hv(n);
  double previous = 0.0;
  for (int k = 1; k <= o.max_iterations; ++k) {
    detail::apply_hvp(hvp, e.vector, hv, "power_iteration");
    e.value = e.vector.dot(hv);  // Rayleigh quotient of the unit vector
    e.iterations = k;
    const double norm = hv.norm();
    if (norm == 0.0) {  // H v = 0: v is an eigenvector of eigenvalue 0 (for a zero H, the dominant one)
      e.converged = true;
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

// HAWQ-V2 sensitivity Omega = Tr(H) / n * ||Q(W) - W||_F^2 from the squared weight error.
[[nodiscard]] inline double hawq_score(double hessian_trace, index_t n, double weight_error) {
  if (n <= 0) throw error(errc::empty_input, "hawq_score: the layer has no weights");
  return hessian_trace / static_cast<double>(n) * weight_error;
}

// HAWQ-V2 sensitivity of weight w quantized by spec.
[[nodiscard]] inline double hawq_score(double hessian_trace, const row_matrix_ref& w, const quant_spec& spec) {
  const row_matrix back = dequantize(quantize(w, spec));
  return hawq_score(hessian_trace, w.size(), squared_error(w, back));
}

struct hessian_options {
  hutchinson_options trace{};       // each layer i uses seed trace.seed + i
  bool top_eigenvalue = false;      // also run power iteration (costs up to power.max_iterations HVPs)
  power_iteration_options power{};  // each layer i uses seed power.seed + i
  progress_callback progress{};     // ticks once per layer
};

struct hawq_entry {
  quant_spec spec;
  double weight_error = 0.0;  // ||Q(W) - W||_F^2
  double omega = 0.0;         // Tr(H) / n * weight_error

  friend bool operator==(const hawq_entry&, const hawq_entry&) = default;
};

struct hessian_score {
  std::string layer;
  index_t parameters = 0;              // n
  trace_estimate trace;
  std::optional<eigen_estimate> top;   // when hessian_options::top_eigenvalue
  std::vector<hawq_entry> candidates;  // in the order of the candidates given
};

// Trace (and optionally top eigenvalue) of every layer's Hessian from hvps[i] (the HVP of layer i,
// vectors of layers[i].size() entries, weights flattened row-major) and the HAWQ score of every candidate.
[[nodiscard]] inline std::vector<hessian_score> analyze_hessian(std::span<const layer> layers,
                                                                std::span<const hvp_function> hvps,
                                                                const std::vector<quant_spec>& candidates,
                                                                const hessian_options& options = {}) {
  validate(layers);
  if (layers.empty()) throw error(errc::empty_input, "analyze_hessian: no layers");
  if (hvps.size() != layers.size())
    throw error(errc::shape_mismatch, "analyze_hessian: " + std::to_string(hvps.size()) + " Hessian-vector products for " +
                                          std::to_string(layers.size()) + " layers");
  for (const quant_spec& s : candidates) validate(s);
  detail::progress_counter counter(options.progress, layers.size());
  std::vector<hessian_score> out;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const layer& l = layers[i];
    if (!hvps[i]) throw error(errc::invalid_argument, "analyze_hessian: layer '" + l.name + "' has no Hessian-vector product");
    hessian_score h;
    h.layer = l.name;
    h.parameters = l.size();
    hutchinson_options t = options.trace;
    t.seed += i;
    h.trace = hutchinson_trace(hvps[i], l.size(), t);
    if (options.top_eigenvalue) {
      power_iteration_options p = options.power;
      p.seed += i;
      h.top = power_iteration(hvps[i], l.size(), p);
      h.top->vector = Eigen::VectorXd();
    }
    const row_matrix w = l.weight();
    for (const quant_spec& s : candidates) {
      const double err = squared_error(w, dequantize(quantize(w, s, l.name)));
      h.candidates.push_back({s, err, hawq_score(h.trace.trace, l.size(), err)});
    }
    out.push_back(std::move(h));
    counter.tick(l.name);
  }
  return out;
}

}  // namespace mixprec
