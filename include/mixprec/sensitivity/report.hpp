// A sensitivity report: the seed's table (layer | metric with the layer quantized | drop | class |
// suggestion) built from a probe, printable as Markdown.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "mixprec/sensitivity/classify.hpp"
#include "mixprec/sensitivity/probe.hpp"

namespace mixprec {

struct sensitivity_row {
  std::string layer;
  std::string spec;  // the quantizer the layer was probed with (text form)
  double metric = 0.0;
  double drop = 0.0;
  sensitivity_class cls = sensitivity_class::insensitive;
  std::string suggestion;  // text form of the suggested quantizer

  friend bool operator==(const sensitivity_row&, const sensitivity_row&) = default;
};

struct sensitivity_report {
  std::string metric_name = "metric";
  double baseline = 0.0;
  std::vector<sensitivity_row> rows;

  friend bool operator==(const sensitivity_report&, const sensitivity_report&) = default;

  // The table, Markdown, one row per layer x probed quantizer; drops in percent of the metric.
  [[nodiscard]] std::string table() const {
    std::string out = "| layer | quantized as | " + metric_name + " | drop | class | suggestion |\n";
    out += "|---|---|---:|---:|---|---|\n";
    char buf[512];
    for (const auto& r : rows) {
      std::snprintf(buf, sizeof buf, "| %s | %s | %.4f | %.2f %% | %s | %s |\n", r.layer.c_str(), r.spec.c_str(),
                    r.metric, 100.0 * r.drop, std::string(to_string(r.cls)).c_str(), r.suggestion.c_str());
      out += buf;
    }
    return out;
  }
};

// Classifies every probe result (see classify.hpp).
[[nodiscard]] inline sensitivity_report make_report(const probe_report& probe, std::string metric_name = "metric",
                                                    const class_thresholds& thresholds = {},
                                                    const class_suggestions& suggestions = {}) {
  sensitivity_report rep;
  rep.metric_name = std::move(metric_name);
  rep.baseline = probe.baseline;
  for (const auto& r : probe.results) {
    const sensitivity_class c = classify(r.drop, thresholds);
    rep.rows.push_back({r.layer, to_string(r.spec), r.metric, r.drop, c, to_string(suggestions[c])});
  }
  return rep;
}

}  // namespace mixprec
