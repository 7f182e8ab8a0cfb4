// MixedPrecisionPlan: the precision of every layer, chosen from measured sensitivity under a budget.
//
//   auto planner = mixprec::mixed_precision_plan{mixprec::table_source{losses}, mixprec::knapsack_policy{},
//                                                mixprec::byte_budget{40'000'000}};
//   planner.candidates({parse_spec("int4/g32/sym/mse/s16"), parse_spec("int8"), parse_spec("fp16")})
//          .rule(plan_rule::at_least("*.attn.*", 8))
//          .rule(plan_rule::use("lm_head", parse_spec("fp16")))
//          .tie({"blk.0.q", "blk.0.k", "blk.0.v"});
//   mixprec::plan p = planner.build(layers);   // layers: name + shape
//   auto model = mixprec::apply(p, weights);   // quantized tensors, exact bytes (qualified: see apply)
//
// Three policies, each a C++20 concept, compose the planner:
// - SensitivitySource: loss(layer, spec) -> predicted loss of quantizing that layer with that spec
//   (table_source for measured values, weight_error_source for the weight error computed on the fly);
// - AllocationPolicy (allocation.hpp): knapsack (exact, default), greedy, lagrangian, threshold;
// - Constraint: cost(layer, spec) and budget(layers): byte_budget (exact bytes: codes, scales, zero
//   points), bits_budget (average bits per weight, all overhead counted), latency_budget (a user model).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/rules.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/layer.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace mixprec {

// What the planner needs to know of a layer.
struct plan_layer_info {
  std::string name;
  index_t rows = 0;
  index_t cols = 0;
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
};

template <class S>
concept SensitivitySource = requires(const S& s, const plan_layer_info& l, const quant_spec& q) {
  { s.loss(l, q) } -> std::convertible_to<double>;
};

template <class C>
concept Constraint = requires(const C& c, const plan_layer_info& l, const quant_spec& q,
                              const std::vector<plan_layer_info>& all) {
  { c.cost(l, q) } -> std::convertible_to<double>;
  { c.budget(all) } -> std::convertible_to<double>;
  { c.unit() } -> std::convertible_to<std::string_view>;
};

// ---- Sensitivity sources ----------------------------------------------------------------------

// Measured losses: layer name -> spec text (to_string form) -> loss. A missing pair is an error.
struct table_source {
  std::map<std::string, std::map<std::string, double>> losses;
  [[nodiscard]] double loss(const plan_layer_info& l, const quant_spec& q) const {
    const auto layer = losses.find(l.name);
    if (layer == losses.end()) throw error(errc::invalid_argument, "table_source: no losses for layer '" + l.name + "'");
    const auto it = layer->second.find(to_string(q));
    if (it == layer->second.end())
      throw error(errc::invalid_argument, "table_source: no loss for layer '" + l.name + "' at " + to_string(q));
    return it->second;
  }
};

// The weight's squared quantization error ||Q(W) - W||^2, or the output-aware ||(Q(W) - W) X||^2 when
// the layer carries activation statistics; computed on the fly from the layers' weights.
struct weight_error_source {
  const std::vector<layer_ref>* layers = nullptr;
  [[nodiscard]] double loss(const plan_layer_info& l, const quant_spec& q) const {
    for (const layer_ref& r : *layers)
      if (r.name == l.name) {
        const row_matrix back = dequantize(quantize(r.weight(), q, r.name));
        const double proxy = output_error_proxy(r, back);
        return proxy == proxy ? proxy : (back - r.weight()).cast<double>().squaredNorm();
      }
    throw error(errc::invalid_argument, "weight_error_source: unknown layer '" + l.name + "'");
  }
};

// ---- Constraints ------------------------------------------------------------------------------

// Total bytes of the quantized layers (codes + scales + zero points, exactly as quantize() stores).
struct byte_budget {
  double bytes = 0.0;
  [[nodiscard]] double cost(const plan_layer_info& l, const quant_spec& q) const {
    return static_cast<double>(quantized_bytes(q, l.rows, l.cols));
  }
  [[nodiscard]] double budget(const std::vector<plan_layer_info>&) const { return bytes; }
  [[nodiscard]] std::string_view unit() const { return "bytes"; }
};

// Average bits per weight over all planned layers, every scale and zero point counted.
struct bits_budget {
  double bits_per_weight = 0.0;
  [[nodiscard]] double cost(const plan_layer_info& l, const quant_spec& q) const {
    return 8.0 * static_cast<double>(quantized_bytes(q, l.rows, l.cols));
  }
  [[nodiscard]] double budget(const std::vector<plan_layer_info>& all) const {
    double weights = 0.0;
    for (const auto& l : all) weights += static_cast<double>(l.size());
    return bits_per_weight * weights;
  }
  [[nodiscard]] std::string_view unit() const { return "bits"; }
};

// A user's latency model (e.g. measured per format and shape, as HAQ does with hardware feedback).
struct latency_budget {
  std::function<double(const quant_spec&, index_t rows, index_t cols)> latency;
  double seconds = 0.0;
  [[nodiscard]] double cost(const plan_layer_info& l, const quant_spec& q) const { return latency(q, l.rows, l.cols); }
  [[nodiscard]] double budget(const std::vector<plan_layer_info>&) const { return seconds; }
  [[nodiscard]] std::string_view unit() const { return "s"; }
};

// ---- The plan ---------------------------------------------------------------------------------

struct plan_entry {
  std::string layer;
  quant_spec spec;
  index_t rows = 0;
  index_t cols = 0;
  std::size_t bytes = 0;  // exact storage of the quantized layer
  double loss = 0.0;      // predicted by the sensitivity source
  std::string group;      // the tied group, if any

  friend bool operator==(const plan_entry&, const plan_entry&) = default;
};

struct plan {
  std::string policy;
  double budget = 0.0;
  std::string budget_unit;
  bool proven_optimal = false;
  double loss_lower_bound = 0.0;  // no plan within the budget predicts less loss (when the policy knows)
  std::vector<plan_entry> entries;

  friend bool operator==(const plan&, const plan&) = default;

  [[nodiscard]] std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& e : entries) b += e.bytes;
    return b;
  }
  [[nodiscard]] double weights() const {
    double n = 0.0;
    for (const auto& e : entries) n += static_cast<double>(e.rows) * static_cast<double>(e.cols);
    return n;
  }
  // Average bits per weight, every scale and zero point counted.
  [[nodiscard]] double bits_per_weight() const { return 8.0 * static_cast<double>(bytes()) / weights(); }
  [[nodiscard]] double predicted_loss() const {
    double l = 0.0;
    for (const auto& e : entries) l += e.loss;
    return l;
  }
  // The spec chosen for a layer; throws for an unknown name.
  [[nodiscard]] const quant_spec& spec_of(std::string_view layer) const {
    for (const auto& e : entries)
      if (e.layer == layer) return e.spec;
    throw error(errc::invalid_argument, "plan: unknown layer '" + std::string(layer) + "'");
  }
  // Per-layer table (Markdown).
  [[nodiscard]] std::string table() const {
    std::string out = "| layer | shape | quantizer | bytes | bits/weight | predicted loss |\n|---|---|---|---:|---:|---:|\n";
    char buf[512];
    for (const auto& e : entries) {
      std::snprintf(buf, sizeof buf, "| %s | %ldx%ld | %s | %zu | %.3f | %.6g |\n", e.layer.c_str(),
                    static_cast<long>(e.rows), static_cast<long>(e.cols), to_string(e.spec).c_str(), e.bytes,
                    8.0 * static_cast<double>(e.bytes) / (static_cast<double>(e.rows) * static_cast<double>(e.cols)),
                    e.loss);
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "| **total** | | %s%s | %zu | %.3f | %.6g |\n", policy.c_str(),
                  proven_optimal ? " (optimal)" : "", bytes(), bits_per_weight(), predicted_loss());
    out += buf;
    return out;
  }
};

// The seed's strategy comparison: name | size | avg bits | speed proxy (FP32 bytes / bytes, for
// memory-bound decoding) | predicted loss | measured accuracy (when given).
struct strategy_row {
  std::string name;
  const plan* p = nullptr;
  double accuracy = std::numeric_limits<double>::quiet_NaN();
};
[[nodiscard]] inline std::string strategy_table(const std::vector<strategy_row>& rows) {
  std::string out = "| strategy | size (bytes) | avg bits | speed proxy | predicted loss | accuracy |\n"
                    "|---|---:|---:|---:|---:|---:|\n";
  char buf[512];
  for (const auto& r : rows) {
    const double fp32 = 4.0 * r.p->weights();
    std::snprintf(buf, sizeof buf, "| %s | %zu | %.3f | %.2fx | %.6g | %s |\n", r.name.c_str(), r.p->bytes(),
                  r.p->bits_per_weight(), fp32 / static_cast<double>(r.p->bytes()), r.p->predicted_loss(),
                  r.accuracy == r.accuracy ? (std::to_string(100.0 * r.accuracy).substr(0, 6) + " %").c_str() : "-");
    out += buf;
  }
  return out;
}

template <class P>
constexpr std::string_view policy_name() {
  if constexpr (std::is_same_v<P, knapsack_policy>) return "knapsack";
  else if constexpr (std::is_same_v<P, greedy_policy>) return "greedy";
  else if constexpr (std::is_same_v<P, lagrangian_policy>) return "lagrangian";
  else if constexpr (std::is_same_v<P, threshold_policy>) return "threshold";
  else return "custom";
}

// The planner: a sensitivity source, an allocation policy and a constraint, plus candidates, rules
// and tied groups. build() validates everything first and fails at once, with the reachable range,
// when the budget cannot be met.
template <SensitivitySource Source, AllocationPolicy Policy = knapsack_policy, Constraint Cons = byte_budget>
class mixed_precision_plan {
 public:
  mixed_precision_plan(Source source, Policy policy, Cons constraint)
      : source_(std::move(source)), policy_(std::move(policy)), constraint_(std::move(constraint)) {}

  mixed_precision_plan& candidates(std::vector<quant_spec> specs) {
    candidates_ = std::move(specs);
    return *this;
  }
  mixed_precision_plan& rule(plan_rule r) {
    rules_.push_back(std::move(r));
    return *this;
  }
  // Layers that must share one quantizer (q/k/v projections, gate/up): one choice in the allocation.
  mixed_precision_plan& tie(std::vector<std::string> layers) {
    groups_.push_back(std::move(layers));
    return *this;
  }

  [[nodiscard]] plan build(const std::vector<plan_layer_info>& layers) const {
    if (layers.empty()) throw error(errc::empty_input, "plan: no layers");
    if (candidates_.empty()) throw error(errc::invalid_argument, "plan: no candidate quantizers");
    std::map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].rows <= 0 || layers[i].cols <= 0)
        throw error(errc::empty_input, "plan: layer '" + layers[i].name + "' has no weights");
      if (!index.emplace(layers[i].name, i).second)
        throw error(errc::invalid_argument, "plan: layer '" + layers[i].name + "' appears twice");
    }
    // Allowed specs per layer, after the rules.
    std::vector<std::vector<quant_spec>> allowed(layers.size(), candidates_);
    for (const plan_rule& r : rules_) {
      bool matched = false;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        if (!glob_match(r.pattern, layers[i].name)) continue;
        matched = true;
        auto& a = allowed[i];
        if (r.keep_fp32) {
          a = {parse_spec("fp32")};
        } else if (r.force) {
          a = {*r.force};
        } else {
          std::erase_if(a, [&](const quant_spec& q) { return bits_of(q.format) < r.min_bits || bits_of(q.format) > r.max_bits; });
        }
        if (a.empty())
          throw error(errc::infeasible, "plan: rule '" + r.pattern + "' leaves layer '" + layers[i].name +
                                            "' no candidate quantizer");
      }
      if (!matched) throw error(errc::invalid_argument, "plan: rule '" + r.pattern + "' matches no layer");
    }
    // Items: tied groups first, then the remaining layers.
    std::vector<std::vector<std::size_t>> items;
    std::vector<std::string> group_name;
    std::vector<bool> grouped(layers.size(), false);
    for (const auto& g : groups_) {
      std::vector<std::size_t> members;
      for (const auto& name : g) {
        const auto it = index.find(name);
        if (it == index.end()) throw error(errc::invalid_argument, "plan: tied layer '" + name + "' is not in the model");
        if (grouped[it->second]) throw error(errc::invalid_argument, "plan: layer '" + name + "' is tied twice");
        grouped[it->second] = true;
        members.push_back(it->second);
      }
      if (members.empty()) continue;
      items.push_back(members);
      std::string label;
      for (const auto& name : g) label += (label.empty() ? "" : "+") + name;
      group_name.push_back(label);
    }
    for (std::size_t i = 0; i < layers.size(); ++i)
      if (!grouped[i]) {
        items.push_back({i});
        group_name.emplace_back();
      }
    // Options per item: the specs every member allows.
    allocation_problem problem;
    problem.budget = constraint_.budget(layers);
    std::vector<std::vector<quant_spec>> item_specs;
    for (std::size_t it = 0; it < items.size(); ++it) {
      std::vector<quant_spec> specs = allowed[items[it][0]];
      for (std::size_t m : items[it])
        std::erase_if(specs, [&](const quant_spec& q) { return std::ranges::find(allowed[m], q) == allowed[m].end(); });
      if (specs.empty())
        throw error(errc::infeasible, "plan: the tied layers " + group_name[it] + " allow no common quantizer");
      std::vector<allocation_option> options;
      for (const quant_spec& q : specs) {
        allocation_option o;
        o.bits = bits_of(q.format);
        for (std::size_t m : items[it]) {
          o.cost += constraint_.cost(layers[m], q);
          o.loss += source_.loss(layers[m], q);
        }
        options.push_back(o);
      }
      problem.items.push_back(std::move(options));
      item_specs.push_back(std::move(specs));
    }
    const std::string unit(constraint_.unit());
    if constexpr (!std::is_same_v<Policy, threshold_policy>) check_feasible(problem, unit.c_str());
    const allocation_result r = policy_.allocate(problem);

    plan out;
    out.policy = std::string(policy_name<Policy>());
    out.budget = problem.budget;
    out.budget_unit = unit;
    out.proven_optimal = r.proven_optimal;
    out.loss_lower_bound = std::isfinite(r.lower_bound) ? r.lower_bound : 0.0;
    out.entries.resize(layers.size());
    for (std::size_t it = 0; it < items.size(); ++it)
      for (std::size_t m : items[it]) {
        const quant_spec& q = item_specs[it][r.choice[it]];
        out.entries[m] = {layers[m].name, q, layers[m].rows, layers[m].cols, quantized_bytes(q, layers[m].rows, layers[m].cols),
                          source_.loss(layers[m], q), group_name[it]};
      }
    return out;
  }

 private:
  Source source_;
  Policy policy_;
  Cons constraint_;
  std::vector<quant_spec> candidates_;
  std::vector<plan_rule> rules_;
  std::vector<std::vector<std::string>> groups_;
};

// The layer infos of a model view.
[[nodiscard]] inline std::vector<plan_layer_info> layer_infos(const std::vector<layer_ref>& layers) {
  std::vector<plan_layer_info> out;
  for (const auto& l : layers) out.push_back({l.name, l.rows, l.cols});
  return out;
}

// ---- apply ------------------------------------------------------------------------------------

struct quantized_layer {
  std::string name;
  quantized_tensor tensor;
};
struct quantized_model {
  std::vector<quantized_layer> layers;
  // Exact storage of every layer (codes, scales, zero points).
  [[nodiscard]] std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& l : layers) b += l.tensor.bytes();
    return b;
  }
};

// Quantizes every layer of the model by the plan (call it qualified, mixprec::apply: unqualified,
// argument-dependent lookup also finds std::apply for a std::vector argument). Every model layer must be in the plan and the other
// way round, with the same shapes; otherwise mixprec::error before any work.
[[nodiscard]] inline quantized_model apply(const plan& p, const std::vector<layer_ref>& model) {
  validate(model);
  std::map<std::string, const layer_ref*> by_name;
  for (const auto& l : model) by_name[l.name] = &l;
  std::set<std::string> planned;
  for (const auto& e : p.entries) {
    const auto it = by_name.find(e.layer);
    if (it == by_name.end()) throw error(errc::invalid_argument, "apply: plan layer '" + e.layer + "' is not in the model");
    if (!planned.insert(e.layer).second) throw error(errc::invalid_argument, "apply: plan layer '" + e.layer + "' appears twice");
    const layer_ref& l = *it->second;
    if (e.rows != l.rows || e.cols != l.cols)
      throw error(errc::shape_mismatch, "apply: layer '" + l.name + "' is " + std::to_string(l.rows) + "x" +
                                            std::to_string(l.cols) + ", the plan says " + std::to_string(e.rows) + "x" +
                                            std::to_string(e.cols));
  }
  for (const auto& l : model)
    if (!planned.contains(l.name)) throw error(errc::invalid_argument, "apply: layer '" + l.name + "' is not in the plan");
  quantized_model out;
  for (const auto& e : p.entries) out.layers.push_back({e.layer, quantize(by_name[e.layer]->weight(), e.spec, e.layer)});
  return out;
}

}  // namespace mixprec
