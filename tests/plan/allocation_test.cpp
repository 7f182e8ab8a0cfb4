// Allocation policies against brute force on random small instances: knapsack (both exact methods) is
// optimal and the cheapest among optimal choices; greedy follows its definition (checked against a
// naive reference); the Lagrangian solution is optimal for the budget it uses; the Pareto frontier has
// no dominated points and includes both extremes; infeasible budgets are rejected with the range.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "mixprec/plan/greedy.hpp"
#include "mixprec/plan/knapsack.hpp"
#include "mixprec/plan/lagrangian.hpp"
#include "mixprec/plan/pareto.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/threshold.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

enum class costs { bytes, real, collinear, ties };

// n items of k options. bytes: integer costs (multiples of 16 plus a small odd part, like per-layer
// byte counts); real: real costs; collinear: loss linear in cost (every option on one line: the LP
// bound cannot fix anything, the hard case for branch and bound); ties: byte costs and small integer
// losses, so that many choices tie on loss and only the cheapest of them is right.
allocation_problem random_problem(std::mt19937& gen, int n, int k, costs kind) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  allocation_problem p;
  for (int i = 0; i < n; ++i) {
    std::vector<allocation_option> item;
    const double slope = 0.01 + u(gen);
    for (int j = 0; j < k; ++j) {
      allocation_option o;
      if (kind == costs::real) {
        o.cost = 1.0 + 100.0 * u(gen);
        o.loss = 10.0 * u(gen) * u(gen);
      } else {
        o.cost = 16.0 * std::floor(1.0 + 40.0 * u(gen)) + (j % 2 == 0 ? 2.0 : 0.0);
        o.loss = kind == costs::collinear ? 1000.0 - slope * o.cost
                 : kind == costs::ties    ? std::floor(4.0 * u(gen))
                                          : 10.0 * u(gen) * u(gen);
      }
      o.bits = 2 << (j % 4);
      item.push_back(o);
    }
    p.items.push_back(item);
  }
  const auto [lo, hi] = cost_range(p);
  p.budget = lo + (hi - lo) * u(gen);
  return p;
}

// Every choice, by enumeration.
template <class F>
void for_each_choice(const allocation_problem& p, F&& f) {
  std::vector<std::size_t> c(p.items.size(), 0);
  for (;;) {
    double cost = 0.0, loss = 0.0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      cost += p.items[i][c[i]].cost;
      loss += p.items[i][c[i]].loss;
    }
    f(cost, loss);
    std::size_t i = 0;
    while (i < c.size() && ++c[i] == p.items[i].size()) c[i++] = 0;
    if (i == c.size()) return;
  }
}

struct optimum {
  double loss = std::numeric_limits<double>::infinity();
  double cheapest = std::numeric_limits<double>::infinity();  // least cost among optimal choices
};
double tolerance(const allocation_problem& p) {
  double s = 0.0;
  for (const auto& item : p.items)
    for (const auto& o : item) s += std::fabs(o.loss);
  return 1e-9 * std::max(1.0, s);
}
optimum brute_force(const allocation_problem& p) {
  optimum best;
  for_each_choice(p, [&](double cost, double loss) {
    if (cost <= p.budget) best.loss = std::min(best.loss, loss);
  });
  const double tol = tolerance(p);
  for_each_choice(p, [&](double cost, double loss) {
    if (cost <= p.budget && loss <= best.loss + tol) best.cheapest = std::min(best.cheapest, cost);
  });
  return best;
}

// The greedy rule spelled out naively: O(n^2 k) per upgrade, from each item's cheapest Pareto option.
std::vector<std::size_t> naive_greedy(const allocation_problem& p) {
  std::vector<std::vector<std::size_t>> front;
  for (const auto& item : p.items) front.push_back(detail::pareto_options(item));
  std::vector<std::size_t> pos(p.items.size(), 0);
  double cost = 0.0;
  for (std::size_t i = 0; i < p.items.size(); ++i) cost += p.items[i][front[i][0]].cost;
  for (;;) {
    bool found = false;
    double best = 0.0;
    std::size_t bi = 0, bj = 0;
    for (std::size_t i = 0; i < p.items.size(); ++i) {
      const auto& cur = p.items[i][front[i][pos[i]]];
      for (std::size_t j = pos[i] + 1; j < front[i].size(); ++j) {
        const auto& o = p.items[i][front[i][j]];
        if (cost + (o.cost - cur.cost) > p.budget) continue;
        const double ratio = (cur.loss - o.loss) / (o.cost - cur.cost);
        if (!found || ratio > best) {
          found = true;
          best = ratio;
          bi = i;
          bj = j;
        }
      }
    }
    if (!found) break;
    cost += p.items[bi][front[bi][bj]].cost - p.items[bi][front[bi][pos[bi]]].cost;
    pos[bi] = bj;
  }
  std::vector<std::size_t> choice;
  for (std::size_t i = 0; i < p.items.size(); ++i) choice.push_back(front[i][pos[i]]);
  return choice;
}

}  // namespace

TEST_CASE("knapsack is optimal on random small instances, by both exact methods", "[plan][knapsack]") {
  std::mt19937 gen(11);
  int bnb_free = 0;  // instances where branch and bound had to search (the incumbent was not optimal)
  for (int trial = 0; trial < 800; ++trial) {
    const costs kind = static_cast<costs>(trial % 4);
    allocation_problem p = random_problem(gen, 1 + trial % 7, 1 + trial % 5, kind);
    if (trial % 50 == 7) p.budget = cost_range(p).first;   // the smallest reachable budget exactly
    if (trial % 50 == 8) p.budget = 1e300;                 // no limit
    const optimum opt = brute_force(p);
    const double tol = tolerance(p);
    INFO("trial " << trial << ", " << p.items.size() << " items, budget " << p.budget);
    for (auto use : {knapsack_policy::method::automatic, knapsack_policy::method::branch_and_bound,
                     knapsack_policy::method::table}) {
      knapsack_policy policy;
      policy.use = use;
      allocation_result r;
      if (const auto refused = test::error_of([&] { r = policy.allocate(p); })) {
        // Real costs: the table does not apply (unless every item has one option).
        REQUIRE(refused->code() == errc::unsupported);
        REQUIRE(use == knapsack_policy::method::table);
        REQUIRE(kind == costs::real);
        REQUIRE(p.items[0].size() > 1);
        continue;
      }
      INFO("solver " << r.solver);
      REQUIRE(r.proven_optimal);
      REQUIRE(r.cost <= p.budget);
      REQUIRE(r.loss == Approx(opt.loss).margin(tol));
      REQUIRE(r.cost == opt.cheapest);  // the cheapest of the optimal choices
      REQUIRE(r.lower_bound <= r.loss + tol);
      bnb_free += use == knapsack_policy::method::branch_and_bound && r.lower_bound < r.loss - tol;
    }
    // The heuristics: within budget, never better than optimal, bounds are bounds.
    const allocation_result g = greedy_policy{}.allocate(p);
    const allocation_result l = lagrangian_policy{}.allocate(p);
    const allocation_result lf = lagrangian_policy{true}.allocate(p);
    for (const auto* r : {&g, &l, &lf}) {
      REQUIRE(r->cost <= p.budget);
      REQUIRE(r->loss >= opt.loss - tol);
      REQUIRE(r->lower_bound <= opt.loss + tol);
      if (r->proven_optimal) REQUIRE(r->loss == Approx(opt.loss).margin(tol));
    }
    REQUIRE(lf.loss <= l.loss + tol);
    REQUIRE(g.choice == naive_greedy(p));
    // The hull solution is optimal for the budget it uses.
    allocation_problem at = p;
    at.budget = l.cost;
    REQUIRE(l.loss == Approx(brute_force(at).loss).margin(tol));
    // Knapsack never worse than greedy, Lagrangian or threshold at the same budget.
    const allocation_result k = knapsack_policy{}.allocate(p);
    REQUIRE(k.loss <= g.loss + tol);
    REQUIRE(k.loss <= lf.loss + tol);
    const allocation_result t = threshold_policy{}.allocate(p);
    allocation_problem at_t = p;
    at_t.budget = t.cost;
    REQUIRE(knapsack_policy{}.allocate(at_t).loss <= t.loss + tol);
  }
  CHECK(bnb_free > 50);  // the search itself was exercised, not only the bound
}

TEST_CASE("branch and bound at its state limit: the table takes over, or the result says it is not proven",
          "[plan][knapsack]") {
  std::mt19937 gen(7);
  const allocation_problem p = random_problem(gen, 9, 4, costs::collinear);
  const optimum opt = brute_force(p);
  knapsack_policy tiny;
  tiny.max_states = 3;
  const allocation_result a = tiny.allocate(p);  // automatic: falls back to the exact table
  CHECK(a.solver == "table");
  CHECK(a.proven_optimal);
  CHECK(a.loss == Approx(opt.loss).margin(tolerance(p)));
  tiny.use = knapsack_policy::method::branch_and_bound;
  const allocation_result b = tiny.allocate(p);
  CHECK_FALSE(b.proven_optimal);
  CHECK(b.cost <= p.budget);
  CHECK(b.loss >= opt.loss - tolerance(p));
  CHECK(b.lower_bound <= opt.loss + tolerance(p));
  // Neither exact method fits: the incumbent, flagged.
  tiny.use = knapsack_policy::method::automatic;
  tiny.max_cells = 10;
  const allocation_result c = tiny.allocate(p);
  CHECK_FALSE(c.proven_optimal);
  CHECK(c.solver.find("gave up") != std::string::npos);
  CHECK(c.cost <= p.budget);
  // With the default limits the search finishes.
  CHECK(knapsack_policy{.use = knapsack_policy::method::branch_and_bound}.allocate(p).proven_optimal);
}

TEST_CASE("knapsack on byte costs too large for a table is still exact", "[plan][knapsack]") {
  std::mt19937 gen(5);
  for (int trial = 0; trial < 20; ++trial) {
    allocation_problem p = random_problem(gen, 7, 4, trial % 2 ? costs::bytes : costs::collinear);
    for (auto& item : p.items)  // gcd 1, slack ~ 1e8 steps
      for (std::size_t j = 0; j < item.size(); ++j) item[j].cost = item[j].cost * 1048573.0 + static_cast<double>(j);
    const auto [lo, hi] = cost_range(p);
    p.budget = lo + 0.37 * (hi - lo);
    CHECK_THROWS_AS(knapsack_policy{.use = knapsack_policy::method::table}.allocate(p), error);
    const allocation_result k = knapsack_policy{}.allocate(p);
    const optimum opt = brute_force(p);
    CHECK(k.solver == "branch-and-bound");
    CHECK(k.proven_optimal);
    CHECK(k.loss == Approx(opt.loss).margin(tolerance(p)));
    CHECK(k.cost == opt.cheapest);
  }
}

TEST_CASE("infeasible budgets are rejected at once with the reachable range", "[plan][errors]") {
  allocation_problem p;
  p.items = {{{10, 1.0, 4}, {20, 0.5, 8}}, {{5, 2.0, 4}, {50, 0.0, 16}}};
  p.budget = 14;
  for (auto* f : {+[](const allocation_problem& q) { return knapsack_policy{}.allocate(q); },
                  +[](const allocation_problem& q) { return greedy_policy{}.allocate(q); },
                  +[](const allocation_problem& q) { return lagrangian_policy{}.allocate(q); }}) {
    const auto e = test::error_of([&] { (void)f(p); });
    REQUIRE(e);
    CHECK(e->code() == errc::infeasible);
    CHECK_THAT(e->what(), Catch::Contains("smallest reachable cost 15") && Catch::Contains("largest reachable: 70"));
  }
  p.budget = 15;
  CHECK(knapsack_policy{}.allocate(p).choice == std::vector<std::size_t>{0, 0});
  p.budget = std::numeric_limits<double>::infinity();
  const allocation_result all = knapsack_policy{}.allocate(p);
  CHECK(all.loss == 0.5);
  CHECK(all.cost == 70);
  // Malformed problems.
  p.budget = std::nan("");
  CHECK_THROWS_AS(knapsack_policy{}.allocate(p), error);
  p.budget = 100;
  p.items.push_back({});
  CHECK_THROWS_AS(knapsack_policy{}.allocate(p), error);
  p.items.back() = {{1.0, std::nan(""), 4}};
  CHECK_THROWS_AS(greedy_policy{}.allocate(p), error);
}

TEST_CASE("Pareto frontier: sorted, no dominated points, both extremes", "[plan][pareto]") {
  std::mt19937 gen(3);
  for (int trial = 0; trial < 80; ++trial) {
    const allocation_problem p = random_problem(gen, 2 + trial % 5, 2 + trial % 4, static_cast<costs>(trial % 4));
    const auto front = pareto_frontier(p, 24);
    const double tol = tolerance(p);
    REQUIRE(!front.empty());
    for (std::size_t i = 1; i < front.size(); ++i) {
      CHECK(front[i].cost > front[i - 1].cost);
      CHECK(front[i].loss < front[i - 1].loss);
    }
    for (const auto& pt : front) {
      CHECK(pt.proven_optimal);
      for_each_choice(p, [&](double cost, double loss) {  // nothing dominates the point
        const bool dominates = (cost <= pt.cost && loss < pt.loss - tol) || (cost < pt.cost && loss <= pt.loss + 1e-3 * tol);
        if (dominates) FAIL_CHECK("point (" << pt.cost << ", " << pt.loss << ") dominated by (" << cost << ", " << loss << ")");
      });
    }
    // The extremes: the cheapest choice (at its least loss), the least loss (at its least cost).
    allocation_problem cheapest = p;
    cheapest.budget = cost_range(p).first;
    allocation_problem unlimited = p;
    unlimited.budget = cost_range(p).second;
    const optimum lo = brute_force(cheapest), hi = brute_force(unlimited);
    CHECK(front.front().cost == cheapest.budget);
    CHECK(front.front().loss == Approx(lo.loss).margin(tol));
    CHECK(front.back().loss == Approx(hi.loss).margin(tol));
    CHECK(front.back().cost == hi.cheapest);
  }
  CHECK_THROWS_AS(pareto_frontier(allocation_problem{{{{1, 1, 4}}}, 1}, 1), error);
}

TEST_CASE("threshold policy follows the class table", "[plan][threshold]") {
  // Options: int2, int4/g128, int4/g32, int8, fp16 (costs and losses of one 1x128 layer, say).
  auto item = [](double drop) {
    return std::vector<allocation_option>{
        {34, 4 * drop, 2}, {66, drop, 4}, {72, drop / 2, 4}, {132, drop / 16, 8}, {256, 0.0, 16}};
  };
  allocation_problem p;
  p.items = {item(0.05), item(0.02), item(0.005), item(0.001), item(0.0001), item(-0.03)};
  const allocation_result r = threshold_policy{}.allocate(p);
  // high -> fp16; 2 % exactly is medium -> int8; 0.5 % medium; low -> the better int4;
  // insensitive -> int2; a negative drop counts by magnitude.
  CHECK(r.choice == std::vector<std::size_t>{4, 3, 3, 2, 0, 4});
  // Without an int2 candidate an insensitive layer takes the cheapest int4.
  allocation_problem q;
  q.items = {{{66, 0.0001, 4}, {72, 0.00005, 4}, {132, 0.0, 8}}};
  CHECK(threshold_policy{}.allocate(q).choice == std::vector<std::size_t>{0});
  // Nothing precise enough: the most precise option there is.
  q.items = {{{66, 0.5, 4}, {132, 0.01, 8}}};
  CHECK(threshold_policy{}.allocate(q).choice == std::vector<std::size_t>{1});
  CHECK(classify(0.0) == sensitivity_class::insensitive);
  CHECK(classify(0.0005) == sensitivity_class::insensitive);
  CHECK(classify(0.0006) == sensitivity_class::low);
  CHECK(classify(0.021) == sensitivity_class::high);
  CHECK_THROWS_AS(classify(std::nan("")), error);
  CHECK_THROWS_AS(classify(0.1, {0.01, 0.02, 0.0}), error);
  CHECK_THROWS_AS((threshold_policy{.thresholds = {0.01, 0.02, 0.0}}.allocate(p)), error);
}

TEST_CASE("the threshold policy and the sensitivity report classify a drop the same way", "[plan][threshold]") {
  // Drops within 1e-9 of a boundary count as on it (plan/drop_classes.hpp). The policy once had its own
  // table without that slack: 0.02 (1 + 1e-12) was medium in the report and high in the policy, and
  // 0.005 (1 - 1e-12) medium and low.
  const int bits_of_class[] = {16, 8, 4, 2};  // high, medium, low, insensitive
  for (double drop : {0.02 * (1 + 1e-12), 0.02 * (1 + 1e-6), 0.005 * (1 - 1e-12), 0.005 * (1 - 1e-6), 0.0005 * (1 + 1e-12),
                      0.0005 * (1 + 1e-6), 0.0, 0.3, -0.02 * (1 + 1e-12)}) {
    INFO(drop);
    allocation_problem p;
    p.items = {{{34, 4 * drop, 2}, {66, drop, 4}, {132, drop / 16, 8}, {256, 0.0, 16}}};
    const allocation_result r = threshold_policy{}.allocate(p);
    CHECK(p.items[0][r.choice[0]].bits == bits_of_class[static_cast<int>(classify(drop))]);
  }
  CHECK(classify(0.02 * (1 + 1e-12)) == sensitivity_class::medium);
  CHECK(classify(0.005 * (1 - 1e-12)) == sensitivity_class::medium);
  // A threshold plan over the budget says so in its tables.
  sensitivity_table t;
  t.add("a", 4, 64, "int4/g32", 0.5).add("a", 4, 64, "fp16", 0.0);
  const plan over = plan_builder{t, threshold_policy{}, byte_budget{200}}.build();
  CHECK_FALSE(over.within_limit());
  CHECK_THAT(over.table(), Catch::Contains("Over the limit"));
  CHECK_THAT(strategy_table({{"threshold", &over}}), Catch::Contains("threshold (over the limit)"));
  const plan fits = plan_builder{t, knapsack_policy{}, byte_budget{200}}.build();
  CHECK_THAT(fits.table(), !Catch::Contains("Over the limit"));
}

TEST_CASE("knapsack breaks ties on loss towards the cheapest choice", "[plan][knapsack]") {
  // Small integer losses: many choices tie, and both methods must return the cheapest optimal one.
  std::mt19937 gen(23);
  for (int trial = 0; trial < 3000; ++trial) {
    const allocation_problem p = random_problem(gen, 2 + trial % 5, 2 + trial % 3, costs::ties);
    const optimum opt = brute_force(p);
    INFO("trial " << trial);
    for (auto use : {knapsack_policy::method::branch_and_bound, knapsack_policy::method::table}) {
      const allocation_result r = knapsack_policy{.use = use}.allocate(p);
      REQUIRE(r.loss == opt.loss);
      REQUIRE(r.cost == opt.cheapest);
    }
  }
}
