// to_sensitivity_table: the result of each sensitivity analysis as the planner's input, a
// sensitivity_table (plan/sources.hpp), so no caller converts by hand. The dependency runs one way:
// sensitivity/ knows plan/'s table, plan/ never includes sensitivity/.
//
//   auto scores = mixprec::analyze_weights(m, candidates);                 // m: a mixprec::model
//   auto table  = mixprec::to_sensitivity_table(scores, m);                 // loss = |Q(W) - W|_F^2
//   auto plan   = mixprec::plan_builder{table, mixprec::knapsack_policy{}, mixprec::bits_budget{4.5}}.build();
//
// Which number becomes the loss:
// - probe_report (probe.hpp):             drop = |M(full) - M(only this layer quantized)|, in M's unit;
//                                         an infinite drop (the model broke) is refused (the table
//                                         holds finite losses): leave such a candidate out or rule it out;
// - weight_score (weight_sensitivity.hpp): weight_loss::weight_error = |Q(W) - W|_F^2 (the default), or
//                                         weight_loss::output_error = ||(Q(W) - W) X||_F^2, which needs a
//                                         layer statistic (it is NaN, and refused, without one);
// - hessian_score (hessian.hpp):          omega = Tr(H)/n * |Q(W) - W|_F^2, HAWQ-V2's per-layer
//                                         sensitivity (hessian.hpp's hawq_score).
// Shapes come from `layers`, the views that were analysed. Errors: mixprec::error(invalid_argument)
// for a result whose layer is not in `layers`, and the table's own errors (non-finite loss, a pair
// given twice) naming the layer and spec.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/plan/sources.hpp"
#include "mixprec/sensitivity/hessian.hpp"
#include "mixprec/sensitivity/probe.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace mixprec {

// The field of a weight_score that becomes the loss (see the banner).
enum class weight_loss { weight_error, output_error };

namespace detail {

// The analysed layers by name (built once: a table of many layers x candidates stays linear).
class analysed_layers {
 public:
  explicit analysed_layers(std::span<const layer> layers) {
    for (const layer& l : layers) by_name_.emplace(l.name, &l);
  }
  [[nodiscard]] const layer& at(std::string_view name, std::string_view what) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end())
      throw error(errc::invalid_argument, "to_sensitivity_table: " + std::string(what) + " layer '" + std::string(name) +
                                              "' is not among the layers given");
    return *it->second;
  }

 private:
  std::unordered_map<std::string_view, const layer*> by_name_;
};

}  // namespace detail

// One row per (layer, candidate) of the probe, loss = drop.
[[nodiscard]] inline sensitivity_table to_sensitivity_table(const probe_report& report, std::span<const layer> layers) {
  const detail::analysed_layers by_name(layers);
  sensitivity_table t;
  for (const probe_result& r : report.results) {
    const layer& l = by_name.at(r.layer, "probed");
    t.add(r.layer, l.rows, l.cols, r.spec, r.drop);
  }
  return t;
}

// One row per weight_score, loss = the chosen field.
[[nodiscard]] inline sensitivity_table to_sensitivity_table(const std::vector<weight_score>& scores,
                                                            std::span<const layer> layers,
                                                            weight_loss loss = weight_loss::weight_error) {
  const detail::analysed_layers by_name(layers);
  sensitivity_table t;
  for (const weight_score& s : scores) {
    const layer& l = by_name.at(s.layer, "scored");
    t.add(s.layer, l.rows, l.cols, s.spec, loss == weight_loss::weight_error ? s.weight_error : s.output_error);
  }
  return t;
}

// One row per (layer, candidate) of the Hessian analysis, loss = omega (HAWQ).
[[nodiscard]] inline sensitivity_table to_sensitivity_table(const std::vector<hessian_score>& scores,
                                                            std::span<const layer> layers) {
  const detail::analysed_layers by_name(layers);
  sensitivity_table t;
  for (const hessian_score& h : scores) {
    const layer& l = by_name.at(h.layer, "Hessian");
    for (const hawq_entry& e : h.candidates) t.add(h.layer, l.rows, l.cols, e.spec, e.omega);
  }
  return t;
}

}  // namespace mixprec
