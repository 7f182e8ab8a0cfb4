// pareto_frontier: the trade-off between cost (size) and predicted loss, by sweeping budgets.
//
// `points` budgets spread evenly from the smallest to the largest reachable cost (both included) are
// solved with the policy (knapsack_policy by default); points dominated by another (no cheaper and no
// better) are removed, so the result is sorted by cost with strictly decreasing loss. With an exact
// policy each point is optimal for its cost and the cheapest for its loss, so it is on the true
// frontier; the two ends are the cheapest choice (with its least loss) and the least-loss choice (at its
// least cost). Points between the sampled budgets may exist: more points, finer frontier.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/knapsack.hpp"

namespace mixprec {

struct pareto_point {
  double budget = 0.0;  // the budget solved for
  double cost = 0.0;
  double loss = 0.0;
  bool proven_optimal = false;
  std::vector<std::size_t> choice;
};

// See the banner; throws for points < 2 (and whatever the policy throws).
template <AllocationPolicy Policy = knapsack_policy>
[[nodiscard]] std::vector<pareto_point> pareto_frontier(const allocation_problem& problem, int points = 32,
                                                        const Policy& policy = {}) {
  if (points < 2) throw error(errc::invalid_argument, "pareto_frontier: needs at least 2 points, got " + std::to_string(points));
  const auto [lo, hi] = cost_range(problem);
  std::vector<pareto_point> raw;
  allocation_problem p = problem;
  for (int k = 0; k < points; ++k) {
    p.budget = k == 0 ? lo : k == points - 1 ? hi : lo + (hi - lo) * static_cast<double>(k) / static_cast<double>(points - 1);
    allocation_result r = policy.allocate(p);
    raw.push_back({p.budget, r.cost, r.loss, r.proven_optimal, std::move(r.choice)});
  }
  std::stable_sort(raw.begin(), raw.end(), [](const pareto_point& a, const pareto_point& b) {
    return a.cost < b.cost || (a.cost == b.cost && a.loss < b.loss);
  });
  std::vector<pareto_point> front;
  for (auto& pt : raw)
    if (front.empty() || pt.loss < front.back().loss) front.push_back(std::move(pt));
  return front;
}

}  // namespace mixprec
