// JSON for sensitivity reports (optional header: needs nlohmann-json, Debian nlohmann-json3-dev).
#pragma once

#include <nlohmann/json.hpp>

#include "mixprec/sensitivity/report.hpp"

namespace mixprec {

inline void to_json(nlohmann::json& j, const sensitivity_row& r) {
  j = {{"layer", r.layer}, {"spec", r.spec},   {"metric", r.metric},
       {"drop", r.drop},   {"class", std::string(to_string(r.cls))}, {"suggestion", r.suggestion}};
}
inline void from_json(const nlohmann::json& j, sensitivity_row& r) {
  r.layer = j.at("layer").get<std::string>();
  r.spec = j.at("spec").get<std::string>();
  (void)parse_spec(r.spec);  // validate
  r.metric = j.at("metric").get<double>();
  r.drop = j.at("drop").get<double>();
  r.cls = parse_sensitivity_class(j.at("class").get<std::string>());
  r.suggestion = j.at("suggestion").get<std::string>();
}
inline void to_json(nlohmann::json& j, const sensitivity_report& r) {
  j = {{"metric", r.metric_name}, {"baseline", r.baseline}, {"layers", r.rows}};
}
inline void from_json(const nlohmann::json& j, sensitivity_report& r) {
  r.metric_name = j.at("metric").get<std::string>();
  r.baseline = j.at("baseline").get<double>();
  r.rows = j.at("layers").get<std::vector<sensitivity_row>>();
}

}  // namespace mixprec
