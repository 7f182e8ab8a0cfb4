// lagrangian_policy: the convex-hull (Lagrangian) solver, O(n k log(n k)) for n items of k options.
//
// It solves the LP relaxation exactly (allocation.hpp: hull segments taken by decreasing efficiency)
// and returns the LP's integer part: every item at a vertex of its lower convex hull, the fractional
// item at the cheaper end of its segment. That choice minimises sum_i (l_i + lambda c_i) for the LP's
// multiplier lambda, hence:
// - it is OPTIMAL FOR THE BUDGET IT USES: no choice costing at most what it costs loses less;
// - it is optimal for the requested budget when the budget hits a vertex of the lower convex hull of
//   the whole problem's (cost, loss) trade-off, i.e. when the LP has no fractional item (then its loss
//   equals the LP bound and the result says proven_optimal), or more generally when the optimum is a
//   Lagrangian solution. Otherwise it can leave up to one segment's worth of budget unspent; the gap to
//   the optimum is at most (its loss - lower_bound), which the result carries.
// `fill` spends that leftover with greedy upgrades (better loss, but no longer a hull solution).
//
// When to use: instances too large for knapsack_policy's exact search (millions of items), or to get
// the optimal trade-off curve's vertices cheaply. knapsack_policy stays the default: it starts from this
// solution and proves optimality.
#pragma once

#include <cstddef>
#include <string_view>

#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/greedy.hpp"

namespace mixprec {

// See the banner.
struct lagrangian_policy {
  static constexpr std::string_view name = "lagrangian";
  bool fill = false;  // spend the budget the hull solution leaves with greedy upgrades

  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    const auto front = detail::pareto_fronts(p);
    const detail::lp_relaxation lp = detail::solve_lp(p, front);
    allocation_result r;
    r.choice = lp.choice;
    r.solver = fill ? "hull+greedy" : "hull";
    sum_choices(p, r);
    if (fill) detail::greedy_fill(p, front, r);
    detail::attach_bound(p, lp, r);
    return r;
  }
};

static_assert(AllocationPolicy<lagrangian_policy>);

}  // namespace mixprec
