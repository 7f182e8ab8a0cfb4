// Allocation: the abstract problem every allocation policy solves, the AllocationPolicy concept, and
// the pieces the policies share (validation, the reachable range, Pareto-filtered options, the LP
// relaxation).
//
// The problem is a multiple-choice knapsack (MCKP): items (a layer, or a group of layers tied to one
// format), each with options (cost, loss); choose exactly one option per item so that the total loss is
// least with the total cost within the budget. Costs are in the constraint's units (bytes, bits, seconds);
// losses are the sensitivity source's predicted losses, assumed additive over layers.
//
// Notation used by the policies:
//   c_ik, l_ik    cost and loss of option k of item i;  B  the budget
//   hull_i        the lower convex hull of item i's options in the (cost, loss) plane
//   lambda        a Lagrange multiplier (loss per unit of cost); m_i = min_k (l_ik + lambda c_ik)
//   D(lambda)     = sum_i m_i - lambda B: for every lambda >= 0 a lower bound on the optimal loss
//                  (weak duality); its maximum is the LP relaxation's optimum.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"

namespace mixprec {

struct allocation_option {
  double cost = 0.0;  // in the constraint's units (bytes, bits, seconds)
  double loss = 0.0;  // predicted loss if this option is chosen
  int bits = 0;       // storage bits of one element of the option's format (threshold_policy reads it)
};

struct allocation_problem {
  std::vector<std::vector<allocation_option>> items;  // each item has 1..255 options
  double budget = std::numeric_limits<double>::infinity();
};

struct allocation_result {
  std::vector<std::size_t> choice;  // option index per item
  double cost = 0.0;
  double loss = 0.0;
  bool proven_optimal = false;  // no choice within the budget has a smaller loss (up to rounding)
  double lower_bound = -std::numeric_limits<double>::infinity();  // on the optimal loss, when known
  std::string solver;  // how the policy got there, e.g. "branch-and-bound", "table", "hull"
};

// An allocation policy: any type with `allocate(problem) -> allocation_result` (one choice per item).
// Policies that respect the budget throw mixprec::error(errc::infeasible) when nothing fits.
template <class P>
concept AllocationPolicy = requires(const P& p, const allocation_problem& problem) {
  { p.allocate(problem) } -> std::convertible_to<allocation_result>;
};

// Throws mixprec::error unless every item has 1..255 options with finite cost and loss and the budget
// is not NaN.
inline void validate(const allocation_problem& p) {
  if (std::isnan(p.budget)) throw error(errc::invalid_argument, "allocation: the budget is NaN");
  for (std::size_t i = 0; i < p.items.size(); ++i) {
    if (p.items[i].empty() || p.items[i].size() > 255)
      throw error(errc::invalid_argument, "allocation: item " + std::to_string(i) + " has " +
                                              std::to_string(p.items[i].size()) + " options, expected 1..255");
    for (const auto& o : p.items[i])
      if (!std::isfinite(o.cost) || !std::isfinite(o.loss))
        throw error(errc::non_finite, "allocation: item " + std::to_string(i) + " has a non-finite cost or loss");
  }
}

// Smallest and largest reachable total cost.
[[nodiscard]] inline std::pair<double, double> cost_range(const allocation_problem& p) {
  validate(p);
  double lo = 0.0, hi = 0.0;
  for (const auto& item : p.items) {
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

// Fills cost and loss of a result from its choices (summed in item order).
inline void sum_choices(const allocation_problem& p, allocation_result& r) {
  r.cost = r.loss = 0.0;
  for (std::size_t i = 0; i < p.items.size(); ++i) {
    r.cost += p.items[i][r.choice[i]].cost;
    r.loss += p.items[i][r.choice[i]].loss;
  }
}

namespace detail {
// A number as messages show it (up to 10 significant digits, no trailing zeros).
[[nodiscard]] inline std::string format_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}
}  // namespace detail

// Throws errc::infeasible when no choice fits the budget, stating the reachable range.
inline void check_feasible(const allocation_problem& p) {
  const auto [lo, hi] = cost_range(p);
  if (p.budget < lo)
    throw error(errc::infeasible, "allocation: budget " + detail::format_number(p.budget) +
                                      " is below the smallest reachable cost " + detail::format_number(lo) +
                                      " (largest reachable: " + detail::format_number(hi) + ")");
}

namespace detail {

// Item i's useful options: sorted by cost, loss strictly decreasing (an option that costs at least as
// much as another and loses no less is never needed, except as a tie, which keeps the first index).
[[nodiscard]] inline std::vector<std::size_t> pareto_options(const std::vector<allocation_option>& item) {
  std::vector<std::size_t> order(item.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return item[a].cost < item[b].cost || (item[a].cost == item[b].cost && item[a].loss < item[b].loss);
  });
  std::vector<std::size_t> out;
  for (std::size_t k : order)
    if (out.empty() || item[k].loss < item[out.back()].loss) {
      if (!out.empty() && item[k].cost == item[out.back()].cost) continue;
      out.push_back(k);
    }
  return out;
}

// Loss saved per unit of extra cost from option a to option b (b costs more, loses less).
[[nodiscard]] inline double efficiency(const allocation_option& a, const allocation_option& b) noexcept {
  return (a.loss - b.loss) / (b.cost - a.cost);
}

// The lower convex hull of Pareto options `front` (as pareto_options returns): efficiencies strictly
// decreasing along the hull. Computed with efficiency() itself, so the order the LP relies on holds for
// the rounded numbers too.
[[nodiscard]] inline std::vector<std::size_t> lower_hull(const std::vector<allocation_option>& item,
                                                         const std::vector<std::size_t>& front) {
  std::vector<std::size_t> h;
  for (std::size_t k : front) {
    while (h.size() >= 2 &&
           efficiency(item[h[h.size() - 2]], item[h.back()]) <= efficiency(item[h.back()], item[k]))
      h.pop_back();
    h.push_back(k);
  }
  return h;
}

// The LP relaxation (Dyer, Zemel; Sinha and Zoltners): every item starts at its hull's cheapest vertex,
// then hull segments are taken in order of decreasing efficiency while they fit. The first segment that
// does not fit is the fractional one; its efficiency is the optimal multiplier lambda (0 when all fit).
struct lp_relaxation {
  double lambda = 0.0;
  double lower_bound = 0.0;         // D(lambda): the LP optimum, a lower bound on the optimal loss
  std::vector<std::size_t> choice;  // the LP's integer part: a hull vertex per item
  std::vector<double> min_value;    // m_i = min_k (l_ik + lambda c_ik)
};

[[nodiscard]] inline lp_relaxation solve_lp(const allocation_problem& p,
                                            const std::vector<std::vector<std::size_t>>& front) {
  const std::size_t n = p.items.size();
  struct segment {
    double efficiency, extra;
    std::size_t item, to;
  };
  std::vector<segment> segments;
  lp_relaxation lp;
  lp.choice.resize(n);
  double cost = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& item = p.items[i];
    const std::vector<std::size_t> h = lower_hull(item, front[i]);
    lp.choice[i] = h[0];
    cost += item[h[0]].cost;
    for (std::size_t j = 1; j < h.size(); ++j)
      segments.push_back({efficiency(item[h[j - 1]], item[h[j]]), item[h[j]].cost - item[h[j - 1]].cost, i, h[j]});
  }
  // Within an item efficiencies decrease strictly, so a stable sort keeps each item's segments in order.
  std::stable_sort(segments.begin(), segments.end(),
                   [](const segment& a, const segment& b) { return a.efficiency > b.efficiency; });
  for (const segment& s : segments) {
    if (cost + s.extra > p.budget) {
      lp.lambda = s.efficiency;
      break;
    }
    cost += s.extra;
    lp.choice[s.item] = s.to;
  }
  lp.min_value.resize(n);
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    double m = std::numeric_limits<double>::infinity();
    for (const auto& o : p.items[i]) m = std::min(m, o.loss + lp.lambda * o.cost);
    lp.min_value[i] = m;
    sum += m;
  }
  lp.lower_bound = lp.lambda > 0.0 ? sum - lp.lambda * p.budget : sum;
  return lp;
}

// Magnitude of the sums the solvers form (for rounding tolerances).
[[nodiscard]] inline double loss_scale(const allocation_problem& p, double lambda) {
  double s = 0.0;
  for (const auto& item : p.items) {
    double m = 0.0;
    for (const auto& o : item) m = std::max(m, std::fabs(o.loss) + lambda * std::fabs(o.cost));
    s += m;
  }
  return s;
}

// Whether loss a is within rounding of loss b (or below it).
[[nodiscard]] inline bool loss_at_most(double a, double b, double scale) noexcept {
  return a <= b + 1e-12 * std::max(scale, std::fabs(b));
}

}  // namespace detail

}  // namespace mixprec
