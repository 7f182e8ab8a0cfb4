// The plan: a quantizer per layer, with its predicted size, average bits and loss, and readable tables.
#pragma once

#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// What a plan optimised: least predicted loss within a cost budget, or least cost within a loss limit.
enum class plan_goal { least_loss, least_cost };

struct plan_entry {
  std::string layer;
  quant_spec spec;
  index_t rows = 0;
  index_t cols = 0;
  std::size_t bytes = 0;  // exact storage of the quantized layer (quantized_bytes)
  double cost = 0.0;      // in the plan's cost unit
  double loss = 0.0;      // predicted by the sensitivity source (0 for never-quantized layers)
  std::string group;      // the tied group ("a+b+c"), empty when the layer is not tied

  friend bool operator==(const plan_entry&, const plan_entry&) = default;
};

struct plan {
  std::string policy;              // e.g. "knapsack", "greedy", "custom"
  std::string solver;              // how the policy solved it, e.g. "branch-and-bound"
  plan_goal goal = plan_goal::least_loss;
  std::string unit;                // the constraint's cost unit: "bytes", "bits", "s"
  double limit = std::numeric_limits<double>::infinity();  // the budget (least_loss) or loss limit (least_cost)
  bool proven_optimal = false;     // no plan within the limit does better (up to rounding)
  double lower_bound = -std::numeric_limits<double>::infinity();  // on the optimal loss (least_loss) or cost
  std::vector<plan_entry> entries;  // in the order of the planned layers

  friend bool operator==(const plan&, const plan&) = default;

  // Exact bytes of the quantized model: codes, scales and zero points of every layer.
  [[nodiscard]] std::size_t bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& e : entries) b += e.bytes;
    return b;
  }
  [[nodiscard]] double weights() const noexcept {
    double n = 0.0;
    for (const auto& e : entries) n += static_cast<double>(e.rows) * static_cast<double>(e.cols);
    return n;
  }
  // Average bits per weight, every scale and zero point counted.
  [[nodiscard]] double bits_per_weight() const noexcept { return 8.0 * static_cast<double>(bytes()) / weights(); }
  [[nodiscard]] double predicted_loss() const noexcept {
    double l = 0.0;
    for (const auto& e : entries) l += e.loss;
    return l;
  }
  // Total cost in `unit`.
  [[nodiscard]] double cost() const noexcept {
    double c = 0.0;
    for (const auto& e : entries) c += e.cost;
    return c;
  }
  // Whether the plan meets its limit (threshold plans and custom policies may not).
  [[nodiscard]] bool within_limit() const noexcept {
    return goal == plan_goal::least_loss ? cost() <= limit : predicted_loss() <= limit;
  }
  // The entry of a layer; throws for an unknown name.
  [[nodiscard]] const plan_entry& at(std::string_view layer) const {
    for (const auto& e : entries)
      if (e.layer == layer) return e;
    throw error(errc::invalid_argument, "plan: no layer '" + std::string(layer) + "'");
  }
  [[nodiscard]] const quant_spec& spec_of(std::string_view layer) const { return at(layer).spec; }

  // Per-layer table (Markdown) with a total row.
  [[nodiscard]] std::string table() const {
    const bool show_cost = unit != "bytes" && unit != "bits";
    std::string out = "| layer | shape | quantizer | bytes | bits/weight |";
    out += show_cost ? " cost (" + unit + ") |" : "";
    out += " predicted loss | tied group |\n|---|---|---|---:|---:|";
    out += show_cost ? "---:|" : "";
    out += "---:|---|\n";
    char buf[160];
    for (const auto& e : entries) {
      std::snprintf(buf, sizeof buf, "%ldx%ld", static_cast<long>(e.rows), static_cast<long>(e.cols));
      out += "| " + e.layer + " | " + buf + " | " + to_string(e.spec) + " | " + std::to_string(e.bytes) + " | ";
      std::snprintf(buf, sizeof buf, "%.4f | ", 8.0 * static_cast<double>(e.bytes) / (static_cast<double>(e.rows) * static_cast<double>(e.cols)));
      out += buf;
      if (show_cost) {
        std::snprintf(buf, sizeof buf, "%.6g | ", e.cost);
        out += buf;
      }
      std::snprintf(buf, sizeof buf, "%.6g | ", e.loss);
      out += buf + e.group + " |\n";
    }
    out += "| **total** | | " + policy + (proven_optimal ? " (optimal)" : "") + " | " + std::to_string(bytes()) + " | ";
    std::snprintf(buf, sizeof buf, "%.4f | ", bits_per_weight());
    out += buf;
    if (show_cost) {
      std::snprintf(buf, sizeof buf, "%.6g | ", cost());
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "%.6g | |\n", predicted_loss());
    out += buf;
    if (!within_limit()) {  // threshold plans ignore budgets, custom policies may miss them
      std::snprintf(buf, sizeof buf, "\n**Over the limit**: %.6g %s against a limit of %.6g.\n",
                    goal == plan_goal::least_loss ? cost() : predicted_loss(),
                    goal == plan_goal::least_loss ? unit.c_str() : "(predicted loss)", limit);
      out += buf;
    }
    return out;
  }
};

// One row of a strategy comparison: a named plan and, when measured, its accuracy (a fraction).
struct strategy_row {
  std::string name;
  const plan* p = nullptr;
  double accuracy = std::numeric_limits<double>::quiet_NaN();
};

// The strategy comparison (Markdown): size (exact bytes), average bits per weight (all overhead
// counted), speed proxy (FP32 bytes / bytes: the speed-up of memory-bound decoding over FP32 weights),
// predicted loss, whether it is proven optimal, and the measured accuracy column when any row has one.
// A plan over its limit (a threshold plan ignores budgets) is marked so after its name.
[[nodiscard]] inline std::string strategy_table(const std::vector<strategy_row>& rows) {
  bool accuracy = false;
  for (const auto& r : rows) {
    if (r.p == nullptr) throw error(errc::invalid_argument, "strategy_table: row '" + r.name + "' has no plan");
    accuracy = accuracy || r.accuracy == r.accuracy;
  }
  std::string out = "| strategy | size (bytes) | avg bits/weight | speed proxy (x FP32) | predicted loss | optimal |";
  out += accuracy ? " accuracy |\n" : "\n";
  out += "|---|---:|---:|---:|---:|---|";
  out += accuracy ? "---:|\n" : "\n";
  char buf[200];
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, " | %zu | %.4f | %.2fx | %.6g | %s |", r.p->bytes(), r.p->bits_per_weight(),
                  4.0 * r.p->weights() / static_cast<double>(r.p->bytes()), r.p->predicted_loss(),
                  r.p->proven_optimal ? "yes" : "no");
    out += "| " + r.name + (r.p->within_limit() ? "" : " (over the limit)") + buf;
    if (accuracy) {
      if (r.accuracy == r.accuracy) {
        std::snprintf(buf, sizeof buf, " %.2f %% |", 100.0 * r.accuracy);
        out += buf;
      } else {
        out += " - |";
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace mixprec
