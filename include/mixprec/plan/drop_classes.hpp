// The accuracy-drop classes: one table, shared by the sensitivity report (sensitivity/report.hpp)
// and the threshold policy (plan/threshold.hpp), so the same drop gets the same class everywhere.
//
// Drops are FRACTIONS of the metric: 0.02 means 2 % (two points of accuracy, or 2 % of a perplexity when
// a report uses relative drops). Defaults, all configurable (class_thresholds):
//   class        drop d
//   high         d > 2 %
//   medium       0.5 % <= d <= 2 %
//   low          eps < d < 0.5 %
//   insensitive  d <= eps (eps = 0.05 %)
// Negative drops count by magnitude, +inf is high, NaN an error. A drop that differs from a boundary by
// at most 1e-9 of it counts as on the boundary, so that 0.905 - 0.9 (= 0.0050000000000000044 in double)
// is 0.5 %, as written. Depends only on error.hpp (plan/ and sensitivity/ both include it).
#pragma once

#include <string>
#include <string_view>

#include "mixprec/error.hpp"

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
  throw error(errc::parse_error, "unknown sensitivity class '" + std::string(s) +
                                     "', expected high, medium, low or insensitive");
}

// Class boundaries, as fractions (see the table above); must satisfy high > medium > insensitive >= 0.
struct class_thresholds {
  double high = 0.02;          // above: high
  double medium = 0.005;       // from here up to high: medium
  double insensitive = 0.0005;  // up to here: insensitive ("about 0"); between: low

  friend bool operator==(const class_thresholds&, const class_thresholds&) = default;
};

// Throws mixprec::error unless high > medium > insensitive >= 0 (all finite).
inline void validate(const class_thresholds& t) {
  if (!(t.high > t.medium && t.medium > t.insensitive && t.insensitive >= 0.0 && t.high < 1e300))
    throw error(errc::invalid_argument, "class thresholds must satisfy high > medium > insensitive >= 0, got " +
                                            std::to_string(t.high) + ", " + std::to_string(t.medium) + ", " +
                                            std::to_string(t.insensitive));
}

// The class of a drop (a fraction; negative drops count by magnitude, +inf is high, NaN an error).
[[nodiscard]] inline sensitivity_class classify(double drop, const class_thresholds& t = {}) {
  validate(t);
  if (drop != drop) throw error(errc::non_finite, "classify: the drop is NaN");
  constexpr double slack = 1e-9;
  const double d = drop < 0 ? -drop : drop;
  if (d > t.high * (1.0 + slack)) return sensitivity_class::high;
  if (d >= t.medium * (1.0 - slack)) return sensitivity_class::medium;
  if (d <= t.insensitive * (1.0 + slack)) return sensitivity_class::insensitive;
  return sensitivity_class::low;
}

}  // namespace mixprec
