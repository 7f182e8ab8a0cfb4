// JSON for plans and sensitivity tables (optional header: needs nlohmann-json; the rest of plan/ does
// not). Specs are stored in their text form (parse_spec: "int4/g32/sym/minmax/s16", "q4_K"...), plus
// "seed" for stochastic rounding.
//
// The plan format is versioned: {"format": "mixprec-plan", "version": 1, ...}. The library, the
// examples and the mixprec tool read and write this one format. Reading refuses another "format"
// (errc::parse_error) and a version newer than plan_format_version (errc::unsupported); a file without
// the two keys (written before they existed) reads as version 1. Unknown keys are ignored (room for tools' notes).
// Round trip: plan -> JSON -> plan gives an equal plan (doubles are written with 17 digits). Infinite
// limits and bounds are written as null. Reading checks every entry's bytes against its spec and shape,
// so a hand-edited file that no longer adds up is rejected (mixprec::error, parse_error).
//
// A plan names each layer once and a table lists each layer once (a layer planned twice is a
// parse_error naming it: which entry would a reader apply?).
//
// Text: read it with parse_plan / parse_sensitivity_table, not nlohmann::json::parse + get<>():
// nlohmann keeps the last of two equal keys without a word ({"spec": "int4", "spec": "int8"} is int8
// to it and int4 to a reader that keeps the first) and stops reading at a raw NUL byte, ignoring what
// follows; these refuse both (detail/json_strict.hpp), naming the source and the key.
//
//   nlohmann::json j = p;  std::ofstream("plan.json") << j.dump(2);
//   mixprec::plan back = mixprec::parse_plan(text, "plan.json");
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mixprec/detail/json_number.hpp"
#include "mixprec/detail/json_strict.hpp"
#include "mixprec/error.hpp"
#include "mixprec/plan/result.hpp"
#include "mixprec/plan/sources.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// The plan JSON format this header writes and the newest it reads.
inline constexpr int plan_format_version = 1;

namespace detail {
inline nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
inline double number_or(const nlohmann::json& j, const char* key, double if_null) {
  const auto& v = j.at(key);
  return v.is_null() ? if_null : v.get<double>();
}
inline nlohmann::json spec_json(const quant_spec& q) { return to_string(q); }
inline quant_spec spec_from_json(const nlohmann::json& j, const char* key = "spec") {
  quant_spec q = parse_spec(j.at(key).get<std::string>());
  if (q.rounding == rounding_id::stochastic && j.contains("seed")) q.seed = json_integer<std::uint64_t>(j.at("seed"), "seed");
  return q;
}
// Runs f, turning nlohmann's exceptions (missing keys, wrong types) into mixprec::error(parse_error).
template <class F>
void parse_json(const char* what, F&& f) {
  try {
    f();
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, std::string(what) + " JSON: " + e.what());
  }
}
}  // namespace detail

inline void to_json(nlohmann::json& j, const plan_entry& e) {
  j = {{"layer", e.layer}, {"spec", to_string(e.spec)}, {"rows", e.rows}, {"cols", e.cols}, {"bytes", e.bytes},
       {"cost", e.cost},   {"loss", e.loss},             {"group", e.group}};
  if (e.spec.rounding == rounding_id::stochastic) j["seed"] = e.spec.seed;
}
inline void from_json(const nlohmann::json& j, plan_entry& e) {
  detail::parse_json("plan entry", [&] {
    e.layer = j.at("layer").get<std::string>();
    e.spec = detail::spec_from_json(j);
    e.rows = detail::json_integer<index_t>(j.at("rows"), "plan JSON: layer '" + e.layer + "': rows");
    e.cols = detail::json_integer<index_t>(j.at("cols"), "plan JSON: layer '" + e.layer + "': cols");
    if (e.rows <= 0 || e.cols <= 0 || e.rows > std::numeric_limits<index_t>::max() / e.cols)
      throw error(errc::parse_error, "plan JSON: layer '" + e.layer + "' has a bad shape");
    e.bytes = detail::json_integer<std::size_t>(j.at("bytes"), "plan JSON: layer '" + e.layer + "': bytes");
    if (e.bytes != quantized_bytes(e.spec, e.rows, e.cols))
      throw error(errc::parse_error, "plan JSON: layer '" + e.layer + "' says " + std::to_string(e.bytes) + " bytes, but " +
                                         to_string(e.spec) + " at " + std::to_string(e.rows) + "x" + std::to_string(e.cols) +
                                         " takes " + std::to_string(quantized_bytes(e.spec, e.rows, e.cols)));
    e.cost = j.at("cost").get<double>();
    e.loss = j.at("loss").get<double>();
    e.group = j.value("group", std::string());
  });
}

inline void to_json(nlohmann::json& j, const plan& p) {
  j = {{"format", "mixprec-plan"},
       {"version", plan_format_version},
       {"policy", p.policy},
       {"solver", p.solver},
       {"goal", p.goal == plan_goal::least_loss ? "least_loss" : "least_cost"},
       {"unit", p.unit},
       {"limit", detail::finite_or_null(p.limit)},
       {"proven_optimal", p.proven_optimal},
       {"lower_bound", detail::finite_or_null(p.lower_bound)},
       // Derived totals, for readers of the file (recomputed, not read back).
       {"bytes", p.bytes()},
       {"bits_per_weight", p.bits_per_weight()},
       {"predicted_loss", p.predicted_loss()},
       {"cost", p.cost()},
       {"layers", p.entries}};
}
inline void from_json(const nlohmann::json& j, plan& p) {
  detail::parse_json("plan", [&] {
    if (!j.is_object()) throw error(errc::parse_error, "plan JSON: expected an object");
    if (j.contains("format") && j.at("format") != "mixprec-plan")
      throw error(errc::parse_error, "plan JSON: format " + j.at("format").dump() + ", expected \"mixprec-plan\"" +
                                         (j.at("format") == "mixprec-ggml-plan" ? " (a plan of mixprec's tool before 0.2: run `mixprec plan` again)" : ""));
    if (j.contains("version")) {
      const auto v = detail::json_integer<int>(j.at("version"), "plan JSON: version");
      if (v < 1 || v > plan_format_version)
        throw error(errc::unsupported, "plan JSON: version " + std::to_string(v) + "; this mixprec reads versions 1.." +
                                           std::to_string(plan_format_version));
    }
    p.policy = j.at("policy").get<std::string>();
    p.solver = j.value("solver", std::string());
    const std::string goal = j.value("goal", std::string("least_loss"));
    if (goal != "least_loss" && goal != "least_cost")
      throw error(errc::parse_error, "plan JSON: goal '" + goal + "', expected least_loss or least_cost");
    p.goal = goal == "least_loss" ? plan_goal::least_loss : plan_goal::least_cost;
    p.unit = j.at("unit").get<std::string>();
    p.limit = detail::number_or(j, "limit", std::numeric_limits<double>::infinity());
    p.proven_optimal = j.at("proven_optimal").get<bool>();
    p.lower_bound = detail::number_or(j, "lower_bound", -std::numeric_limits<double>::infinity());
    p.entries = j.at("layers").get<std::vector<plan_entry>>();
    if (p.entries.empty()) throw error(errc::parse_error, "plan JSON: no layers");
    std::map<std::string, std::size_t> first;  // layer -> its index in "layers"
    for (std::size_t i = 0; i < p.entries.size(); ++i)
      if (const auto [it, fresh] = first.emplace(p.entries[i].layer, i); !fresh)
        throw error(errc::parse_error, "plan JSON: layer '" + p.entries[i].layer + "' is planned twice (layers[" +
                                           std::to_string(it->second) + "] and layers[" + std::to_string(i) + "])");
  });
}

// A sensitivity table as {"layers": [{"name", "rows", "cols", "losses": [{"spec", "loss"}, ...]}, ...]}
// (arrays, so that the order of layers and candidates survives the round trip).
inline void to_json(nlohmann::json& j, const sensitivity_table& t) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& r : t.rows()) {
    nlohmann::json losses = nlohmann::json::array();
    for (const auto& e : r.losses) {
      nlohmann::json one = {{"spec", to_string(e.spec)}, {"loss", e.loss}};
      if (e.spec.rounding == rounding_id::stochastic) one["seed"] = e.spec.seed;
      losses.push_back(std::move(one));
    }
    layers.push_back({{"name", r.layer.name}, {"rows", r.layer.rows}, {"cols", r.layer.cols}, {"losses", losses}});
  }
  j = {{"layers", layers}};
}
inline void from_json(const nlohmann::json& j, sensitivity_table& t) {
  detail::parse_json("sensitivity table", [&] {
    sensitivity_table out;
    std::set<std::string> seen;
    for (const auto& l : j.at("layers")) {
      const auto name = l.at("name").get<std::string>();
      if (!seen.insert(name).second)
        throw error(errc::parse_error, "sensitivity table JSON: layer '" + name + "' is listed twice");
      const auto rows = detail::json_integer<index_t>(l.at("rows"), "sensitivity table: layer '" + name + "': rows");
      const auto cols = detail::json_integer<index_t>(l.at("cols"), "sensitivity table: layer '" + name + "': cols");
      for (const auto& e : l.at("losses")) {
        const quant_spec spec = detail::spec_from_json(e);
        const double loss = e.at("loss").get<double>();
        try {
          out.add(name, rows, cols, spec, loss);
        } catch (const error& x) {  // a spec given twice, a non-finite loss...: a bad file
          throw x.in_context("sensitivity table JSON", errc::parse_error);
        }
      }
    }
    t = std::move(out);
  });
}

// ---- reading text ----

// `text` (named `source` in errors) as a plan: parse_json_strict (no duplicate keys, no raw NUL),
// then from_json. Every refusal is a mixprec::error naming the source (parse_error; unsupported for a
// newer version).
[[nodiscard]] inline plan parse_plan(std::string_view text, const std::string& source = "plan") {
  try {
    plan p;
    from_json(detail::parse_json_strict(text), p);
    return p;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "plan '" + source + "': not JSON: " + e.what());
  } catch (const error& e) {
    throw e.in_context("plan '" + source + "'");
  }
}

// `text` (named `source` in errors) as a sensitivity table, read like parse_plan.
[[nodiscard]] inline sensitivity_table parse_sensitivity_table(std::string_view text,
                                                               const std::string& source = "sensitivity table") {
  try {
    sensitivity_table t;
    from_json(detail::parse_json_strict(text), t);
    return t;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "sensitivity table '" + source + "': not JSON: " + e.what());
  } catch (const error& e) {
    throw e.in_context("sensitivity table '" + source + "'");
  }
}

}  // namespace mixprec
