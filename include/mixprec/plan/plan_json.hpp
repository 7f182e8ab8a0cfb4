// JSON for plans (optional header: needs nlohmann-json). Specs are stored in their text form.
#pragma once

#include <nlohmann/json.hpp>

#include "mixprec/plan/plan.hpp"

namespace mixprec {

inline void to_json(nlohmann::json& j, const plan_entry& e) {
  j = {{"layer", e.layer}, {"spec", to_string(e.spec)}, {"rows", e.rows}, {"cols", e.cols},
       {"bytes", e.bytes}, {"loss", e.loss},             {"group", e.group}};
}
inline void from_json(const nlohmann::json& j, plan_entry& e) {
  e.layer = j.at("layer").get<std::string>();
  e.spec = parse_spec(j.at("spec").get<std::string>());
  e.rows = j.at("rows").get<index_t>();
  e.cols = j.at("cols").get<index_t>();
  if (e.rows <= 0 || e.cols <= 0) throw error(errc::parse_error, "plan JSON: layer '" + e.layer + "' has a bad shape");
  e.bytes = j.at("bytes").get<std::size_t>();
  if (e.bytes != quantized_bytes(e.spec, e.rows, e.cols))
    throw error(errc::parse_error, "plan JSON: layer '" + e.layer + "' bytes do not match its quantizer and shape");
  e.loss = j.at("loss").get<double>();
  e.group = j.value("group", std::string());
}
inline void to_json(nlohmann::json& j, const plan& p) {
  j = {{"policy", p.policy},
       {"budget", p.budget},
       {"budget_unit", p.budget_unit},
       {"proven_optimal", p.proven_optimal},
       {"loss_lower_bound", p.loss_lower_bound},
       {"bytes", p.bytes()},
       {"bits_per_weight", p.bits_per_weight()},
       {"predicted_loss", p.predicted_loss()},
       {"layers", p.entries}};
}
inline void from_json(const nlohmann::json& j, plan& p) {
  p.policy = j.at("policy").get<std::string>();
  p.budget = j.at("budget").get<double>();
  p.budget_unit = j.at("budget_unit").get<std::string>();
  p.proven_optimal = j.at("proven_optimal").get<bool>();
  p.loss_lower_bound = j.value("loss_lower_bound", 0.0);
  p.entries = j.at("layers").get<std::vector<plan_entry>>();
}

}  // namespace mixprec
