// Constraints (cost models): what a layer costs at a candidate quantizer, and the budget for the total.
//
// A Constraint has cost(layer, spec), budget(all layers) and unit(); optionally describe(total, all
// layers), how a total reads in messages and tables. Budgets default to +infinity (no limit).
// - byte_budget: exact bytes as quantize() stores them: codes + scales + zero points (quantized_bytes).
// - bits_budget: average bits per weight over all planned layers, every scale and zero point counted
//   (cost: 8 x bytes, so it stays integral and the exact knapsack table still applies).
// - latency_budget: a user's latency model per format and shape (measured on the target, as HAQ uses
//   hardware feedback rather than FLOPs), e.g. a latency_table.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/layer_shape.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

template <class C>
concept Constraint = requires(const C& c, const layer_shape& l, const quant_spec& q, const std::vector<layer_shape>& all) {
  { c.cost(l, q) } -> std::convertible_to<double>;
  { c.budget(all) } -> std::convertible_to<double>;
  { c.unit() } -> std::convertible_to<std::string_view>;
};

namespace detail {
inline double total_weights(const std::vector<layer_shape>& all) {
  double n = 0.0;
  for (const auto& l : all) n += static_cast<double>(l.rows) * static_cast<double>(l.cols);
  return n;
}
}  // namespace detail

// Total bytes of the quantized layers (codes + scales + zero points).
struct byte_budget {
  double bytes = std::numeric_limits<double>::infinity();
  [[nodiscard]] double cost(const layer_shape& l, const quant_spec& q) const {
    return static_cast<double>(quantized_bytes(q, l.rows, l.cols));
  }
  [[nodiscard]] double budget(const std::vector<layer_shape>&) const { return bytes; }
  [[nodiscard]] std::string_view unit() const { return "bytes"; }
};

// Average bits per weight over all planned layers, every scale and zero point counted.
struct bits_budget {
  double bits_per_weight = std::numeric_limits<double>::infinity();
  [[nodiscard]] double cost(const layer_shape& l, const quant_spec& q) const {
    return 8.0 * static_cast<double>(quantized_bytes(q, l.rows, l.cols));
  }
  [[nodiscard]] double budget(const std::vector<layer_shape>& all) const { return bits_per_weight * detail::total_weights(all); }
  [[nodiscard]] std::string_view unit() const { return "bits"; }
  // E.g. "4.5 bits/weight (1234 bytes)".
  [[nodiscard]] std::string describe(double total_bits, const std::vector<layer_shape>& all) const {
    return detail::format_number(total_bits / detail::total_weights(all)) + " bits/weight (" +
           detail::format_number(total_bits / 8.0) + " bytes)";
  }
};

// A per-format, per-shape cost table (e.g. measured kernel latency in seconds). A lookup tries the
// exact spec first, then the spec's format; a missing entry is an error naming spec and shape.
class latency_table {
 public:
  // Cost of layers of this shape quantized with exactly `spec`.
  latency_table& add(const quant_spec& spec, index_t rows, index_t cols, double cost) {
    check(cost, to_string(spec), rows, cols);
    by_spec_[{to_string(spec), rows, cols}] = cost;
    return *this;
  }
  // Cost of layers of this shape in format f, whatever the granularity, scheme or scale type.
  latency_table& add(format_id f, index_t rows, index_t cols, double cost) {
    check(cost, std::string(to_string(f)), rows, cols);
    by_format_[{f, rows, cols}] = cost;
    return *this;
  }
  [[nodiscard]] double operator()(const quant_spec& q, index_t rows, index_t cols) const {
    if (const auto it = by_spec_.find({to_string(q), rows, cols}); it != by_spec_.end()) return it->second;
    if (const auto it = by_format_.find({q.format, rows, cols}); it != by_format_.end()) return it->second;
    throw error(errc::invalid_argument, "latency table: no entry for " + to_string(q) + " at " + std::to_string(rows) +
                                            "x" + std::to_string(cols));
  }

 private:
  static void check(double cost, const std::string& what, index_t rows, index_t cols) {
    if (!std::isfinite(cost) || cost < 0.0)
      throw error(errc::invalid_argument, "latency table: " + what + " at " + std::to_string(rows) + "x" +
                                              std::to_string(cols) + ": cost must be finite and >= 0");
  }
  std::map<std::tuple<std::string, index_t, index_t>, double> by_spec_;
  std::map<std::tuple<format_id, index_t, index_t>, double> by_format_;
};

// A latency model (any callable (spec, rows, cols) -> seconds, e.g. a latency_table) and a limit on
// the sum over layers (layers run one after another).
struct latency_budget {
  std::function<double(const quant_spec&, index_t, index_t)> latency;
  double seconds = std::numeric_limits<double>::infinity();
  [[nodiscard]] double cost(const layer_shape& l, const quant_spec& q) const {
    if (!latency) throw error(errc::invalid_argument, "latency_budget: no latency model");
    const double t = latency(q, l.rows, l.cols);
    if (!std::isfinite(t) || t < 0.0)
      throw error(errc::invalid_argument, "latency_budget: the model gives " + detail::format_number(t) + " for layer '" +
                                              l.name + "' at " + to_string(q) + ", expected a finite cost >= 0");
    return t;
  }
  [[nodiscard]] double budget(const std::vector<layer_shape>&) const { return seconds; }
  [[nodiscard]] std::string_view unit() const { return "s"; }
};

static_assert(Constraint<byte_budget> && Constraint<bits_budget> && Constraint<latency_budget>);

// A size budget as users type it, in bytes for a model of `weights` weights:
//   "4.5bpw" (or a bare number up to 32: "4.5")  bits per weight -> 4.5 * weights / 8
//   "250000B" (or a bare number above 32)         bytes
//   "512KB", "3.9MB", "3.9GB"                     decimal kilo-, mega-, gigabytes
// Throws errc::parse_error for other text and errc::invalid_argument for a budget that is not
// positive and finite.
[[nodiscard]] inline double parse_byte_budget(std::string_view text, double weights) {
  const std::string t(text);
  std::size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(t, &used);
  } catch (const std::exception&) {
    throw error(errc::parse_error, "budget '" + t + "' is not a number");
  }
  const std::string unit = t.substr(used);
  if (!(v > 0.0) || !std::isfinite(v)) throw error(errc::invalid_argument, "budget '" + t + "' must be positive and finite");
  if (unit == "bpw" || (unit.empty() && v <= 32.0)) {
    if (!(weights > 0.0)) throw error(errc::invalid_argument, "budget '" + t + "' in bits per weight needs a positive weight count");
    return v * weights / 8.0;
  }
  if (unit == "B" || unit.empty()) return v;
  if (unit == "KB") return v * 1e3;
  if (unit == "MB") return v * 1e6;
  if (unit == "GB") return v * 1e9;
  throw error(errc::parse_error, "budget '" + t + "': the unit must be bpw, B, KB, MB or GB");
}

}  // namespace mixprec
