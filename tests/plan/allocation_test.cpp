// Allocation policies: brute-force optimality on random small instances, ordering of the policies,
// Pareto frontier properties, infeasible budgets.
#include <catch2/catch.hpp>

#include <random>

#include "mixprec/plan/allocation.hpp"

using namespace mixprec;

namespace {

allocation_problem random_problem(std::mt19937& gen, int items, int options, bool integral) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  allocation_problem p;
  double min_cost = 0.0, max_cost = 0.0;
  for (int i = 0; i < items; ++i) {
    std::vector<allocation_option> item;
    double lo = 1e300, hi = 0.0;
    for (int k = 0; k < options; ++k) {
      const double cost = integral ? std::floor(1.0 + 100.0 * u(gen)) * 16.0 : 1.0 + 100.0 * u(gen);
      item.push_back({cost, 10.0 * u(gen) * u(gen), 4 << (k % 3)});
      lo = std::min(lo, cost);
      hi = std::max(hi, cost);
    }
    min_cost += lo;
    max_cost += hi;
    p.items.push_back(item);
  }
  p.budget = min_cost + (max_cost - min_cost) * u(gen);
  return p;
}

// The optimal loss by enumeration.
double brute_force(const allocation_problem& p) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> c(p.items.size(), 0);
  for (;;) {
    double cost = 0.0, loss = 0.0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      cost += p.items[i][c[i]].cost;
      loss += p.items[i][c[i]].loss;
    }
    if (cost <= p.budget) best = std::min(best, loss);
    std::size_t i = 0;
    while (i < c.size() && ++c[i] == p.items[i].size()) c[i++] = 0;
    if (i == c.size()) return best;
  }
}

}  // namespace

TEST_CASE("knapsack is optimal on random small instances (brute force)", "[plan][knapsack]") {
  std::mt19937 gen(11);
  for (int trial = 0; trial < 300; ++trial) {
    const bool integral = trial % 2 == 0;
    const allocation_problem p = random_problem(gen, 2 + trial % 6, 2 + trial % 4, integral);
    const double opt = brute_force(p);
    const allocation_result k = knapsack_policy{}.allocate(p);
    INFO("trial " << trial);
    REQUIRE(k.cost <= p.budget);
    if (integral) {  // byte-like costs: the exact path
      REQUIRE(k.proven_optimal);
      REQUIRE(k.loss == Approx(opt).margin(1e-12));
    } else {  // real costs: Lagrangian + greedy; within budget, never below the optimum, bound holds
      REQUIRE(k.loss >= opt - 1e-9);
      REQUIRE(k.lower_bound <= opt + 1e-9);
      if (k.proven_optimal) REQUIRE(k.loss == Approx(opt).margin(1e-9));
    }
    // Never worse than greedy or the Lagrangian at the same budget.
    const allocation_result g = greedy_policy{}.allocate(p);
    const allocation_result l = lagrangian_policy{}.allocate(p);
    REQUIRE(g.cost <= p.budget);
    REQUIRE(l.cost <= p.budget);
    if (integral) {
      REQUIRE(k.loss <= g.loss + 1e-12);
      REQUIRE(k.loss <= l.loss + 1e-12);
    }
    REQUIRE(l.lower_bound <= opt + 1e-9);  // the dual bound is a bound
    if (l.proven_optimal) REQUIRE(l.loss == Approx(opt).margin(1e-9));
  }
}

TEST_CASE("knapsack falls back to Lagrangian + greedy on huge tables and says so", "[plan][knapsack]") {
  std::mt19937 gen(5);
  allocation_problem p = random_problem(gen, 8, 4, true);
  for (auto& item : p.items)
    for (auto& o : item) o.cost = o.cost * 1e6 + 1.0;  // gcd 1, slack ~ 1e9: no exact table
  const auto [lo, hi] = cost_range(p);
  p.budget = 0.5 * (lo + hi);
  const allocation_result k = knapsack_policy{}.allocate(p);
  const double opt = brute_force(p);
  CHECK(k.cost <= p.budget);
  CHECK(k.loss >= opt - 1e-9);
  CHECK(k.lower_bound <= opt + 1e-9);
  CHECK(k.loss <= greedy_policy{}.allocate(p).loss + 1e-12);  // never worse than plain greedy
  CHECK(k.loss <= lagrangian_policy{}.allocate(p).loss + 1e-12);
  if (k.proven_optimal) CHECK(k.loss == Approx(opt));
}

TEST_CASE("infeasible budgets are rejected at once with the reachable range", "[plan][errors]") {
  allocation_problem p;
  p.items = {{{10, 1.0, 4}, {20, 0.5, 8}}, {{5, 2.0, 4}, {50, 0.0, 16}}};
  p.budget = 14;
  CHECK_THROWS_WITH(knapsack_policy{}.allocate(p), Catch::Contains("smallest reachable size 15") &&
                                                       Catch::Contains("largest: 70"));
  CHECK_THROWS_AS(greedy_policy{}.allocate(p), error);
  p.budget = 15;
  CHECK(knapsack_policy{}.allocate(p).choice == std::vector<std::size_t>{0, 0});
  p.budget = 1000;
  const allocation_result all = knapsack_policy{}.allocate(p);
  CHECK(all.loss == 0.5);
  CHECK(lagrangian_policy{}.allocate(p).proven_optimal);
}

TEST_CASE("Pareto frontier: sorted, no dominated points, both extremes", "[plan][pareto]") {
  std::mt19937 gen(3);
  const allocation_problem p = random_problem(gen, 6, 4, true);
  const auto front = pareto_frontier(p, 40);
  REQUIRE(front.size() >= 2);
  const auto [lo, hi] = cost_range(p);
  CHECK(front.front().cost == lo);
  for (std::size_t i = 1; i < front.size(); ++i) {
    CHECK(front[i].cost > front[i - 1].cost);
    CHECK(front[i].loss < front[i - 1].loss);
  }
  // The last point is the least loss reachable at all.
  allocation_problem unlimited = p;
  unlimited.budget = hi;
  CHECK(front.back().loss == Approx(brute_force(unlimited)));
  for (const auto& pt : front) {  // each point optimal for its own cost
    allocation_problem at = p;
    at.budget = pt.cost;
    CHECK(pt.loss == Approx(brute_force(at)));
  }
}

TEST_CASE("threshold policy follows the class table", "[plan][threshold]") {
  allocation_problem p;
  // Options: int4 (4 bits), int8 (8), fp16 (16); the loss at the cheapest option is the INT4 drop.
  auto item = [](double drop) {
    return std::vector<allocation_option>{{4, drop, 4}, {8, drop / 4, 8}, {16, 0.0, 16}};
  };
  p.items = {item(0.05), item(0.01), item(0.001), item(0.0)};
  p.budget = 0;  // ignored
  const allocation_result r = threshold_policy{}.allocate(p);
  CHECK(r.choice == std::vector<std::size_t>{2, 1, 0, 0});
}
