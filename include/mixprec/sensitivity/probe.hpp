// One-at-a-time sensitivity: S(i) = |M(full precision) - M(only layer i quantized)| for a user-supplied
// evaluation M of the whole model (accuracy, loss, perplexity...), for every layer x candidate.
// Each layer is quantized in place (its weights replaced by dequantize(quantize(W))), the model is
// evaluated, and the layer is restored bit for bit, also when the evaluation throws (scoped_quantization).
//
// Threads: probe_layers is sequential on purpose. The probe writes into the user's one model, so two
// probes at once would each evaluate a model with two layers quantized (and race on the weights), however
// thread-safe the evaluation itself is. probe_layers_parallel runs T probes at once on T independent
// copies of the model that a user-supplied factory makes (memory: T models).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixprec/quantize/quantize.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/sensitivity/progress.hpp"

namespace mixprec {

// An evaluation of the whole model; higher or lower may be better, the probe only takes differences.
template <class F>
concept Evaluation = std::invocable<F&> && std::convertible_to<std::invoke_result_t<F&>, double>;

struct probe_result {
  std::string layer;
  quant_spec spec;
  double metric = 0.0;  // M with only this layer quantized by spec
  double drop = 0.0;    // |M(full) - metric|; +inf when metric is NaN (the model broke)

  friend bool operator==(const probe_result&, const probe_result&) = default;
};

struct probe_report {
  double baseline = 0.0;              // M(full precision)
  std::vector<probe_result> results;  // ordered by layer, then candidate

  // The results for one candidate, largest drop first (ties keep layer order).
  [[nodiscard]] std::vector<probe_result> ranked(const quant_spec& spec) const {
    std::vector<probe_result> out;
    for (const auto& r : results)
      if (r.spec == spec) out.push_back(r);
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.drop > b.drop; });
    return out;
  }
};

// Replaces a layer's weights by their quantized values for its lifetime and then restores the saved
// bytes exactly (memcpy, so NaN payloads and -0.0 survive too).
class scoped_quantization {
 public:
  // Throws mixprec::error (leaving the weights untouched) if the quantizer rejects them.
  scoped_quantization(layer& l, const quant_spec& spec) : layer_(l), saved_(std::as_const(l).weight()) {
    const quantized_tensor q = quantize(saved_, spec, l.name);
    try {
      dequantize_into(q, layer_.weight());
    } catch (...) {
      restore();
      throw;
    }
  }
  scoped_quantization(const scoped_quantization&) = delete;
  scoped_quantization& operator=(const scoped_quantization&) = delete;
  ~scoped_quantization() { restore(); }

 private:
  void restore() noexcept {
    const std::size_t row_bytes = sizeof(float) * static_cast<std::size_t>(layer_.cols);
    for (index_t r = 0; r < layer_.rows; ++r)
      std::memcpy(layer_.data + r * layer_.row_stride(), saved_.data() + r * layer_.cols, row_bytes);
  }

  layer& layer_;
  row_matrix saved_;
};

namespace detail {

inline double checked_baseline(double m) {
  if (!std::isfinite(m))
    throw error(errc::non_finite, "probe: the evaluation of the full-precision model returned " + std::to_string(m));
  return m;
}

inline probe_result probe_one(layer& l, const quant_spec& spec, double baseline,
                              const std::function<double()>& evaluate) {
  double m = 0.0;
  {
    const scoped_quantization guard(l, spec);
    m = evaluate();
  }
  const double drop = std::isnan(m) ? std::numeric_limits<double>::infinity() : std::fabs(baseline - m);
  return {l.name, spec, m, drop};
}

}  // namespace detail

// Evaluates the model once at full precision, then with each layer x candidate quantized alone.
// `evaluate` reads the weights the layer views point to; the probe writes them, so it takes mutable
// layers (a mixprec::model or std::vector<layer> converts). Weights are bit-identical afterwards, also
// when an evaluation or a quantization throws (the exception propagates).
template <Evaluation Eval>
[[nodiscard]] probe_report probe_layers(std::span<layer> layers, const std::vector<quant_spec>& candidates,
                                        Eval&& evaluate, const progress_callback& progress = {}) {
  validate(std::span<const layer>(layers));
  if (layers.empty()) throw error(errc::empty_input, "probe_layers: no layers");
  if (candidates.empty()) throw error(errc::invalid_argument, "probe_layers: no candidate quantizers");
  for (const quant_spec& s : candidates) validate(s);
  const std::function<double()> eval = [&evaluate] { return static_cast<double>(evaluate()); };
  probe_report report;
  report.baseline = detail::checked_baseline(eval());
  detail::progress_counter counter(progress, layers.size() * candidates.size());
  for (layer& l : layers)
    for (const quant_spec& spec : candidates) {
      report.results.push_back(detail::probe_one(l, spec, report.baseline, eval));
      counter.tick(l.name);
    }
  return report;
}

// One independent copy of the model for a worker of probe_layers_parallel: views of the copy's layers
// (same names, shapes and order in every replica), an evaluation of the copy, and whatever keeps the
// copy alive.
struct probe_replica {
  std::vector<layer> layers;
  std::function<double()> evaluate;
  std::shared_ptr<void> owner;
};

struct parallel_probe_options {
  unsigned threads = 0;  // replicas and workers; 0: one per hardware thread
  progress_callback progress{};
};

// probe_layers on `threads` replicas made by make_replica (called on the calling thread, once per
// worker, before any work): the same results in the same order as the sequential probe, with the
// baseline from the first replica. Throws mixprec::error if replicas differ in their layers or share
// weight memory (a factory that returns views of the original model would race).
[[nodiscard]] inline probe_report probe_layers_parallel(const std::function<probe_replica()>& make_replica,
                                                        const std::vector<quant_spec>& candidates,
                                                        const parallel_probe_options& options = {}) {
  if (!make_replica) throw error(errc::invalid_argument, "probe_layers_parallel: no replica factory");
  if (candidates.empty()) throw error(errc::invalid_argument, "probe_layers_parallel: no candidate quantizers");
  for (const quant_spec& s : candidates) validate(s);
  std::vector<probe_replica> replicas;
  replicas.push_back(make_replica());
  if (replicas[0].layers.empty()) throw error(errc::empty_input, "probe_layers_parallel: the replica has no layers");
  const std::size_t total = replicas[0].layers.size() * candidates.size();
  const unsigned workers = detail::worker_count(options.threads, total);
  replicas.reserve(workers);
  while (replicas.size() < workers) replicas.push_back(make_replica());
  const std::vector<layer>& first = replicas[0].layers;
  for (std::size_t k = 0; k < replicas.size(); ++k) {
    const probe_replica& r = replicas[k];
    const std::string which = "probe_layers_parallel: replica " + std::to_string(k);
    if (!r.evaluate) throw error(errc::invalid_argument, which + " has no evaluation");
    validate(std::span<const layer>(r.layers));
    if (r.layers.size() != first.size())
      throw error(errc::shape_mismatch, which + " has " + std::to_string(r.layers.size()) + " layers, replica 0 has " +
                                            std::to_string(first.size()));
    for (std::size_t i = 0; i < first.size(); ++i) {
      const layer& a = first[i];
      const layer& b = r.layers[i];
      if (a.name != b.name || a.rows != b.rows || a.cols != b.cols)
        throw error(errc::shape_mismatch, which + " layer " + std::to_string(i) + " is '" + b.name + "' " +
                                              std::to_string(b.rows) + "x" + std::to_string(b.cols) + ", replica 0 has '" +
                                              a.name + "' " + std::to_string(a.rows) + "x" + std::to_string(a.cols));
      for (std::size_t j = 0; j < k; ++j) {
        const layer& c = replicas[j].layers[i];
        const float* b_end = b.data + (b.rows - 1) * b.row_stride() + b.cols;
        const float* c_end = c.data + (c.rows - 1) * c.row_stride() + c.cols;
        if (std::less<const float*>{}(b.data, c_end) && std::less<const float*>{}(c.data, b_end))
          throw error(errc::invalid_argument, which + " layer '" + b.name + "' shares weight memory with replica " +
                                                  std::to_string(j) + ": every replica needs its own copy");
      }
    }
  }
  probe_report report;
  report.baseline = detail::checked_baseline(replicas[0].evaluate());
  report.results.resize(total);
  detail::progress_counter counter(options.progress, total);
  const std::size_t nc = candidates.size();
  detail::parallel_for(total, workers, [&](std::size_t k, unsigned worker) {
    probe_replica& r = replicas[worker];
    layer& l = r.layers[k / nc];
    report.results[k] = detail::probe_one(l, candidates[k % nc], report.baseline, r.evaluate);
    counter.tick(l.name);
  });
  return report;
}

}  // namespace mixprec
