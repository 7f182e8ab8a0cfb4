// The seed's sensitivity: S(i) = |M(full precision) - M(only layer i quantized)| for a user-supplied
// evaluation M (accuracy, loss, perplexity...). Each layer is quantized in place (its weights replaced
// by dequantize(quantize(W))), evaluated, and restored bit for bit, also when the evaluation throws.
// Sequential: the layers are quantized inside the user's one model, so two probes cannot overlap.
#pragma once

#include <cmath>
#include <concepts>
#include <cstring>
#include <string>
#include <vector>

#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/layer.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace mixprec {

// An evaluation of the whole model: higher or lower is better, the probe only takes differences.
template <class F>
concept Evaluation = std::invocable<F&> && std::convertible_to<std::invoke_result_t<F&>, double>;

struct probe_result {
  std::string layer;
  quant_spec spec;
  double metric = 0.0;  // M with only this layer quantized
  double drop = 0.0;    // |M(full) - metric|
};

struct probe_report {
  double baseline = 0.0;  // M(full precision)
  std::vector<probe_result> results;  // ordered by layer, then candidate
};

// Replaces a layer's weights by their quantized values for its lifetime; restores the exact bytes.
class scoped_quantization {
 public:
  scoped_quantization(const layer_ref& l, const quant_spec& spec) : layer_(l), saved_(l.weight()) {
    const row_matrix back = dequantize(quantize(saved_, spec, l.name));
    layer_.weight() = back;
  }
  scoped_quantization(const scoped_quantization&) = delete;
  scoped_quantization& operator=(const scoped_quantization&) = delete;
  ~scoped_quantization() { layer_.weight() = saved_; }

 private:
  const layer_ref& layer_;
  row_matrix saved_;
};

// Evaluates the model with each layer x candidate quantized alone.
template <Evaluation Eval>
[[nodiscard]] probe_report probe_layers(const std::vector<layer_ref>& layers, const std::vector<quant_spec>& candidates,
                                        Eval&& evaluate, const progress_callback& progress = {}) {
  validate(layers);
  if (candidates.empty()) throw error(errc::invalid_argument, "probe_layers: no candidate quantizers");
  probe_report report;
  report.baseline = static_cast<double>(evaluate());
  if (!std::isfinite(report.baseline)) throw error(errc::non_finite, "probe_layers: the evaluation returned a non-finite value");
  const std::size_t total = layers.size() * candidates.size();
  for (const layer_ref& l : layers)
    for (const quant_spec& spec : candidates) {
      double m = 0.0;
      {
        const scoped_quantization guard(l, spec);
        m = static_cast<double>(evaluate());
      }
      report.results.push_back({l.name, spec, m, std::fabs(report.baseline - m)});
      if (progress) progress(report.results.size(), total, l.name);
    }
  return report;
}

}  // namespace mixprec
