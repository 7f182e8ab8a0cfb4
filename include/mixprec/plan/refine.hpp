// refine_allocation: improves an allocation by the loss of the whole model, measured, not summed.
//
// A plan's predicted loss adds one-layer losses; the model's real loss does not add up (layers interact,
// and each one-layer measurement is noisy), so the least predicted loss is not always the least real
// loss. This is the search of EvoPress (Sieberling, Kuznedelev, Kurtic, Alistarh, "EvoPress: Accurate
// Dynamic Model Compression via Evolutionary Search", ICML 2025): a (1 + lambda) evolutionary search
// from a start allocation, with the measured loss of the whole model as fitness.
//   mutation   level switch: one item moves one option up (its options ordered by cost), then items
//              chosen at random move one option down until the total cost is within the budget again
//              (or, half the time, the other way round: one down, then one up if it fits); 1 to 3 such
//              switches per offspring (1 with probability 1/2, 2 and 3 with 1/4 each). EvoPress picks the
//              items uniformly; here a share `guided` of the picks (default 1/2) follow the predicted
//              losses instead: among the items that can move, the k-th best by predicted loss gained
//              (up) or least given away (down) per unit of cost is picked with weight 1/k, so that
//              evaluations go to the swaps the prediction cannot tell apart rather than to ones it rules
//              out by far (a plan at the knapsack's optimum has no swap that the prediction favours).
//   selection  multi-step: `offspring` children of the parent are scored at stage 0 (the cheapest
//              fitness, e.g. the fewest tokens), the best survivors[0] of them at stage 1, and so on;
//              the best at the last stage (survivors.size()) replaces the parent only when its fitness
//              there is lower than the parent's at that same stage. The result is never worse than the
//              start at the last stage's fitness.
// The fitness is any callable fitness(choice, stage) -> double (lower is better; stage in
// [0, survivors.size()]); it is called with allocations within the budget only. The search is
// deterministic for a seed and a generation count; a time budget stops it after the generation that
// crosses it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/plan/allocation.hpp"

namespace mixprec {

struct refine_options {
  double seconds = std::numeric_limits<double>::infinity();        // wall-clock budget (steady_clock)
  std::size_t generations = std::numeric_limits<std::size_t>::max();  // at most this many generations
  std::size_t offspring = 16;                // lambda: children per generation, scored at stage 0
  std::vector<std::size_t> survivors{4, 1};  // kept after stage 0, 1, ...: decreasing, the last one 1
  double guided = 0.5;                       // share of moves chosen by the predicted losses, not uniformly
  std::uint64_t seed = 1;                    // of the mutations (std::mt19937_64)
};

struct refine_result {
  std::vector<std::size_t> choice;  // option index per item, within the budget
  double cost = 0.0;                // of the choice (sum_choices)
  double start_fitness = 0.0;       // of the start allocation, at the last stage
  double fitness = 0.0;             // of the result, at the last stage (<= start_fitness)
  std::size_t generations = 0;      // run
  std::size_t accepted = 0;         // generations whose best child replaced the parent
  std::vector<std::size_t> evaluations;  // fitness calls per stage
  double seconds = 0.0;             // wall clock spent
};

// A fitness for refine_allocation: the whole model's loss of an allocation at a selection stage.
template <class F>
concept AllocationFitness = requires(F& f, const std::vector<std::size_t>& choice, std::size_t stage) {
  { f(choice, stage) } -> std::convertible_to<double>;
};

namespace detail {

// Each item's options ordered by cost (ties: lower loss first, then index); rank[i][k] is option k's
// place in order[i].
struct cost_ladder {
  std::vector<std::vector<std::size_t>> order, rank;

  explicit cost_ladder(const allocation_problem& p) {
    for (const auto& item : p.items) {
      auto& o = order.emplace_back(item.size());
      for (std::size_t k = 0; k < o.size(); ++k) o[k] = k;
      std::stable_sort(o.begin(), o.end(), [&](std::size_t a, std::size_t b) {
        return item[a].cost < item[b].cost || (item[a].cost == item[b].cost && item[a].loss < item[b].loss);
      });
      auto& r = rank.emplace_back(item.size());
      for (std::size_t j = 0; j < o.size(); ++j) r[o[j]] = j;
    }
  }
};

// The total cost of a choice (one option index per item).
[[nodiscard]] inline double choice_cost(const allocation_problem& p, const std::vector<std::size_t>& choice) {
  double cost = 0.0;
  for (std::size_t i = 0; i < choice.size(); ++i) cost += p.items[i][choice[i]].cost;
  return cost;
}

// One child of `parent` by level switches (see the banner), or the parent itself when no switch could
// be made within the budget.
[[nodiscard]] inline std::vector<std::size_t> mutate(const allocation_problem& p, const cost_ladder& ladder,
                                                     const std::vector<std::size_t>& parent, double guided, std::mt19937_64& rng) {
  std::vector<std::size_t> child = parent;
  const std::size_t n = p.items.size();
  double cost = choice_cost(p, child);
  auto step = [&](std::size_t i, int dir) {  // one option up (+1) or down (-1) the item's cost ladder
    const std::size_t r = ladder.rank[i][child[i]];
    const std::size_t to = ladder.order[i][dir > 0 ? r + 1 : r - 1];
    cost += p.items[i][to].cost - p.items[i][child[i]].cost;
    child[i] = to;
  };
  auto can = [&](std::size_t i, int dir) {
    const std::size_t r = ladder.rank[i][child[i]];
    return dir > 0 ? r + 1 < ladder.order[i].size() : r > 0;
  };
  auto pick = [&](int dir, const std::set<std::size_t>& not_these, double fits_within) -> std::size_t {
    std::vector<std::size_t> ok;
    for (std::size_t i = 0; i < n; ++i)
      if (!not_these.count(i) && can(i, dir)) {
        if (dir > 0) {
          const std::size_t up = ladder.order[i][ladder.rank[i][child[i]] + 1];
          if (cost + p.items[i][up].cost - p.items[i][child[i]].cost > fits_within) continue;
        }
        ok.push_back(i);
      }
    if (ok.empty()) return n;
    if (!std::bernoulli_distribution(guided)(rng)) return ok[std::uniform_int_distribution<std::size_t>(0, ok.size() - 1)(rng)];
    // Guided: by the predicted loss per unit of cost the move gains (up) or gives away (down), the k-th
    // most promising with weight 1/k.
    auto per_cost = [&](std::size_t i) {
      const std::size_t r = ladder.rank[i][child[i]];
      const std::size_t to = ladder.order[i][dir > 0 ? r + 1 : r - 1];
      const double dl = p.items[i][child[i]].loss - p.items[i][to].loss, dc = std::abs(p.items[i][to].cost - p.items[i][child[i]].cost);
      if (dc > 0.0) return dl / dc;  // up: the loss gained; down: minus the loss given away
      return dl > 0.0 ? std::numeric_limits<double>::infinity() : dl < 0.0 ? -std::numeric_limits<double>::infinity() : 0.0;
    };
    std::vector<std::pair<double, std::size_t>> ranked;  // the most promising first, either way
    for (std::size_t i : ok) ranked.emplace_back(-per_cost(i), i);
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<double> weight(ranked.size());
    for (std::size_t k = 0; k < weight.size(); ++k) weight[k] = 1.0 / static_cast<double>(k + 1);
    return ranked[std::discrete_distribution<std::size_t>(weight.begin(), weight.end())(rng)].second;
  };
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const int switches = u < 0.5 ? 1 : u < 0.75 ? 2 : 3;
  const double inf = std::numeric_limits<double>::infinity();
  for (int s = 0; s < switches; ++s) {
    std::vector<std::size_t> before = child;
    const double cost_before = cost;
    std::set<std::size_t> moved;
    if (std::bernoulli_distribution(0.5)(rng)) {  // up, then down until it fits
      const std::size_t i = pick(+1, {}, inf);
      if (i == n) continue;
      step(i, +1);
      moved.insert(i);
      while (cost > p.budget) {
        const std::size_t j = pick(-1, moved, inf);
        if (j == n) break;
        step(j, -1);
      }
    } else {  // down, then up where it fits
      const std::size_t i = pick(-1, {}, inf);
      if (i == n) continue;
      step(i, -1);
      moved.insert(i);
      if (const std::size_t j = pick(+1, moved, p.budget); j != n) step(j, +1);
    }
    if (cost > p.budget) child = std::move(before), cost = cost_before;  // no switch that fits
  }
  return child;
}

}  // namespace detail

// The search of the banner from `start` (one option index per item, within the budget). Throws
// errc::invalid_argument for a start that is no valid choice or exceeds the budget, or for options with
// offspring 0, survivors not decreasing to 1 or a guided share outside [0, 1]; errc::non_finite when the fitness is NaN or infinite;
// whatever the fitness throws.
template <AllocationFitness Fitness>
[[nodiscard]] refine_result refine_allocation(const allocation_problem& p, std::vector<std::size_t> start, Fitness&& fitness,
                                              const refine_options& o = {}) {
  validate(p);
  if (start.size() != p.items.size())
    throw error(errc::invalid_argument, "refine: the start has " + std::to_string(start.size()) + " choices for " +
                                            std::to_string(p.items.size()) + " items");
  for (std::size_t i = 0; i < start.size(); ++i)
    if (start[i] >= p.items[i].size())
      throw error(errc::invalid_argument, "refine: the start chooses option " + std::to_string(start[i]) + " of item " + std::to_string(i) +
                                              ", which has " + std::to_string(p.items[i].size()));
  if (o.offspring == 0 || o.survivors.empty() || o.survivors.back() != 1 || o.survivors.front() > o.offspring ||
      std::adjacent_find(o.survivors.begin(), o.survivors.end(), std::less_equal<>()) != o.survivors.end())
    throw error(errc::invalid_argument, "refine: survivors must fall strictly from at most the offspring (" + std::to_string(o.offspring) +
                                            ") to 1");
  if (std::isnan(o.seconds)) throw error(errc::invalid_argument, "refine: the time budget is NaN");
  if (!(o.guided >= 0.0 && o.guided <= 1.0))
    throw error(errc::invalid_argument, "refine: the guided share " + detail::format_number(o.guided) + " is not in [0, 1]");
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  const std::size_t stages = o.survivors.size() + 1;
  refine_result r;
  r.evaluations.assign(stages, 0);
  auto score = [&](const std::vector<std::size_t>& c, std::size_t stage) {
    ++r.evaluations[stage];
    const double f = static_cast<double>(fitness(std::as_const(c), stage));
    if (!std::isfinite(f)) throw error(errc::non_finite, "refine: the fitness of an allocation at stage " + std::to_string(stage) + " is " +
                                                             detail::format_number(f));
    return f;
  };
  r.choice = std::move(start);
  r.cost = detail::choice_cost(p, r.choice);
  if (r.cost > p.budget)
    throw error(errc::invalid_argument, "refine: the start costs " + detail::format_number(r.cost) + ", over the budget of " +
                                            detail::format_number(p.budget));
  r.start_fitness = r.fitness = score(r.choice, stages - 1);
  const detail::cost_ladder ladder(p);
  std::mt19937_64 rng(o.seed);
  while (r.generations < o.generations && elapsed() < o.seconds) {
    ++r.generations;
    std::set<std::vector<std::size_t>> seen{r.choice};
    std::vector<std::vector<std::size_t>> children;
    for (std::size_t k = 0; k < o.offspring * 4 && children.size() < o.offspring; ++k)  // distinct children, if there are
      if (auto c = detail::mutate(p, ladder, r.choice, o.guided, rng); seen.insert(c).second) children.push_back(std::move(c));
    if (children.empty()) break;  // nothing within the budget differs from the parent
    std::vector<std::pair<double, std::size_t>> ranked;  // (fitness, child)
    for (std::size_t k = 0; k < children.size(); ++k) ranked.emplace_back(0.0, k);
    for (std::size_t stage = 0; stage < stages; ++stage) {
      for (auto& [f, k] : ranked) f = score(children[k], stage);
      std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      if (stage + 1 < stages) ranked.resize(std::min(ranked.size(), o.survivors[stage]));
    }
    if (ranked.front().first < r.fitness) {
      r.choice = children[ranked.front().second];
      r.fitness = ranked.front().first;
      ++r.accepted;
    }
  }
  r.cost = detail::choice_cost(p, r.choice);
  r.seconds = elapsed();
  return r;
}

}  // namespace mixprec
