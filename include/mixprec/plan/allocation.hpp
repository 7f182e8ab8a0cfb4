// Allocation: the abstract problem every policy solves, and the policies.
//
// The problem is a multiple-choice knapsack: items (a layer, or a group of layers tied to one format),
// each with options (cost, loss); choose one option per item to minimise the total loss with the total
// cost within the budget. Costs are bytes (exact, integers), bits or a user's latency model.
//
// Policies (pick by the size of the problem and what you need):
// - knapsack (default): dynamic programming over the cost axis. Exact when the costs, divided by their
//   greatest common divisor, give a table of at most `max_cells` cells (small instances, and byte
//   budgets of models whose shapes share large factors); otherwise the Lagrangian solution improved by
//   greedy upgrades, with the Lagrangian dual as a lower bound on the optimal loss. The result says
//   which (`proven_optimal`, `lower_bound`).
// - greedy: from the cheapest option of every item, repeatedly take the upgrade with the largest loss
//   reduction per unit of extra cost that still fits.
// - lagrangian: minimise loss + lambda * cost per item and bisect lambda. Each solution is optimal for
//   the budget it actually uses (it lies on the lower convex hull of the (cost, loss) trade-off); it is
//   optimal for the requested budget when it uses the budget exactly or the optimum is a hull vertex.
//   Linear time per lambda: for instances too large for the table.
// - threshold: the seed's class table, ignoring the budget (a baseline; see plan.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/sensitivity/classify.hpp"

namespace mixprec {

struct allocation_option {
  double cost = 0.0;  // in the constraint's units (bytes, bits, seconds)
  double loss = 0.0;  // predicted loss (sensitivity) if this option is chosen
  int bits = 0;       // storage bits of one element of the option's format (for threshold_policy)
};

struct allocation_problem {
  std::vector<std::vector<allocation_option>> items;  // each item has >= 1 option
  double budget = 0.0;
};

struct allocation_result {
  std::vector<std::size_t> choice;  // option index per item
  double cost = 0.0;
  double loss = 0.0;
  bool proven_optimal = false;  // the policy proved no cheaper-in-loss plan fits the budget
  double lower_bound = -std::numeric_limits<double>::infinity();  // on the optimal loss, when known
};

// A policy: any type with allocate(problem) -> allocation_result.
template <class P>
concept AllocationPolicy = requires(const P& p, const allocation_problem& problem) {
  { p.allocate(problem) } -> std::convertible_to<allocation_result>;
};

// Smallest and largest reachable total cost.
[[nodiscard]] inline std::pair<double, double> cost_range(const allocation_problem& p) {
  double lo = 0.0, hi = 0.0;
  for (const auto& item : p.items) {
    if (item.empty()) throw error(errc::invalid_argument, "allocation: an item has no options");
    double mn = item[0].cost, mx = item[0].cost;
    for (const auto& o : item) {
      mn = std::min(mn, o.cost);
      mx = std::max(mx, o.cost);
    }
    lo += mn;
    hi += mx;
  }
  return {lo, hi};
}

// Fills cost and loss of a result from its choices.
inline void evaluate(const allocation_problem& p, allocation_result& r) {
  r.cost = r.loss = 0.0;
  for (std::size_t i = 0; i < p.items.size(); ++i) {
    r.cost += p.items[i][r.choice[i]].cost;
    r.loss += p.items[i][r.choice[i]].loss;
  }
}

namespace detail {
inline std::size_t cheapest(const std::vector<allocation_option>& item) {
  std::size_t best = 0;
  for (std::size_t k = 1; k < item.size(); ++k)
    if (item[k].cost < item[best].cost || (item[k].cost == item[best].cost && item[k].loss < item[best].loss)) best = k;
  return best;
}

// Per item: min over options of loss + lambda * cost (ties: the cheaper option).
inline allocation_result lagrangian_solution(const allocation_problem& p, double lambda) {
  allocation_result r;
  r.choice.resize(p.items.size());
  for (std::size_t i = 0; i < p.items.size(); ++i) {
    const auto& item = p.items[i];
    std::size_t best = 0;
    double best_v = item[0].loss + lambda * item[0].cost;
    for (std::size_t k = 1; k < item.size(); ++k) {
      const double v = item[k].loss + lambda * item[k].cost;
      if (v < best_v || (v == best_v && item[k].cost < item[best].cost)) {
        best = k;
        best_v = v;
      }
    }
    r.choice[i] = best;
  }
  evaluate(p, r);
  return r;
}

// Lagrangian dual lower bound on the optimal loss: max over lambda of L(lambda) - lambda * budget.
inline double dual_bound(const allocation_problem& p, double lambda) {
  const allocation_result r = lagrangian_solution(p, lambda);
  return r.loss + lambda * r.cost - lambda * p.budget;
}
}  // namespace detail

// Throws errc::infeasible when no choice fits the budget, stating the reachable range.
inline void check_feasible(const allocation_problem& p, const char* unit = "bytes") {
  const auto [lo, hi] = cost_range(p);
  if (p.budget < lo)
    throw error(errc::infeasible, "budget " + std::to_string(p.budget) + " " + unit +
                                      " is below the smallest reachable size " + std::to_string(lo) + " " + unit +
                                      " (largest: " + std::to_string(hi) + " " + unit + ")");
}

// See the banner: greedy upgrades by loss reduction per extra cost.
struct greedy_policy {
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    allocation_result r;
    r.choice.resize(p.items.size());
    for (std::size_t i = 0; i < p.items.size(); ++i) r.choice[i] = detail::cheapest(p.items[i]);
    evaluate(p, r);
    improve(p, r);
    return r;
  }

  // Applies the best-ratio upgrades that still fit to an existing feasible choice.
  static void improve(const allocation_problem& p, allocation_result& r) {
    for (;;) {
      double best_ratio = 0.0;
      std::size_t best_i = 0, best_k = 0;
      bool found = false;
      for (std::size_t i = 0; i < p.items.size(); ++i) {
        const auto& cur = p.items[i][r.choice[i]];
        for (std::size_t k = 0; k < p.items[i].size(); ++k) {
          const auto& o = p.items[i][k];
          const double dc = o.cost - cur.cost, dl = cur.loss - o.loss;
          if (dl <= 0.0 || r.cost + dc > p.budget) continue;
          const double ratio = dc <= 0.0 ? std::numeric_limits<double>::infinity() : dl / dc;
          if (!found || ratio > best_ratio) {
            found = true;
            best_ratio = ratio;
            best_i = i;
            best_k = k;
          }
        }
      }
      if (!found) break;
      r.choice[best_i] = best_k;
      evaluate(p, r);
    }
  }
};

// See the banner: bisection on the Lagrange multiplier.
struct lagrangian_policy {
  int iterations = 100;
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    double lo = 0.0, hi = 1.0;
    allocation_result best = detail::lagrangian_solution(p, lo);
    if (best.cost <= p.budget) {  // the loss-minimal choice already fits
      best.proven_optimal = true;
      best.lower_bound = best.loss;
      return best;
    }
    while (detail::lagrangian_solution(p, hi).cost > p.budget) {
      hi *= 2.0;
      if (!std::isfinite(hi)) throw error(errc::infeasible, "lagrangian: no multiplier meets the budget");
    }
    best = detail::lagrangian_solution(p, hi);
    double bound = detail::dual_bound(p, hi);
    for (int it = 0; it < iterations; ++it) {
      const double mid = 0.5 * (lo + hi);
      const allocation_result r = detail::lagrangian_solution(p, mid);
      bound = std::max(bound, detail::dual_bound(p, mid));
      if (r.cost <= p.budget) {
        hi = mid;
        if (r.loss < best.loss) best = r;
      } else {
        lo = mid;
      }
    }
    best.lower_bound = bound;
    best.proven_optimal = best.loss <= bound + 1e-12 * std::max(1.0, std::fabs(bound));
    return best;
  }
};

// See the banner: exact dynamic programming over the (gcd-reduced) cost axis.
struct knapsack_policy {
  std::size_t max_cells = std::size_t{1} << 26;  // table limit for the exact path (bytes of choices)

  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    const std::size_t n = p.items.size();
    // Work on extra cost above each item's cheapest option: the table spans only the slack.
    std::vector<double> base(n);
    double slack = p.budget;
    for (std::size_t i = 0; i < n; ++i) {
      base[i] = p.items[i][detail::cheapest(p.items[i])].cost;
      slack -= base[i];
    }
    // Exact path: integral extras whose gcd makes the table small enough.
    std::uint64_t g = 0;
    bool integral = true;
    for (std::size_t i = 0; i < n && integral; ++i)
      for (const auto& o : p.items[i]) {
        const double extra = o.cost - base[i];
        if (extra != std::floor(extra) || extra > 9e15) {
          integral = false;
          break;
        }
        g = std::gcd(g, static_cast<std::uint64_t>(extra));
      }
    std::vector<std::vector<std::uint64_t>> units(n);
    std::uint64_t capacity = 0;
    bool exact = false;
    if (integral) {
      if (g == 0) g = 1;
      const double cap = std::floor(slack / static_cast<double>(g));
      if ((cap + 1.0) * static_cast<double>(n) <= static_cast<double>(max_cells)) {
        exact = true;
        capacity = static_cast<std::uint64_t>(cap);
        for (std::size_t i = 0; i < n; ++i)
          for (const auto& o : p.items[i]) units[i].push_back(static_cast<std::uint64_t>(o.cost - base[i]) / g);
      }
    }
    if (!exact) {
      // Too large for an exact table: the Lagrangian solution (optimal for the budget it uses), then
      // greedy upgrades into the budget it left; proven optimal only when it meets the dual bound.
      allocation_result r = lagrangian_policy{}.allocate(p);
      greedy_policy::improve(p, r);
      r.proven_optimal = r.loss <= r.lower_bound + 1e-12 * std::max(1.0, std::fabs(r.lower_bound));
      return r;
    }
    const std::size_t width = static_cast<std::size_t>(capacity) + 1;
    // best[c]: least loss of the items so far with extra cost <= c; pick[i][c]: the option taken.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<double> best(width, 0.0), next(width);
    std::vector<std::uint8_t> pick(n * width);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& item = p.items[i];
      if (item.size() > 255) throw error(errc::invalid_argument, "knapsack: more than 255 options for one item");
      std::fill(next.begin(), next.end(), inf);
      for (std::size_t k = 0; k < item.size(); ++k) {
        const std::uint64_t u = units[i][k];
        if (u > capacity) continue;
        const double loss = item[k].loss;
        for (std::size_t c = static_cast<std::size_t>(u); c < width; ++c) {
          const double v = best[c - u] + loss;
          if (v < next[c]) {
            next[c] = v;
            pick[i * width + c] = static_cast<std::uint8_t>(k);
          }
        }
      }
      best.swap(next);
    }
    allocation_result r;
    r.choice.resize(n);
    std::size_t c = width - 1;
    for (std::size_t i = n; i-- > 0;) {
      const std::size_t k = pick[i * width + c];
      r.choice[i] = k;
      c -= static_cast<std::size_t>(units[i][k]);
    }
    evaluate(p, r);
    r.proven_optimal = true;
    r.lower_bound = r.loss;
    return r;
  }
};

// The seed's table as a policy: each item's class comes from its loss at its cheapest option (so the
// losses must be metric drops, e.g. from probe_layers, and the cheapest candidate the aggressive one);
// the class asks for a precision (high: 16 bits, medium: 8, low and insensitive: the cheapest option),
// and the item takes the cheapest option with at least that many bits. The budget is not looked at.
struct threshold_policy {
  class_thresholds thresholds{};
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    allocation_result r;
    r.choice.resize(p.items.size());
    for (std::size_t i = 0; i < p.items.size(); ++i) {
      const auto& item = p.items[i];
      const std::size_t base = detail::cheapest(item);
      const sensitivity_class c = classify(item[base].loss, thresholds);
      const int want = c == sensitivity_class::high ? 16 : c == sensitivity_class::medium ? 8 : 0;
      std::size_t pick = base;
      bool found = false;
      for (std::size_t k = 0; k < item.size(); ++k)
        if (item[k].bits >= want && (!found || item[k].cost < item[pick].cost)) {
          pick = k;
          found = true;
        }
      if (!found)  // nothing that precise: the most precise option there is
        for (std::size_t k = 0; k < item.size(); ++k)
          if (item[k].bits > item[pick].bits) pick = k;
      r.choice[i] = pick;
    }
    evaluate(p, r);
    return r;
  }
};

static_assert(AllocationPolicy<threshold_policy>);
static_assert(AllocationPolicy<greedy_policy> && AllocationPolicy<lagrangian_policy> &&
              AllocationPolicy<knapsack_policy>);

// The Pareto frontier of (cost, loss): `points` budgets swept evenly from the smallest to the largest
// reachable cost with the knapsack policy, dominated points removed (sorted by cost, loss strictly
// decreasing). Each point is optimal for its budget where the knapsack is exact.
struct pareto_point {
  double cost = 0.0;
  double loss = 0.0;
  std::vector<std::size_t> choice;
};
[[nodiscard]] inline std::vector<pareto_point> pareto_frontier(const allocation_problem& problem, int points = 64,
                                                               const knapsack_policy& solver = {}) {
  const auto [lo, hi] = cost_range(problem);
  std::vector<pareto_point> raw;
  for (int k = 0; k < points; ++k) {
    allocation_problem p = problem;
    p.budget = points == 1 ? hi : lo + (hi - lo) * static_cast<double>(k) / static_cast<double>(points - 1);
    const allocation_result r = solver.allocate(p);
    raw.push_back({r.cost, r.loss, r.choice});
  }
  std::sort(raw.begin(), raw.end(), [](const auto& a, const auto& b) {
    return a.cost < b.cost || (a.cost == b.cost && a.loss < b.loss);
  });
  std::vector<pareto_point> front;
  for (auto& pt : raw)
    if (front.empty() || pt.loss < front.back().loss) {
      if (!front.empty() && front.back().cost == pt.cost) continue;
      front.push_back(std::move(pt));
    }
  return front;
}

}  // namespace mixprec
