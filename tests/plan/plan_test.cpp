// The planner: sources, constraints, rules, tied groups, a custom policy, JSON, apply.
#include <catch2/catch.hpp>

#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {

struct toy_model {
  std::vector<row_matrix> weights;
  std::vector<layer_ref> layers;
  toy_model() {
    const struct {
      const char* name;
      index_t rows, cols;
    } shapes[] = {{"blk.0.attn.q", 64, 64}, {"blk.0.attn.k", 64, 64}, {"blk.0.attn.v", 64, 64},
                  {"blk.0.ffn.up", 128, 64}, {"blk.0.ffn.down", 64, 128}, {"lm_head", 100, 64}};
    weights.reserve(6);
    std::uint32_t seed = 1;
    for (const auto& s : shapes) {
      weights.push_back(test::gaussian(s.rows, s.cols, 0.05f, seed++));
      layers.push_back(make_layer(s.name, weights.back()));
    }
  }
};

const std::vector<quant_spec> candidates = {parse_spec("int4/g32/sym/minmax/s16"), parse_spec("int8"),
                                            parse_spec("fp16")};

// A user policy: always the most expensive option of each item.
struct most_expensive_policy {
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    allocation_result r;
    for (const auto& item : p.items) {
      std::size_t best = 0;
      for (std::size_t k = 1; k < item.size(); ++k)
        if (item[k].cost > item[best].cost) best = k;
      r.choice.push_back(best);
    }
    evaluate(p, r);
    return r;
  }
};

}  // namespace

TEST_CASE("a knapsack plan under a byte budget: exact bytes, optimal, never worse than greedy", "[plan]") {
  toy_model m;
  const auto infos = layer_infos(m.layers);
  std::size_t int4_bytes = 0, int8_bytes = 0;
  for (const auto& l : infos) {
    int4_bytes += quantized_bytes(candidates[0], l.rows, l.cols);
    int8_bytes += quantized_bytes(candidates[1], l.rows, l.cols);
  }
  const double budget = 0.5 * static_cast<double>(int4_bytes + int8_bytes);
  const weight_error_source source{&m.layers};
  auto knap = mixed_precision_plan{source, knapsack_policy{}, byte_budget{budget}}.candidates(candidates).build(infos);
  auto greedy = mixed_precision_plan{source, greedy_policy{}, byte_budget{budget}}.candidates(candidates).build(infos);
  CHECK(knap.proven_optimal);
  CHECK(static_cast<double>(knap.bytes()) <= budget);
  CHECK(knap.bytes() > int4_bytes);  // it spent the budget on something
  CHECK(knap.predicted_loss() <= greedy.predicted_loss());
  // apply: the quantized model's exact bytes equal the plan's.
  const quantized_model q = mixprec::apply(knap, m.layers);
  CHECK(q.bytes() == knap.bytes());
  CHECK(q.layers.size() == 6);
  for (const auto& e : knap.entries) CHECK(e.bytes == quantized_bytes(e.spec, e.rows, e.cols));
  CHECK(knap.table().find("**total**") != std::string::npos);
  const std::string cmp = strategy_table({{"knapsack", &knap, 0.9}, {"greedy", &greedy}});
  CHECK(cmp.find("| knapsack |") != std::string::npos);
}

TEST_CASE("rules, tied groups and a custom policy", "[plan][rules]") {
  toy_model m;
  const auto infos = layer_infos(m.layers);
  const weight_error_source source{&m.layers};
  // A budget just above what the rules alone require (14.4 bits/weight): the rules win.
  const plan p = mixed_precision_plan{source, knapsack_policy{}, bits_budget{15.0}}
                     .candidates(candidates)
                     .rule(plan_rule::at_least("*.attn.*", 8))
                     .rule(plan_rule::use("lm_head", parse_spec("fp16")))
                     .rule(plan_rule::never_quantize("blk.0.ffn.down"))
                     .tie({"blk.0.attn.q", "blk.0.attn.k", "blk.0.attn.v"})
                     .build(infos);
  CHECK(bits_of(p.spec_of("blk.0.attn.q").format) >= 8);
  CHECK(p.spec_of("blk.0.attn.q") == p.spec_of("blk.0.attn.k"));
  CHECK(p.spec_of("blk.0.attn.k") == p.spec_of("blk.0.attn.v"));
  CHECK(p.spec_of("lm_head") == parse_spec("fp16"));
  CHECK(p.spec_of("blk.0.ffn.down") == parse_spec("fp32"));
  CHECK(p.entries[0].group == "blk.0.attn.q+blk.0.attn.k+blk.0.attn.v");
  CHECK_THROWS_AS(p.spec_of("nope"), error);
  // Rules that match nothing, unknown tied layers and impossible budgets fail at once.
  auto base = [&] { return mixed_precision_plan{source, knapsack_policy{}, byte_budget{1e9}}.candidates(candidates); };
  CHECK_THROWS_WITH(base().rule(plan_rule::at_least("*.mlp.*", 8)).build(infos), Catch::Contains("matches no layer"));
  CHECK_THROWS_WITH(base().tie({"blk.0.attn.q", "blk.9.attn.k"}).build(infos), Catch::Contains("blk.9.attn.k"));
  CHECK_THROWS_WITH(base().rule(plan_rule::at_least("lm_head", 32)).build(infos), Catch::Contains("no candidate"));
  CHECK_THROWS_WITH((mixed_precision_plan{source, knapsack_policy{}, byte_budget{100}}.candidates(candidates).build(infos)),
                    Catch::Contains("below the smallest reachable size") && Catch::Contains("bytes"));
  // A custom policy plugs in.
  const plan big = mixed_precision_plan{source, most_expensive_policy{}, byte_budget{1e9}}.candidates(candidates).build(infos);
  CHECK(big.policy == "custom");
  for (const auto& e : big.entries) CHECK(e.spec == parse_spec("fp16"));
  // A latency model as the constraint.
  latency_budget lat{[](const quant_spec& q, index_t r, index_t c) {
                       return 1e-9 * static_cast<double>(quantized_bytes(q, r, c));  // memory-bound
                     },
                     1e-9 * 60000.0};
  const plan fast = mixed_precision_plan{source, knapsack_policy{}, lat}.candidates(candidates).build(infos);
  CHECK(fast.budget_unit == "s");
  CHECK(static_cast<double>(fast.bytes()) <= 60000.0 * (1 + 1e-9));
}

TEST_CASE("threshold plan from measured drops", "[plan][threshold]") {
  toy_model m;
  const auto infos = layer_infos(m.layers);
  table_source drops;
  const double int4_drop[] = {0.03, 0.01, 0.001, 0.0, 0.0, 0.05};
  for (std::size_t i = 0; i < infos.size(); ++i)
    for (const auto& c : candidates) drops.losses[infos[i].name][to_string(c)] = c.format == format_id::int4 ? int4_drop[i] : 0.0;
  const plan p = mixed_precision_plan{drops, threshold_policy{}, byte_budget{0}}.candidates(candidates).build(infos);
  CHECK(p.spec_of("blk.0.attn.q").format == format_id::fp16);  // high
  CHECK(p.spec_of("blk.0.attn.k").format == format_id::int8);  // medium
  CHECK(p.spec_of("blk.0.attn.v").format == format_id::int4);  // low
  CHECK(p.spec_of("lm_head").format == format_id::fp16);
  CHECK_THROWS_AS((mixed_precision_plan{table_source{}, knapsack_policy{}, byte_budget{1e9}}.candidates(candidates).build(infos)),
                  error);
}

TEST_CASE("plan JSON round trip and validation", "[plan][json]") {
  toy_model m;
  const auto infos = layer_infos(m.layers);
  const plan p = mixed_precision_plan{weight_error_source{&m.layers}, greedy_policy{}, bits_budget{7.0}}
                     .candidates(candidates)
                     .tie({"blk.0.ffn.up", "blk.0.ffn.down"})
                     .build(infos);
  const nlohmann::json j = p;
  CHECK(j["bytes"] == p.bytes());
  const plan back = nlohmann::json::parse(j.dump()).get<plan>();
  CHECK(back == p);
  nlohmann::json bad = j;
  bad["layers"][0]["bytes"] = 1;
  CHECK_THROWS_AS(bad.get<plan>(), error);
  bad = j;
  bad["layers"][0]["spec"] = "int4/g0";
  CHECK_THROWS_AS(bad.get<plan>(), error);
  // apply checks the model against the plan.
  plan other = p;
  other.entries[0].layer = "ghost";
  CHECK_THROWS_WITH(mixprec::apply(other, m.layers), Catch::Contains("ghost"));
  other = p;
  other.entries[0].rows = 3;
  CHECK_THROWS_AS(mixprec::apply(other, m.layers), error);
  other = p;
  other.entries.pop_back();
  CHECK_THROWS_WITH(mixprec::apply(other, m.layers), Catch::Contains("not in the plan"));
}

TEST_CASE("glob matching", "[plan][rules]") {
  CHECK(glob_match("*.attn.*", "blk.0.attn.q"));
  CHECK_FALSE(glob_match("*.attn.*", "blk.0.ffn.up"));
  CHECK(glob_match("lm_head", "lm_head"));
  CHECK_FALSE(glob_match("lm_head", "lm_head2"));
  CHECK(glob_match("blk.?.ffn*", "blk.3.ffn.down"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("a*b*c", "axxbyyc"));
  CHECK_FALSE(glob_match("a*b*c", "axxbyy"));
}
