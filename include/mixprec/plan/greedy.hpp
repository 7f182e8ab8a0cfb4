// greedy_policy: start every item at its cheapest option, then repeatedly take the upgrade with the
// largest loss reduction per unit of extra cost that still fits, until none does.
//
// When to use: a quick, easily explained baseline. It is not optimal (an upgrade that fits early can
// block a better one later); knapsack_policy is exact and usually as fast. The result carries the LP
// lower bound, so its distance from optimal is always known.
#pragma once

#include <cstddef>
#include <queue>
#include <string_view>
#include <vector>

#include "mixprec/plan/allocation.hpp"

namespace mixprec {

namespace detail {

// Applies best-ratio upgrades that fit to a feasible choice r (cost and loss filled in). `front` holds
// each item's Pareto options (pareto_options). Each item first moves to the best option that costs no
// more than its current one, so every later upgrade costs more: the unspent budget only shrinks, and an
// upgrade that does not fit now never will. A heap keyed by ratio makes it O((n k + upgrades k) log).
inline void greedy_fill(const allocation_problem& p, const std::vector<std::vector<std::size_t>>& front,
                        allocation_result& r) {
  const std::size_t n = p.items.size();
  struct upgrade {
    double ratio;
    std::size_t item, pos, version;
  };
  auto worse = [](const upgrade& a, const upgrade& b) {  // the heap's top is the largest ratio, then lowest index
    return a.ratio < b.ratio || (a.ratio == b.ratio && (a.item > b.item || (a.item == b.item && a.pos > b.pos)));
  };
  std::priority_queue<upgrade, std::vector<upgrade>, decltype(worse)> heap(worse);
  std::vector<std::size_t> pos(n), version(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& item = p.items[i];
    const auto& f = front[i];
    const double cur = item[r.choice[i]].cost;
    std::size_t j = 0;  // the last Pareto option costing at most the current one (f[0] is the cheapest)
    while (j + 1 < f.size() && item[f[j + 1]].cost <= cur) ++j;
    r.choice[i] = f[j];
    pos[i] = j;
  }
  sum_choices(p, r);
  auto push_item = [&](std::size_t i) {
    const auto& item = p.items[i];
    const auto& cur = item[front[i][pos[i]]];
    for (std::size_t j = pos[i] + 1; j < front[i].size(); ++j) {
      const auto& o = item[front[i][j]];
      heap.push({(cur.loss - o.loss) / (o.cost - cur.cost), i, j, version[i]});
    }
  };
  for (std::size_t i = 0; i < n; ++i) push_item(i);
  double cost = r.cost;
  while (!heap.empty()) {
    const upgrade u = heap.top();
    heap.pop();
    if (u.version != version[u.item]) continue;
    const double extra = p.items[u.item][front[u.item][u.pos]].cost - p.items[u.item][front[u.item][pos[u.item]]].cost;
    if (cost + extra > p.budget) continue;
    cost += extra;
    pos[u.item] = u.pos;
    r.choice[u.item] = front[u.item][u.pos];
    ++version[u.item];
    push_item(u.item);
  }
  sum_choices(p, r);
}

[[nodiscard]] inline std::vector<std::vector<std::size_t>> pareto_fronts(const allocation_problem& p) {
  std::vector<std::vector<std::size_t>> front(p.items.size());
  for (std::size_t i = 0; i < p.items.size(); ++i) front[i] = pareto_options(p.items[i]);
  return front;
}

// Fills lower_bound and proven_optimal of r from the LP bound.
inline void attach_bound(const allocation_problem& p, const lp_relaxation& lp, allocation_result& r) {
  r.lower_bound = lp.lower_bound;
  r.proven_optimal = loss_at_most(r.loss, lp.lower_bound, loss_scale(p, lp.lambda));
}

}  // namespace detail

// See the banner.
struct greedy_policy {
  static constexpr std::string_view name = "greedy";

  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    const auto front = detail::pareto_fronts(p);
    allocation_result r;
    r.solver = "greedy";
    r.choice.resize(p.items.size());
    for (std::size_t i = 0; i < p.items.size(); ++i) r.choice[i] = front[i][0];
    sum_choices(p, r);
    detail::greedy_fill(p, front, r);
    detail::attach_bound(p, detail::solve_lp(p, front), r);
    return r;
  }
};

static_assert(AllocationPolicy<greedy_policy>);

}  // namespace mixprec
