// The seed's sensitivity classes and the precision each suggests.
//
//   class        drop (absolute, in the metric's units; 0.02 = 2 points of accuracy)   suggestion
//   high         > 2 %                                                                   FP16 (or INT8)
//   medium       0.5 - 2 %                                                               INT8
//   low          < 0.5 %                                                                 INT4 (g32)
//   insensitive  about 0 (<= 0.05 % by default)                                          INT4 or lower (g128)
#pragma once

#include <string_view>

#include "mixprec/error.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

enum class sensitivity_class { high, medium, low, insensitive };

[[nodiscard]] constexpr std::string_view to_string(sensitivity_class c) noexcept {
  switch (c) {
    case sensitivity_class::high: return "high";
    case sensitivity_class::medium: return "medium";
    case sensitivity_class::low: return "low";
    case sensitivity_class::insensitive: return "insensitive";
  }
  return "?";
}

// Parses "high" / "medium" / "low" / "insensitive".
[[nodiscard]] inline sensitivity_class parse_sensitivity_class(std::string_view s) {
  for (auto c : {sensitivity_class::high, sensitivity_class::medium, sensitivity_class::low,
                 sensitivity_class::insensitive})
    if (to_string(c) == s) return c;
  throw error(errc::parse_error, "unknown sensitivity class '" + std::string(s) + "'");
}

// Class boundaries as fractions of the metric (drop > high: high; > medium: medium; <= insensitive:
// insensitive; else low).
struct class_thresholds {
  double high = 0.02;
  double medium = 0.005;
  double insensitive = 0.0005;
};

// What each class suggests, as quantizer specs (editable).
struct class_suggestions {
  quant_spec high = parse_spec("fp16");
  quant_spec medium = parse_spec("int8/channel/sym/minmax/s32");
  quant_spec low = parse_spec("int4/g32/sym/mse/s16");
  quant_spec insensitive = parse_spec("int4/g128/sym/mse/s16");

  [[nodiscard]] const quant_spec& operator[](sensitivity_class c) const noexcept {
    switch (c) {
      case sensitivity_class::high: return high;
      case sensitivity_class::medium: return medium;
      case sensitivity_class::low: return low;
      case sensitivity_class::insensitive: break;
    }
    return insensitive;
  }
};

// The class of a drop (an absolute difference of the metric; negative drops count by magnitude).
[[nodiscard]] inline sensitivity_class classify(double drop, const class_thresholds& t = {}) {
  if (!(t.high > t.medium && t.medium > t.insensitive && t.insensitive >= 0.0))
    throw error(errc::invalid_argument, "class thresholds must satisfy high > medium > insensitive >= 0");
  if (drop != drop) throw error(errc::non_finite, "classify: drop is NaN");
  const double d = drop < 0 ? -drop : drop;
  if (d > t.high) return sensitivity_class::high;
  if (d > t.medium) return sensitivity_class::medium;
  if (d <= t.insensitive) return sensitivity_class::insensitive;
  return sensitivity_class::low;
}

}  // namespace mixprec
