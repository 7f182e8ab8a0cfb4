// JSON for sensitivity reports and weight scores (optional header: needs nlohmann-json, Debian
// nlohmann-json3-dev; the rest of sensitivity/ needs only Eigen and xsimd).
//
// Non-finite numbers (a drop of +inf when the quantized model broke, SQNR +inf for a lossless format)
// are written as the strings "inf", "-inf" and "nan", which JSON numbers cannot hold.
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "mixprec/detail/json_number.hpp"
#include "mixprec/sensitivity/report.hpp"

namespace mixprec {

namespace detail {

inline nlohmann::json number_to_json(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

inline double number_from_json(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = j.at(key);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  throw error(errc::parse_error, std::string("sensitivity JSON: '") + key + "' must be a number, \"inf\", \"-inf\" or \"nan\", got " + v.dump());
}

}  // namespace detail

inline void to_json(nlohmann::json& j, const sensitivity_row& r) {
  j = {{"layer", r.layer},
       {"spec", r.spec},
       {"metric", detail::number_to_json(r.metric)},
       {"drop", detail::number_to_json(r.drop)},
       {"class", std::string(to_string(r.cls))},
       {"suggestion", r.suggestion}};
}
inline void from_json(const nlohmann::json& j, sensitivity_row& r) {
  r.layer = j.at("layer").get<std::string>();
  r.spec = to_string(parse_spec(j.at("spec").get<std::string>()));
  r.metric = detail::number_from_json(j, "metric");
  r.drop = detail::number_from_json(j, "drop");
  r.cls = parse_sensitivity_class(j.at("class").get<std::string>());
  r.suggestion = to_string(parse_spec(j.at("suggestion").get<std::string>()));
}

inline void to_json(nlohmann::json& j, const class_thresholds& t) {
  j = {{"high", t.high}, {"medium", t.medium}, {"insensitive", t.insensitive}};
}
inline void from_json(const nlohmann::json& j, class_thresholds& t) {
  t.high = j.at("high").get<double>();
  t.medium = j.at("medium").get<double>();
  t.insensitive = j.at("insensitive").get<double>();
  validate(t);
}

inline void to_json(nlohmann::json& j, const sensitivity_report& r) {
  j = {{"metric", r.metric_name},
       {"baseline", detail::number_to_json(r.baseline)},
       {"drops", std::string(to_string(r.kind))},
       {"thresholds", r.thresholds},
       {"layers", r.rows}};
}
// Reads a report; throws mixprec::error for a bad spec, class, drop kind or thresholds, and
// nlohmann::json::exception for a missing key or a wrong JSON type.
inline void from_json(const nlohmann::json& j, sensitivity_report& r) {
  r.metric_name = j.at("metric").get<std::string>();
  r.baseline = detail::number_from_json(j, "baseline");
  const std::string kind = j.at("drops").get<std::string>();
  if (kind != "absolute" && kind != "relative")
    throw error(errc::parse_error, "sensitivity JSON: 'drops' must be \"absolute\" or \"relative\", got \"" + kind + "\"");
  r.kind = kind == "absolute" ? drop_kind::absolute : drop_kind::relative;
  r.thresholds = j.at("thresholds").get<class_thresholds>();
  r.rows = j.at("layers").get<std::vector<sensitivity_row>>();
}

inline void to_json(nlohmann::json& j, const weight_score& s) {
  j = {{"layer", s.layer},
       {"spec", to_string(s.spec)},
       {"bytes", s.bytes},
       {"bits_per_weight", s.bits_per_weight},
       {"sqnr_db", detail::number_to_json(s.sqnr_db)},
       {"mse", detail::number_to_json(s.mse)},
       {"max_abs_error", detail::number_to_json(s.max_abs_error)},
       {"cosine", detail::number_to_json(s.cosine)},
       {"weight_error", detail::number_to_json(s.weight_error)},
       {"output_error", detail::number_to_json(s.output_error)}};
}
inline void from_json(const nlohmann::json& j, weight_score& s) {
  s.layer = j.at("layer").get<std::string>();
  s.spec = parse_spec(j.at("spec").get<std::string>());
  s.bytes = detail::json_integer<std::size_t>(j.at("bytes"), "weight score JSON: layer '" + s.layer + "': bytes");
  s.bits_per_weight = j.at("bits_per_weight").get<double>();
  s.sqnr_db = detail::number_from_json(j, "sqnr_db");
  s.mse = detail::number_from_json(j, "mse");
  s.max_abs_error = detail::number_from_json(j, "max_abs_error");
  s.cosine = detail::number_from_json(j, "cosine");
  s.weight_error = detail::number_from_json(j, "weight_error");
  s.output_error = detail::number_from_json(j, "output_error");
}

}  // namespace mixprec
