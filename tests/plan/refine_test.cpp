// refine_allocation and plan_builder::refine: the search escapes a trap the additive prediction cannot
// see, never returns worse than its start, stays within the budget, keeps rules and tied groups, scores
// stage by stage as documented, is deterministic for a seed, and refuses bad starts and options.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/refine.hpp"
#include "support/errors.hpp"

using namespace mixprec;
using mixprec::test::error_code_of;

namespace {

// Eight items of four options; item i's option k costs (i + 1) * (k + 1) and predicts a loss of
// (i + 1) / (k + 1)^2 (items 0 and 1 predict almost nothing at their cheapest option). Odd items list
// their options from the dearest, so the search must order them by cost itself.
allocation_problem trap_problem() {
  allocation_problem p;
  for (int i = 0; i < 8; ++i) {
    auto& item = p.items.emplace_back();
    for (int k = 0; k < 4; ++k) {
      const int level = i % 2 ? 3 - k : k;
      double loss = (i + 1.0) / ((level + 1.0) * (level + 1.0));
      if (i < 2 && level == 0) loss = 1e-3;
      item.push_back({(i + 1.0) * (level + 1.0), loss, 0});
    }
  }
  p.budget = 80.0;
  return p;
}

constexpr double penalty = 10.0;

// The "real" loss: the predicted sum, plus a penalty when items 0 and 1 are both at their cheapest
// option (an interaction no one-item measurement shows).
double real_loss(const allocation_problem& p, const std::vector<std::size_t>& c) {
  double sum = 0.0;
  for (std::size_t i = 0; i < c.size(); ++i) sum += p.items[i][c[i]].loss;
  const bool trapped = p.items[0][c[0]].cost == 1.0 && p.items[1][c[1]].cost == 2.0;
  return sum + (trapped ? penalty : 0.0);
}

double cost_of(const allocation_problem& p, const std::vector<std::size_t>& c) {
  double cost = 0.0;
  for (std::size_t i = 0; i < c.size(); ++i) cost += p.items[i][c[i]].cost;
  return cost;
}

}  // namespace

TEST_CASE("refine_allocation escapes what the additive prediction cannot see, within the budget") {
  const allocation_problem p = trap_problem();
  const allocation_result knapsack = knapsack_policy{}.allocate(p);
  REQUIRE(real_loss(p, knapsack.choice) > penalty);  // the prediction walks into the trap

  std::set<std::size_t> stages_seen;
  bool over_budget = false;
  auto fitness = [&](const std::vector<std::size_t>& c, std::size_t stage) {
    stages_seen.insert(stage);
    over_budget = over_budget || cost_of(p, c) > p.budget;
    return real_loss(p, c);
  };
  const refine_result r = refine_allocation(p, knapsack.choice, fitness, {.generations = 40, .seed = 7});
  CHECK_FALSE(over_budget);
  CHECK(stages_seen == std::set<std::size_t>{0, 1, 2});
  CHECK(r.start_fitness == real_loss(p, knapsack.choice));
  CHECK(r.fitness == real_loss(p, r.choice));
  CHECK(r.fitness < r.start_fitness - penalty / 2);
  CHECK(r.cost == cost_of(p, r.choice));
  CHECK(r.cost <= p.budget);
  CHECK(r.accepted >= 1);
  CHECK(r.generations == 40);
  // Multi-step selection: 16 children at stage 0, 4 at stage 1, 1 (and the start once) at the last.
  CHECK(r.evaluations == std::vector<std::size_t>{16 * 40, 4 * 40, 40 + 1});

  SECTION("uniform moves only (EvoPress's) or guided ones only escape too") {
    for (const double guided : {0.0, 1.0}) {
      INFO("guided " << guided);
      const refine_result g = refine_allocation(p, knapsack.choice, fitness, {.generations = 40, .guided = guided, .seed = 7});
      CHECK(g.fitness < g.start_fitness - penalty / 2);
      CHECK(g.cost <= p.budget);
    }
  }
  SECTION("the same seed gives the same search") {
    const refine_result again = refine_allocation(p, knapsack.choice, fitness, {.generations = 40, .seed = 7});
    CHECK(again.choice == r.choice);
    CHECK(again.fitness == r.fitness);
    CHECK(again.accepted == r.accepted);
  }
}

TEST_CASE("refine_allocation never returns worse than its start") {
  const allocation_problem p = trap_problem();
  const allocation_result knapsack = knapsack_policy{}.allocate(p);
  REQUIRE(knapsack.proven_optimal);
  SECTION("an additive fitness: the knapsack's choice is already the best") {
    auto additive = [&](const std::vector<std::size_t>& c, std::size_t) {
      double sum = 0.0;
      for (std::size_t i = 0; i < c.size(); ++i) sum += p.items[i][c[i]].loss;
      return sum;
    };
    const refine_result r = refine_allocation(p, knapsack.choice, additive, {.generations = 30});
    CHECK(r.choice == knapsack.choice);
    CHECK(r.accepted == 0);
    CHECK(r.fitness == r.start_fitness);
  }
  SECTION("a cheap stage that misleads: the last stage decides") {
    // Stage 0 prefers every change, the last stage none: nothing is accepted.
    auto misleading = [&](const std::vector<std::size_t>& c, std::size_t stage) {
      const bool changed = c != knapsack.choice;
      return stage == 0 ? (changed ? 0.0 : 1.0) : (changed ? 2.0 : 1.0);
    };
    const refine_result r = refine_allocation(p, knapsack.choice, misleading, {.generations = 10});
    CHECK(r.choice == knapsack.choice);
    CHECK(r.accepted == 0);
  }
  SECTION("no time: the start, scored once") {
    const refine_result r = refine_allocation(p, knapsack.choice, [&](const auto& c, std::size_t) { return real_loss(p, c); }, {.seconds = 0.0});
    CHECK(r.generations == 0);
    CHECK(r.choice == knapsack.choice);
    CHECK(r.evaluations == std::vector<std::size_t>{0, 0, 1});
  }
}

TEST_CASE("refine_allocation refuses bad starts, options and fitness values") {
  const allocation_problem p = trap_problem();
  auto fitness = [&](const std::vector<std::size_t>& c, std::size_t) { return real_loss(p, c); };
  const std::vector<std::size_t> dearest = knapsack_policy{}.allocate(allocation_problem{p.items, 1e9}).choice;
  CHECK(error_code_of([&] { (void)refine_allocation(p, dearest, fitness); }) == errc::invalid_argument);  // over budget
  CHECK(error_code_of([&] { (void)refine_allocation(p, std::vector<std::size_t>(7, 0), fitness); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, std::vector<std::size_t>(8, 4), fitness); }) == errc::invalid_argument);
  const std::vector<std::size_t> start = knapsack_policy{}.allocate(p).choice;
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.survivors = {4, 2}}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.survivors = {4, 4, 1}}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.offspring = 2, .survivors = {4, 1}}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.seconds = std::nan("")}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.guided = 1.5}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)refine_allocation(p, start, fitness, {.guided = std::nan("")}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] {
          (void)refine_allocation(p, start, [](const auto&, std::size_t) { return std::numeric_limits<double>::quiet_NaN(); });
        }) == errc::non_finite);
}

TEST_CASE("plan_builder::refine keeps the rules, the tied groups and the budget") {
  sensitivity_table t;
  const std::vector<quant_spec> specs = {parse_spec("q4_0"), parse_spec("q5_0"), parse_spec("q8_0"), parse_spec("f16")};
  const char* names[] = {"blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v", "blk.0.ffn_up", "blk.0.ffn_down", "output"};
  for (const char* n : names)
    for (std::size_t k = 0; k < specs.size(); ++k) t.add(n, 32, 64, specs[k], 1.0 / static_cast<double>((k + 1) * (k + 1)));
  double budget = 0.0;
  for (int i = 0; i < 8; ++i) budget += static_cast<double>(quantized_bytes(specs[1], 32, 64));
  plan_builder planner{t, knapsack_policy{}, byte_budget{budget}};
  planner.rule(plan_rule::use("output", parse_spec("q8_0"))).tie({"blk.0.attn_q", "blk.0.attn_k"});
  const plan start = planner.build();

  std::size_t calls = 0;
  bool kept = true;
  auto fitness = [&](const plan& p, std::size_t) {
    ++calls;
    kept = kept && p.bytes() <= budget && p.entries[5].spec == parse_spec("q8_0") && p.entries[0].spec == p.entries[1].spec;
    // Rewards bytes on ffn_down, which the prediction values no more than on any other layer.
    const quant_spec& down = p.entries[4].spec;
    return p.predicted_loss() - (down == parse_spec("q8_0") ? 1.0 : down == parse_spec("f16") ? 1.5 : 0.0);
  };
  const refined_plan r = planner.refine(start, fitness, {.generations = 30, .seed = 3});
  CHECK(kept);
  CHECK(calls == r.search.evaluations[0] + r.search.evaluations[1] + r.search.evaluations[2]);
  CHECK((r.result.entries[4].spec == parse_spec("q8_0") || r.result.entries[4].spec == parse_spec("f16")));
  CHECK(start.entries[4].spec != r.result.entries[4].spec);
  CHECK(r.result.bytes() <= budget);
  CHECK(r.result.solver == start.solver + " + refined");
  CHECK_FALSE(r.result.proven_optimal);
  CHECK(r.search.fitness < r.search.start_fitness);

  plan foreign = start;
  foreign.entries[5].spec = parse_spec("q4_0");  // the rule forbids it
  CHECK(error_code_of([&] { (void)planner.refine(foreign, fitness); }) == errc::invalid_argument);
  foreign = start;
  foreign.entries[0].spec = foreign.entries[1].spec == parse_spec("q4_0") ? parse_spec("q5_0") : parse_spec("q4_0");  // ties apart
  CHECK(error_code_of([&] { (void)planner.refine(foreign, fitness); }) == errc::invalid_argument);
  foreign = start;
  foreign.entries.pop_back();
  CHECK(error_code_of([&] { (void)planner.refine(foreign, fitness); }) == errc::invalid_argument);
}
