// knapsack_policy (the default): the exact multiple-choice knapsack. Minimises the total loss with the
// total cost within the budget; among choices of equal loss it returns the cheapest.
//
// Two exact methods:
// - branch and bound with reduced-cost fixing (any real costs: bytes, bits, seconds). From the LP
//   relaxation (multiplier lambda, bound LB) every option gets a reduced cost
//   r_ik = l_ik + lambda c_ik - m_i >= 0, and every choice x within the budget satisfies
//   loss(x) >= LB + sum_i r_i(x). With an incumbent of loss U (the LP's integer part plus greedy
//   upgrades), a better choice can only use options with r_ik <= U - LB: usually one per item, so most
//   items are fixed at once. The few left are enumerated as a list of partial choices (cost, loss) kept
//   Pareto-minimal (a partial choice costing more and losing no less than another cannot complete
//   better) and cut as soon as their reduced cost exceeds the gap, or a Lagrangian bound on the items
//   still to come, given the budget they have left, shows they cannot beat U (Nemhauser-Ullmann states
//   with bounds, as in Pisinger's MCKP algorithm). Completing states with each remaining item's
//   Lagrangian option improves U on the way. Exact: nothing that could beat U is cut.
// - dynamic programming over the cost axis (`table`): exact when costs are integers (bytes are; bits
//   are 8 x bytes), on a table of (items) x (unspent budget / gcd of the cost steps + 1) cells.
//   Pseudo-polynomial: used when it fits `max_cells`.
// `automatic` runs branch and bound; if its state list outgrows `max_states` (adversarial instances:
// losses almost exactly proportional to cost, a subset-sum in disguise), the table when it fits;
// otherwise it returns its incumbent with proven_optimal = false and the LP lower bound (never
// silently: the result says so). Measured sensitivities are far from that: see benchmarks/plan_bench.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string_view>
#include <vector>

#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/greedy.hpp"

namespace mixprec {

namespace detail {

// Exact DP over the gcd-reduced integer cost axis; std::nullopt when costs are not integral or the
// table would exceed max_cells.
[[nodiscard]] inline std::optional<allocation_result> knapsack_table(const allocation_problem& p,
                                                                     const std::vector<std::vector<std::size_t>>& front,
                                                                     std::size_t max_cells) {
  const std::size_t n = p.items.size();
  // Extra cost above each item's cheapest option: the table spans only the unspent budget.
  double slack = p.budget, reach = 0.0;
  std::uint64_t g = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& item = p.items[i];
    const double base = item[front[i][0]].cost;
    slack -= base;
    for (std::size_t k : front[i]) {
      const double extra = item[k].cost - base;
      if (extra != std::floor(extra) || extra > 9.0e15) return std::nullopt;
      g = std::gcd(g, static_cast<std::uint64_t>(extra));
    }
    reach += item[front[i].back()].cost - base;
  }
  if (g == 0) g = 1;
  // (slack can come out a hair below 0 when the budget is the smallest reachable cost, summed in another order)
  const double cap = std::floor(std::max(0.0, std::min(slack, reach)) / static_cast<double>(g));
  if ((cap + 1.0) * static_cast<double>(n) > static_cast<double>(max_cells)) return std::nullopt;
  const auto capacity = static_cast<std::size_t>(cap);
  const std::size_t width = capacity + 1;
  // best[c]: least loss of the items so far with extra cost <= c units; pick[i][c]: the option taken.
  std::vector<double> best(width, 0.0), next(width);
  std::vector<std::uint8_t> pick(n * width);
  std::vector<std::size_t> units;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& item = p.items[i];
    const double base = item[front[i][0]].cost;
    std::fill(next.begin(), next.end(), std::numeric_limits<double>::infinity());
    for (std::size_t j = 0; j < front[i].size(); ++j) {
      const auto u = static_cast<std::size_t>(static_cast<std::uint64_t>(item[front[i][j]].cost - base) / g);
      if (u > capacity) break;  // Pareto options are sorted by cost
      const double loss = item[front[i][j]].loss;
      std::uint8_t* row = pick.data() + i * width;
      for (std::size_t c = u; c < width; ++c) {
        const double v = best[c - u] + loss;
        if (v < next[c]) {
          next[c] = v;
          row[c] = static_cast<std::uint8_t>(j);
        }
      }
    }
    best.swap(next);
  }
  // The cheapest column that reaches the least loss (best is non-increasing in c).
  const double scale = loss_scale(p, 0.0);
  std::size_t c = 0;
  while (!loss_at_most(best[c], best[capacity], scale)) ++c;
  allocation_result r;
  r.choice.resize(n);
  for (std::size_t i = n; i-- > 0;) {
    const std::size_t j = pick[i * width + c];
    r.choice[i] = front[i][j];
    const double base = p.items[i][front[i][0]].cost;
    c -= static_cast<std::size_t>(static_cast<std::uint64_t>(p.items[i][front[i][j]].cost - base) / g);
  }
  sum_choices(p, r);
  r.proven_optimal = true;
  r.lower_bound = r.loss;
  r.solver = "table";
  return r;
}

// Branch and bound with reduced-cost fixing (see the banner). Returns the best choice found; sets
// `complete` to false when the state list outgrew max_states (the result is then the incumbent).
[[nodiscard]] inline allocation_result knapsack_branch_and_bound(const allocation_problem& p,
                                                                 const std::vector<std::vector<std::size_t>>& front,
                                                                 std::size_t max_states, bool& complete) {
  complete = true;
  const std::size_t n = p.items.size();
  const lp_relaxation lp = solve_lp(p, front);
  const double lambda = lp.lambda, lb = lp.lower_bound;
  const double scale = loss_scale(p, lambda);
  const double tol = 1e-10 * scale;  // rounding allowance: cuts only what is worse by more than this

  allocation_result best;
  best.choice = lp.choice;
  sum_choices(p, best);
  greedy_fill(p, front, best);
  best.lower_bound = lb;
  best.solver = "branch-and-bound";
  if (loss_at_most(best.loss, lb, scale)) {  // the incumbent meets the bound
    best.proven_optimal = true;
    return best;
  }

  // Less loss, or the same loss (up to rounding) for less cost.
  const double tie = 1e-12 * scale;
  auto improves = [&](double loss, double cost) {
    return loss < best.loss - tie || (loss <= best.loss + tie && cost < best.cost);
  };
  auto reduced = [&](std::size_t i, std::size_t k) { return p.items[i][k].loss + lambda * p.items[i][k].cost - lp.min_value[i]; };
  // Options that could be part of a choice beating the incumbent: reduced cost within the gap.
  double gap = best.loss - lb;
  std::vector<std::size_t> free_items;
  std::vector<std::vector<std::size_t>> eligible(n);
  double fixed_cost = 0.0, fixed_loss = 0.0;
  std::vector<std::size_t> fixed_choice(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k : front[i])
      if (reduced(i, k) <= gap + tol) eligible[i].push_back(k);
    if (eligible[i].size() == 1) {
      fixed_choice[i] = eligible[i][0];
      fixed_cost += p.items[i][eligible[i][0]].cost;
      fixed_loss += p.items[i][eligible[i][0]].loss;
    } else {
      free_items.push_back(i);
    }
  }
  const std::size_t m = free_items.size();
  // Per free item (in processing order): the cheapest eligible cost, and its Lagrangian option (least
  // reduced cost, then cheapest) for completing partial choices; suffix sums over the items not yet taken.
  std::vector<double> suffix_min_cost(m + 1, 0.0), suffix_lagr_cost(m + 1, 0.0), suffix_lagr_loss(m + 1, 0.0);
  std::vector<std::size_t> lagr(m);
  for (std::size_t j = m; j-- > 0;) {
    const std::size_t i = free_items[j];
    std::size_t a = eligible[i][0];
    for (std::size_t k : eligible[i])
      if (reduced(i, k) < reduced(i, a)) a = k;
    lagr[j] = a;
    suffix_min_cost[j] = suffix_min_cost[j + 1] + p.items[i][eligible[i][0]].cost;
    suffix_lagr_cost[j] = suffix_lagr_cost[j + 1] + p.items[i][a].cost;
    suffix_lagr_loss[j] = suffix_lagr_loss[j + 1] + p.items[i][a].loss;
  }

  // A bound on the loss the items not yet taken add, given the budget they have left (S): by weak
  // duality, for every mu >= 0, sum_rest min_k (l + mu c) - mu S; taken as the best over a grid of
  // multipliers (lambda and the slopes of the free items' hulls, their quantiles when many), each with a
  // rounding allowance for its mu x cost terms. At mu = lambda it is the reduced-cost bound; the others
  // cut partial choices that spent unusually little or much.
  std::vector<double> mus;
  for (std::size_t i : free_items) {
    const std::vector<std::size_t> h = lower_hull(p.items[i], eligible[i]);
    for (std::size_t t = 1; t < h.size(); ++t) mus.push_back(efficiency(p.items[i][h[t - 1]], p.items[i][h[t]]));
  }
  std::sort(mus.begin(), mus.end());
  mus.erase(std::unique(mus.begin(), mus.end()), mus.end());
  constexpr std::size_t max_mus = 24;
  if (mus.size() > max_mus) {
    std::vector<double> q;
    for (std::size_t t = 0; t < max_mus; ++t) q.push_back(mus[t * (mus.size() - 1) / (max_mus - 1)]);
    mus.swap(q);
  }
  mus.push_back(lambda);
  const std::size_t nm = mus.size();
  double cost_scale = std::fabs(p.budget);
  for (const auto& item : p.items) {
    double c = 0.0;
    for (const auto& o : item) c = std::max(c, std::fabs(o.cost));
    cost_scale += c;
  }
  std::vector<double> slack(nm);  // per mu: what rounding could take off the bound
  for (std::size_t t = 0; t < nm; ++t) slack[t] = tol + 1e-12 * mus[t] * cost_scale;
  std::vector<double> rest(nm * (m + 1), 0.0);  // rest[j nm + t] = sum over free items j.. of min_k (l + mu_t c)
  for (std::size_t j = m; j-- > 0;) {
    const std::size_t i = free_items[j];
    for (std::size_t t = 0; t < nm; ++t) {
      double v = std::numeric_limits<double>::infinity();
      for (std::size_t k : eligible[i]) v = std::min(v, p.items[i][k].loss + mus[t] * p.items[i][k].cost);
      rest[j * nm + t] = rest[(j + 1) * nm + t] + v;
    }
  }
  // Least loss free items j.. can add when `spent` of the free budget is gone.
  auto rest_bound = [&](std::size_t j, double spent) {
    const double left = p.budget - fixed_cost - spent;
    double b = -std::numeric_limits<double>::infinity();
    for (std::size_t t = 0; t < nm; ++t) b = std::max(b, rest[j * nm + t] - mus[t] * left - slack[t]);
    return b;
  };

  struct state {
    double cost, loss, reduced;
    std::uint32_t parent;
    std::uint8_t option;  // index into eligible[free_items[stage]]
  };
  std::vector<std::vector<state>> stages(m + 1);
  stages[0].push_back({0.0, 0.0, 0.0, 0, 0});
  // Where the incumbent came from: -1 the initial one; else completion of stages[stage][index].
  long incumbent_stage = -1;
  std::size_t incumbent_index = 0;
  std::size_t total_states = 1;
  std::vector<std::size_t> head, passed;
  for (std::size_t j = 0; j < m; ++j) {
    const std::size_t i = free_items[j];
    const auto& options = eligible[i];
    const auto& prev = stages[j];
    auto& next = stages[j + 1];
    // Merge the lists prev + option e (each sorted by cost, as prev is) in cost order, keeping only
    // Pareto-minimal states: memory stays at what is kept.
    head.assign(options.size(), 0);
    passed.assign(options.size(), prev.size());
    double last_loss = std::numeric_limits<double>::infinity();
    for (;;) {
      std::size_t pick = options.size();
      double pick_cost = 0.0, pick_loss = 0.0;
      for (std::size_t e = 0; e < options.size(); ++e) {
        const auto& o = p.items[i][options[e]];
        const double r = reduced(i, options[e]);
        while (head[e] < prev.size() && passed[e] != head[e]) {
          const state& st = prev[head[e]];
          if (fixed_cost + st.cost + o.cost + suffix_min_cost[j + 1] > p.budget) {
            head[e] = prev.size();  // so does every later (costlier) state
          } else if (st.reduced + r > gap + tol ||
                     fixed_loss + st.loss + o.loss + rest_bound(j + 1, st.cost + o.cost) > best.loss) {
            ++head[e];  // cannot beat the incumbent
          } else {
            passed[e] = head[e];  // checked once, not again while it waits to be merged
            break;
          }
        }
        if (head[e] == prev.size()) continue;
        const double cost = prev[head[e]].cost + o.cost, loss = prev[head[e]].loss + o.loss;
        if (pick == options.size() || cost < pick_cost || (cost == pick_cost && loss < pick_loss)) {
          pick = e;
          pick_cost = cost;
          pick_loss = loss;
        }
      }
      if (pick == options.size()) break;
      const std::size_t s = head[pick]++;
      if (pick_loss < last_loss) {
        next.push_back({pick_cost, pick_loss, prev[s].reduced + reduced(i, options[pick]),
                        static_cast<std::uint32_t>(s), static_cast<std::uint8_t>(pick)});
        last_loss = pick_loss;
      }
    }
    total_states += next.size();
    if (total_states > max_states) {
      complete = false;
      break;
    }
    // Complete each state with the Lagrangian options of the items left: a better incumbent narrows the gap.
    for (std::size_t s = 0; s < next.size(); ++s) {
      const double cost = fixed_cost + next[s].cost + suffix_lagr_cost[j + 1];
      const double loss = fixed_loss + next[s].loss + suffix_lagr_loss[j + 1];
      if (cost <= p.budget && improves(loss, cost)) {
        best.loss = loss;
        best.cost = cost;
        incumbent_stage = static_cast<long>(j + 1);
        incumbent_index = s;
      }
    }
    gap = best.loss - lb;
  }

  // Rebuilds a choice from stages[stage][index], completing with Lagrangian options.
  auto rebuild = [&](std::size_t stage, std::size_t index) {
    std::vector<std::size_t> choice = fixed_choice;
    for (std::size_t j = stage; j < m; ++j) choice[free_items[j]] = lagr[j];
    for (std::size_t j = stage; j-- > 0;) {
      const state& st = stages[j + 1][index];
      choice[free_items[j]] = eligible[free_items[j]][st.option];
      index = st.parent;
    }
    return choice;
  };
  if (complete) {  // the final states are every candidate left: the best of them or the incumbent
    const auto& last = stages[m];
    std::size_t arg = last.size();
    for (std::size_t s = 0; s < last.size(); ++s) {
      const double loss = fixed_loss + last[s].loss;
      if (fixed_cost + last[s].cost <= p.budget && improves(loss, fixed_cost + last[s].cost)) {
        best.loss = loss;
        best.cost = fixed_cost + last[s].cost;
        arg = s;
      }
    }
    if (arg != last.size()) {
      incumbent_stage = static_cast<long>(m);
      incumbent_index = arg;
    }
  }
  if (incumbent_stage >= 0) best.choice = rebuild(static_cast<std::size_t>(incumbent_stage), incumbent_index);
  sum_choices(p, best);
  best.proven_optimal = complete;
  return best;
}

}  // namespace detail

// See the banner.
struct knapsack_policy {
  static constexpr std::string_view name = "knapsack";
  enum class method { automatic, branch_and_bound, table };

  method use = method::automatic;
  std::size_t max_states = std::size_t{1} << 21;  // branch and bound: partial choices kept (32 bytes each)
  std::size_t max_cells = std::size_t{1} << 26;   // table: items x budget steps (one byte each)

  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    check_feasible(p);
    const auto front = detail::pareto_fronts(p);
    if (use == method::table) {
      if (auto r = detail::knapsack_table(p, front, max_cells)) return *r;
      throw error(errc::unsupported, "knapsack table: the costs are not integers or the table would exceed " +
                                         std::to_string(max_cells) + " cells");
    }
    bool complete = false;
    allocation_result r = detail::knapsack_branch_and_bound(p, front, max_states, complete);
    if (complete || use == method::branch_and_bound) return r;
    if (auto t = detail::knapsack_table(p, front, max_cells)) return *t;
    r.solver = "branch-and-bound (gave up: state limit)";
    return r;
  }
};

static_assert(AllocationPolicy<knapsack_policy>);

}  // namespace mixprec
