// plan_builder: builds a plan, a quantizer per layer, chosen from predicted sensitivities under a budget.
//
//   mixprec::sensitivity_table t;                        // any metric: (layer, rows, cols, spec) -> loss
//   t.add("blk.0.attn_q", 4096, 4096, "int4/g128/sym/minmax/s16", 0.012).add(...);
//   mixprec::plan_builder planner{t, mixprec::knapsack_policy{}, mixprec::byte_budget{3.9e9}};
//   planner.rule(mixprec::plan_rule::at_least("*.attn_*", 8))
//          .rule(mixprec::plan_rule::use("output", mixprec::parse_spec("fp16")))
//          .tie({"blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v"});
//   mixprec::plan p = planner.build();                   // fails at once, with the reachable range
//   std::cout << p.table();                              // if the budget cannot be met
//   auto q = mixprec::quantize_model(p, weights);                 // q.bytes() == p.bytes(), exactly
//
// The planner composes three policies, each a C++20 concept:
// - SensitivitySource (sources.hpp): loss(layer, spec); sensitivity_table, weight_error_source, or yours;
// - AllocationPolicy (allocation.hpp): knapsack_policy (exact, the default), greedy_policy,
//   lagrangian_policy, threshold_policy (the class-table baseline), or yours;
// - Constraint (constraints.hpp): byte_budget, bits_budget, latency_budget, or yours.
// Candidates are the planner's list, or the source's own per layer (a LayerCatalog such as the table).
// Rules (rules.hpp) and tied groups restrict them; a tied group is one choice of the allocation, its
// cost and loss the sums over its members. Everything is validated before any solving: unknown layers
// in rules or ties, rules that leave a layer nothing, budgets outside the reachable range.
// refine() improves a plan by the whole model's measured loss, which does not add up (refine.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/quantize_model.hpp"
#include "mixprec/plan/constraints.hpp"
#include "mixprec/plan/fallback.hpp"
#include "mixprec/plan/greedy.hpp"
#include "mixprec/plan/knapsack.hpp"
#include "mixprec/plan/lagrangian.hpp"
#include "mixprec/plan/layer_shape.hpp"
#include "mixprec/plan/pareto.hpp"
#include "mixprec/plan/refine.hpp"
#include "mixprec/plan/result.hpp"
#include "mixprec/plan/rules.hpp"
#include "mixprec/plan/sources.hpp"
#include "mixprec/plan/threshold.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// The name a plan records for a policy: its static `name`, or "custom".
template <class P>
[[nodiscard]] constexpr std::string_view policy_name() {
  if constexpr (requires { std::string_view(P::name); })
    return P::name;
  else
    return "custom";
}

// A plan refined by measured loss (plan_builder::refine) and how the search went.
struct refined_plan {
  plan result;
  refine_result search;
};

// See the banner.
template <SensitivitySource Source, AllocationPolicy Policy = knapsack_policy, Constraint Cons = byte_budget>
class plan_builder {
 public:
  explicit plan_builder(Source source, Policy policy = {}, Cons constraint = {})
      : source_(std::move(source)), policy_(std::move(policy)), constraint_(std::move(constraint)) {}

  // The quantizers every layer may take (default: the source's own per layer, if it lists them).
  plan_builder& candidates(std::vector<quant_spec> specs) {
    candidates_ = std::move(specs);
    return *this;
  }
  plan_builder& rule(plan_rule r) {
    rules_.push_back(std::move(r));
    return *this;
  }
  // Layers that must share one quantizer (q/k/v projections, gate/up): one choice in the allocation.
  plan_builder& tie(std::vector<std::string> layers) {
    groups_.push_back(std::move(layers));
    return *this;
  }

  [[nodiscard]] const Source& source() const noexcept { return source_; }
  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  [[nodiscard]] const Cons& constraint() const noexcept { return constraint_; }

  // The least-loss plan within the constraint's budget.
  [[nodiscard]] plan build(const std::vector<layer_shape>& layers) const {
    prepared pr = prepare(layers);
    check_budget(pr);  // before asking the source for any loss: a bad budget fails at once
    add_losses(pr);
    return to_plan(pr, checked(pr, policy_.allocate(pr.problem)), plan_goal::least_loss, pr.problem.budget);
  }
  [[nodiscard]] plan build() const
    requires LayerCatalog<Source>
  {
    return build(source_.layers());
  }

  // The least-cost plan (in the constraint's unit) whose predicted loss is at most max_loss: the same
  // knapsack with the roles of cost and loss exchanged.
  [[nodiscard]] plan build_for_loss(double max_loss, const std::vector<layer_shape>& layers) const
    requires(!std::is_same_v<Policy, threshold_policy>)
  {
    if (std::isnan(max_loss)) throw error(errc::invalid_argument, "plan: the loss limit is NaN");
    prepared pr = prepare(layers);
    add_losses(pr);
    allocation_problem swapped;
    swapped.budget = max_loss;
    for (const auto& item : pr.problem.items) {
      auto& options = swapped.items.emplace_back();
      for (const auto& o : item) options.push_back({o.loss, o.cost, o.bits});
    }
    const auto [lo, hi] = cost_range(swapped);
    if (max_loss < lo)
      throw error(errc::infeasible, "plan: loss limit " + detail::format_number(max_loss) +
                                        " cannot be met: the smallest reachable predicted loss is " +
                                        detail::format_number(lo) + " and the largest " + detail::format_number(hi) +
                                        " (rules and tied groups applied)");
    allocation_result r = checked(pr, policy_.allocate(swapped));
    std::swap(r.cost, r.loss);
    return to_plan(pr, r, plan_goal::least_cost, max_loss);
  }
  [[nodiscard]] plan build_for_loss(double max_loss) const
    requires LayerCatalog<Source> && (!std::is_same_v<Policy, threshold_policy>)
  {
    return build_for_loss(max_loss, source_.layers());
  }

  // Plans along the size / predicted-loss frontier (pareto.hpp): `points` budgets from the smallest to
  // the largest reachable cost, dominated plans removed; sorted by cost. The constraint's budget is
  // not used.
  [[nodiscard]] std::vector<plan> pareto(const std::vector<layer_shape>& layers, int points = 32) const {
    prepared pr = prepare(layers);
    add_losses(pr);
    std::vector<plan> out;
    for (const pareto_point& pt : pareto_frontier(pr.problem, points, policy_)) {
      allocation_result r;
      r.choice = pt.choice;
      r.proven_optimal = pt.proven_optimal;
      out.push_back(to_plan(pr, checked(pr, std::move(r)), plan_goal::least_loss, pt.budget));
      out.back().solver = "pareto sweep";
    }
    return out;
  }
  [[nodiscard]] std::vector<plan> pareto(int points = 32) const
    requires LayerCatalog<Source>
  {
    return pareto(source_.layers(), points);
  }

  // `start` (a plan of these layers within the budget, e.g. build()'s) refined by the whole model's
  // measured loss (refine.hpp): fitness(const plan&, stage) -> double, lower is better, called with plans
  // within the constraint's budget that honour the rules and tied groups. The plan's entries carry the
  // source's predicted losses; its solver is start's with " + refined", and it is no longer proven optimal
  // (in predicted loss). Throws errc::invalid_argument when start names other layers, a quantizer a
  // layer may not take, or tied layers apart, besides what refine_allocation throws.
  template <class Fitness>
    requires std::invocable<Fitness&, const plan&, std::size_t>
  [[nodiscard]] refined_plan refine(const plan& start, Fitness&& fitness, const refine_options& o, const std::vector<layer_shape>& layers) const {
    prepared pr = prepare(layers);
    add_losses(pr);
    std::map<std::string, const plan_entry*, std::less<>> by_name;
    for (const plan_entry& e : start.entries) by_name.emplace(e.layer, &e);
    if (by_name.size() != start.entries.size() || start.entries.size() != pr.layers.size())
      throw error(errc::invalid_argument, "refine: the start plan has " + std::to_string(start.entries.size()) + " entries for " +
                                              std::to_string(pr.layers.size()) + " layers");
    std::vector<std::size_t> choice;
    for (const item_info& item : pr.items) {
      const std::string& name = pr.layers[item.members[0]].name;
      const auto e = by_name.find(name);
      if (e == by_name.end()) throw error(errc::invalid_argument, "refine: the start plan has no entry for layer '" + name + "'");
      for (std::size_t m : item.members)
        if (const auto o = by_name.find(pr.layers[m].name); o == by_name.end() || !(o->second->spec == e->second->spec))
          throw error(errc::invalid_argument, "refine: the start plan does not give the tied layers " + item.group + " one quantizer");
      const auto k = std::find(item.specs.begin(), item.specs.end(), e->second->spec);
      if (k == item.specs.end())
        throw error(errc::invalid_argument, "refine: the start plan gives layer '" + name + "' " + to_string(e->second->spec) +
                                                ", which it may not take here");
      choice.push_back(static_cast<std::size_t>(k - item.specs.begin()));
    }
    auto as_plan = [&](const std::vector<std::size_t>& c) {
      allocation_result r;
      r.choice = c;
      return to_plan(pr, r, plan_goal::least_loss, pr.problem.budget);
    };
    refined_plan out;
    out.search = refine_allocation(
        pr.problem, std::move(choice), [&](const std::vector<std::size_t>& c, std::size_t stage) { return fitness(as_plan(c), stage); }, o);
    out.result = as_plan(out.search.choice);
    out.result.policy = start.policy;
    out.result.solver = start.solver + " + refined";
    return out;
  }
  template <class Fitness>
    requires std::invocable<Fitness&, const plan&, std::size_t> && LayerCatalog<Source>
  [[nodiscard]] refined_plan refine(const plan& start, Fitness&& fitness, const refine_options& o = {}) const {
    return refine(start, std::forward<Fitness>(fitness), o, source_.layers());
  }

  // The multiple-choice knapsack the policies solve (one item per tied group or untied layer), after
  // validation and the rules: for inspection and for custom solvers.
  [[nodiscard]] allocation_problem problem(const std::vector<layer_shape>& layers) const {
    prepared pr = prepare(layers);
    add_losses(pr);
    return pr.problem;
  }

 private:
  struct item_info {
    std::vector<std::size_t> members;  // layer indices
    std::string group;                 // "a+b+c" for a tied group
    std::vector<quant_spec> specs;     // one per option
    // Per option, per member: cost and loss (for the plan's entries).
    std::vector<std::vector<std::pair<double, double>>> member_values;
  };
  struct prepared {
    std::vector<layer_shape> layers;
    std::vector<bool> unquantized;  // per layer: kept FP32 by a rule (loss 0, the source is not asked)
    std::vector<item_info> items;
    allocation_problem problem;     // losses filled in by add_losses
  };

  [[nodiscard]] std::string describe_total(double total, const std::vector<layer_shape>& layers) const {
    if constexpr (requires { { constraint_.describe(total, layers) } -> std::convertible_to<std::string>; })
      return constraint_.describe(total, layers);
    else if constexpr (std::is_same_v<Cons, byte_budget>)
      return detail::format_number(total) + " bytes (" + detail::format_number(8.0 * total / detail::total_weights(layers)) +
             " bits/weight)";
    else
      return detail::format_number(total) + " " + std::string(constraint_.unit());
  }

  void check_budget(const prepared& pr) const {
    const auto [lo, hi] = cost_range(pr.problem);
    if (pr.problem.budget < lo)
      throw error(errc::infeasible, "plan: budget " + describe_total(pr.problem.budget, pr.layers) +
                                        " cannot be met: the smallest reachable size is " + describe_total(lo, pr.layers) +
                                        " and the largest " + describe_total(hi, pr.layers) +
                                        " (" + std::to_string(pr.layers.size()) + " layers, rules and tied groups applied)");
  }

  // The specs layer l may take before rules.
  [[nodiscard]] std::vector<quant_spec> base_candidates(const layer_shape& l) const {
    if (!candidates_.empty()) return candidates_;
    if constexpr (LayerCatalog<Source>) {
      std::vector<quant_spec> c = source_.candidates(l);
      if (!c.empty()) return c;
    }
    throw error(errc::invalid_argument, "plan: no candidate quantizers for layer '" + l.name +
                                            "' (call candidates(), or use a source that lists them)");
  }

  [[nodiscard]] prepared prepare(const std::vector<layer_shape>& layers) const {
    if (layers.empty()) throw error(errc::empty_input, "plan: no layers");
    prepared pr;
    pr.layers = layers;
    const std::size_t n = layers.size();
    std::map<std::string, std::size_t, std::less<>> index;
    for (std::size_t i = 0; i < n; ++i) {
      if (layers[i].rows <= 0 || layers[i].cols <= 0)
        throw error(errc::empty_input, "plan: layer '" + layers[i].name + "' has shape " + std::to_string(layers[i].rows) +
                                           "x" + std::to_string(layers[i].cols));
      if (!index.emplace(layers[i].name, i).second)
        throw error(errc::invalid_argument, "plan: layer '" + layers[i].name + "' appears twice");
    }
    for (const quant_spec& q : candidates_) validate(q);

    // Rules: which layers each matches (every rule must match one), then each layer's allowed specs.
    // The first matching forcing rule decides (llama.cpp's --tensor-type: first match wins); bounds
    // intersect (rules.hpp).
    std::vector<std::vector<const plan_rule*>> matching(n);
    for (const plan_rule& r : rules_) {
      if (r.force) validate(*r.force);
      bool matched = false;
      for (std::size_t i = 0; i < n; ++i)
        if (r.pattern.matches(layers[i].name)) {
          matching[i].push_back(&r);
          matched = true;
        }
      if (!matched) {
        std::string known;
        for (std::size_t i = 0; i < std::min<std::size_t>(n, 3); ++i) known += (i ? ", '" : "'") + layers[i].name + "'";
        throw error(errc::invalid_argument, "plan: " + r.describe() + " matches no layer (unknown layer name?" +
                                                " the model has " + std::to_string(n) + " layers, e.g. " + known + ")");
      }
    }
    std::vector<std::vector<quant_spec>> allowed(n);
    std::vector<bool> unquantized(n, false);
    for (std::size_t i = 0; i < n; ++i) {
      const auto first_forcing = std::find_if(matching[i].begin(), matching[i].end(), [](const plan_rule* r) { return r->forces(); });
      const plan_rule* forced = first_forcing == matching[i].end() ? nullptr : *first_forcing;
      std::vector<quant_spec> universe;
      if (forced) {
        universe.push_back(forced->keep_fp32 ? parse_spec("fp32") : *forced->force);
        unquantized[i] = forced->keep_fp32;
        if (!fits(universe.back(), layers[i].cols))
          throw error(errc::invalid_argument, "plan: layer '" + layers[i].name + "': " + forced->describe() + ": " +
                                            to_string(universe.back()) + " needs rows whose length is a multiple of " +
                                            std::to_string(ggml::block_size(universe.back().ggml)) + ", the layer's have " +
                                            std::to_string(layers[i].cols));
      } else {
        for (const quant_spec& q : base_candidates(layers[i]))
          if (fits(q, layers[i].cols)) universe.push_back(q);
      }
      for (const quant_spec& q : universe) {
        if (std::find(allowed[i].begin(), allowed[i].end(), q) != allowed[i].end()) continue;
        if (std::all_of(matching[i].begin(), matching[i].end(), [&](const plan_rule* r) { return r->forces() || r->allows(q); }))
          allowed[i].push_back(q);
      }
      if (allowed[i].empty()) {
        std::string which;
        for (const plan_rule* r : matching[i])
          if (!r->forces() || r == forced) which += (which.empty() ? "" : ", ") + r->describe();
        throw error(errc::infeasible, "plan: layer '" + layers[i].name + "' has no candidate left" +
                                          (which.empty() ? std::string(" (no candidate quantizer fits its rows of ") +
                                                               std::to_string(layers[i].cols) + " values)"
                                                         : " after " + which));
      }
    }

    // Items: tied groups, then the untied layers.
    std::vector<bool> tied(n, false);
    for (const auto& g : groups_) {
      if (g.empty()) throw error(errc::invalid_argument, "plan: an empty tied group");
      item_info item;
      for (const std::string& name : g) {
        const auto it = index.find(name);
        if (it == index.end()) throw error(errc::invalid_argument, "plan: tied layer '" + name + "' is not in the model");
        if (tied[it->second]) throw error(errc::invalid_argument, "plan: layer '" + name + "' is tied twice");
        tied[it->second] = true;
        item.members.push_back(it->second);
        item.group += (item.group.empty() ? "" : "+") + name;
      }
      pr.items.push_back(std::move(item));
    }
    for (std::size_t i = 0; i < n; ++i)
      if (!tied[i]) pr.items.push_back({{i}, {}, {}, {}});

    // Options: the specs every member allows, with summed cost and loss.
    pr.problem.budget = constraint_.budget(layers);
    if (std::isnan(pr.problem.budget)) throw error(errc::invalid_argument, "plan: the budget is NaN");
    for (item_info& item : pr.items) {
      for (const quant_spec& q : allowed[item.members[0]])
        if (std::all_of(item.members.begin(), item.members.end(), [&](std::size_t m) {
              return std::find(allowed[m].begin(), allowed[m].end(), q) != allowed[m].end();
            }))
          item.specs.push_back(q);
      if (item.specs.empty())
        throw error(errc::infeasible, "plan: the tied layers " + item.group + " allow no common quantizer");
      if (item.specs.size() > 255)
        throw error(errc::invalid_argument, "plan: more than 255 candidate quantizers for one layer");
      auto& options = pr.problem.items.emplace_back();
      for (const quant_spec& q : item.specs) {
        allocation_option o;
        o.bits = nominal_bits(q);
        auto& values = item.member_values.emplace_back();
        for (std::size_t m : item.members) {
          const double cost = static_cast<double>(constraint_.cost(layers[m], q));
          if (!std::isfinite(cost))
            throw error(errc::non_finite, "plan: layer '" + layers[m].name + "' at " + to_string(q) + " costs " +
                                              detail::format_number(cost) + " " + std::string(constraint_.unit()));
          values.emplace_back(cost, 0.0);
          o.cost += cost;
        }
        options.push_back(o);
      }
    }
    pr.unquantized = std::move(unquantized);
    return pr;
  }

  // Asks the source for every (member, option) loss.
  void add_losses(prepared& pr) const {
    for (std::size_t it = 0; it < pr.items.size(); ++it) {
      item_info& item = pr.items[it];
      for (std::size_t k = 0; k < item.specs.size(); ++k) {
        double sum = 0.0;
        for (std::size_t j = 0; j < item.members.size(); ++j) {
          const layer_shape& l = pr.layers[item.members[j]];
          const double loss = pr.unquantized[item.members[j]] ? 0.0 : static_cast<double>(source_.loss(l, item.specs[k]));
          if (!std::isfinite(loss))
            throw error(errc::non_finite, "plan: the predicted loss of layer '" + l.name + "' at " +
                                              to_string(item.specs[k]) + " is " + detail::format_number(loss));
          item.member_values[k][j].second = loss;
          sum += loss;
        }
        pr.problem.items[it][k].loss = sum;
      }
    }
  }

  // Rejects a policy result that is not one valid choice per item.
  [[nodiscard]] allocation_result checked(const prepared& pr, allocation_result r) const {
    bool ok = r.choice.size() == pr.items.size();
    for (std::size_t i = 0; ok && i < r.choice.size(); ++i) ok = r.choice[i] < pr.items[i].specs.size();
    if (!ok)
      throw error(errc::invalid_argument, "plan: policy '" + std::string(policy_name<Policy>()) +
                                              "' returned an invalid choice (expected one option index per item, " +
                                              std::to_string(pr.items.size()) + " items)");
    return r;
  }

  [[nodiscard]] plan to_plan(const prepared& pr, const allocation_result& r, plan_goal goal, double limit) const {
    plan out;
    out.policy = std::string(policy_name<Policy>());
    out.solver = r.solver;
    out.goal = goal;
    out.unit = std::string(constraint_.unit());
    out.limit = limit;
    out.proven_optimal = r.proven_optimal;
    out.lower_bound = r.lower_bound;
    out.entries.resize(pr.layers.size());
    for (std::size_t it = 0; it < pr.items.size(); ++it) {
      const item_info& item = pr.items[it];
      const std::size_t k = r.choice[it];
      for (std::size_t j = 0; j < item.members.size(); ++j) {
        const layer_shape& l = pr.layers[item.members[j]];
        const quant_spec& q = item.specs[k];
        out.entries[item.members[j]] = {l.name, q, l.rows, l.cols, quantized_bytes(q, l.rows, l.cols),
                                        item.member_values[k][j].first, item.member_values[k][j].second, item.group};
      }
    }
    return out;
  }

  Source source_;
  Policy policy_;
  Cons constraint_;
  std::vector<quant_spec> candidates_;
  std::vector<plan_rule> rules_;
  std::vector<std::vector<std::string>> groups_;
};

// Table t restricted to the upgrades of plan `base`: for each layer base plans at a spec t has, only
// the specs with at least its bytes and at most its loss (its own included); other layers as in t.
// Planned at a larger budget, it gives a plan nested on base (no layer moves to a cheaper or a worse
// type), e.g. to repair a frontier whose larger plan the whole model shows worse than a smaller one.
[[nodiscard]] inline sensitivity_table upgrades_of(const sensitivity_table& t, const plan& base) {
  std::map<std::string, const plan_entry*> planned;
  for (const plan_entry& e : base.entries) planned.emplace(e.layer, &e);
  sensitivity_table out;
  for (const auto& row : t.rows()) {
    const auto it = planned.find(row.layer.name);
    const sensitivity_table::entry* own = nullptr;
    if (it != planned.end())
      for (const auto& e : row.losses)
        if (e.spec == it->second->spec) own = &e;
    for (const auto& e : row.losses) {
      const bool keep = !own || &e == own ||
                        (quantized_bytes(e.spec, row.layer.rows, row.layer.cols) >= quantized_bytes(own->spec, row.layer.rows, row.layer.cols) &&
                         e.loss <= own->loss);
      if (keep) out.add(row.layer.name, row.layer.rows, row.layer.cols, e.spec, e.loss);
    }
  }
  return out;
}

}  // namespace mixprec
