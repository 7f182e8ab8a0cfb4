// A sensitivity report: the accuracy-drop table (layer | metric with the layer quantized | drop | class |
// suggestion), one row per layer x probed quantizer, built from a probe and printable as Markdown.
// JSON: sensitivity/report_json.hpp (needs nlohmann-json).
#pragma once

#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/sensitivity/classify.hpp"
#include "mixprec/sensitivity/probe.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace mixprec {

// What a report's drops are: absolute differences of the metric (accuracy in [0, 1]: 0.02 is two
// points) or differences relative to the baseline, |M(full) - M(i)| / |M(full)| (perplexity, loss).
enum class drop_kind { absolute, relative };

[[nodiscard]] constexpr std::string_view to_string(drop_kind k) noexcept {
  return k == drop_kind::absolute ? "absolute" : "relative";
}

struct sensitivity_row {
  std::string layer;
  std::string spec;  // the quantizer the layer was probed with (text form)
  double metric = 0.0;  // the metric with only this layer quantized
  double drop = 0.0;    // the classified drop, a fraction of kind drop_kind (+inf if the model broke)
  sensitivity_class cls = sensitivity_class::insensitive;
  std::string suggestion;  // text form of the suggested quantizer

  friend bool operator==(const sensitivity_row&, const sensitivity_row&) = default;
};

struct sensitivity_report {
  std::string metric_name = "metric";
  double baseline = 0.0;  // the metric at full precision
  drop_kind kind = drop_kind::absolute;
  class_thresholds thresholds{};
  std::vector<sensitivity_row> rows;

  friend bool operator==(const sensitivity_report&, const sensitivity_report&) = default;

  // The table as Markdown, preceded by a line with the baseline; drops printed in percent.
  [[nodiscard]] std::string table() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%.6g", baseline);
    std::string out = metric_name + " at full precision: " + buf + " (" + std::string(to_string(kind)) + " drops)\n\n";
    out += "| layer | quantized as | " + metric_name + " | drop | class | suggestion |\n";
    out += "|---|---|---:|---:|---|---|\n";
    for (const auto& r : rows) {
      std::snprintf(buf, sizeof buf, " | %.6g | %.3f %% | ", r.metric, 100.0 * r.drop);
      out += "| " + r.layer + " | " + r.spec + buf + std::string(to_string(r.cls)) + " | " + r.suggestion + " |\n";
    }
    return out;
  }
};

inline std::ostream& operator<<(std::ostream& os, const sensitivity_report& r) { return os << r.table(); }

struct report_options {
  std::string metric_name = "metric";
  drop_kind kind = drop_kind::absolute;
  class_thresholds thresholds{};
  class_suggestions suggestions{};
};

// Classifies every probe result. Relative drops need a non-zero baseline.
[[nodiscard]] inline sensitivity_report make_report(const probe_report& probe, const report_options& o = {}) {
  validate(o.thresholds);
  if (o.kind == drop_kind::relative && probe.baseline == 0.0)
    throw error(errc::invalid_argument, "make_report: relative drops need a non-zero baseline");
  sensitivity_report rep;
  rep.metric_name = o.metric_name;
  rep.baseline = probe.baseline;
  rep.kind = o.kind;
  rep.thresholds = o.thresholds;
  for (const auto& r : probe.results) {
    const double drop = o.kind == drop_kind::absolute ? r.drop : r.drop / std::fabs(probe.baseline);
    const sensitivity_class c = classify(drop, o.thresholds);
    rep.rows.push_back({r.layer, to_string(r.spec), r.metric, drop, c, to_string(o.suggestions[c])});
  }
  return rep;
}

// Shorthand: absolute drops of a metric called metric_name, default classes.
[[nodiscard]] inline sensitivity_report make_report(const probe_report& probe, std::string metric_name) {
  report_options o;
  o.metric_name = std::move(metric_name);
  return make_report(probe, o);
}

// The weight-only scores as a Markdown table (layer | quantizer | bits/weight | SQNR | cosine | max
// error | output error).
[[nodiscard]] inline std::string weight_table(const std::vector<weight_score>& scores) {
  std::string out = "| layer | quantized as | bits/weight | SQNR (dB) | cosine | max abs error | output error |\n";
  out += "|---|---|---:|---:|---:|---:|---:|\n";
  char buf[200];
  for (const auto& s : scores) {
    std::snprintf(buf, sizeof buf, " | %.3f | %.2f | %.6f | %.4g | %.4g |\n", s.bits_per_weight, s.sqnr_db, s.cosine,
                  s.max_abs_error, s.output_error);
    out += "| " + s.layer + " | " + to_string(s.spec) + buf;
  }
  return out;
}

}  // namespace mixprec
