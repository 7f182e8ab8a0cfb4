// The planner: optimality of whole plans against an independent brute force over specs, exact bytes,
// quantize_model, rules, tied groups, constraints (bytes, bits, latency, a custom one), custom sources and
// policies, loss-limited plans, Pareto plans, up-front validation.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "mixprec/plan/plan.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

const std::vector<quant_spec> candidates = {parse_spec("int2/g32/asym/minmax/s16"), parse_spec("int4/g32/sym/minmax/s16"),
                                            parse_spec("int8"), parse_spec("fp16")};

// Seven layers of a toy decoder block (awkward shapes included) with their weights.
struct toy_model {
  std::vector<row_matrix> w;
  std::vector<layer> views;  // the library's one model view (a mixprec::model works alike)
  std::vector<layer_shape> shapes;
  sensitivity_table table;  // the weight's squared quantization error, computed here independently

  toy_model() {
    const struct {
      const char* name;
      index_t rows, cols;
      float sigma;
    } layers[] = {{"blk.0.attn.q", 64, 64, 0.05f},    {"blk.0.attn.k", 32, 64, 0.04f},   {"blk.0.attn.v", 32, 64, 0.03f},
                  {"blk.0.ffn.gate", 96, 64, 0.02f},  {"blk.0.ffn.up", 96, 64, 0.025f},  {"blk.0.ffn.down", 64, 96, 0.06f},
                  {"lm_head", 100, 70, 0.08f}};
    w.reserve(7);
    std::uint32_t seed = 1;
    for (const auto& l : layers) {
      w.push_back(test::gaussian(l.rows, l.cols, l.sigma, seed++));
      views.push_back(make_layer(l.name, w.back()));
      shapes.push_back({l.name, l.rows, l.cols});
      for (const quant_spec& q : candidates) {
        const row_matrix back = dequantize(quantize(w.back(), q));
        double e = 0.0;
        for (index_t r = 0; r < l.rows; ++r)
          for (index_t c = 0; c < l.cols; ++c) {
            const double d = static_cast<double>(back(r, c)) - static_cast<double>(w.back()(r, c));
            e += d * d;
          }
        table.add(l.name, l.rows, l.cols, q, e);
      }
    }
  }
};

const std::vector<std::string> qkv = {"blk.0.attn.q", "blk.0.attn.k", "blk.0.attn.v"};
const std::vector<std::string> gate_up = {"blk.0.ffn.gate", "blk.0.ffn.up"};

// Brute force over whole plans: every assignment of one candidate per item (tied groups share one),
// costs from `cost`, losses from the table; the least loss within `budget`.
struct brute_result {
  double loss = std::numeric_limits<double>::infinity();
  double cost = 0.0;
};
brute_result brute_force(const toy_model& m, const std::vector<std::vector<std::string>>& groups, double budget,
                         const std::function<double(const layer_shape&, const quant_spec&)>& cost) {
  std::vector<std::vector<std::size_t>> items;
  std::vector<bool> grouped(m.shapes.size(), false);
  for (const auto& g : groups) {
    items.emplace_back();
    for (const auto& name : g)
      for (std::size_t i = 0; i < m.shapes.size(); ++i)
        if (m.shapes[i].name == name) {
          items.back().push_back(i);
          grouped[i] = true;
        }
  }
  for (std::size_t i = 0; i < m.shapes.size(); ++i)
    if (!grouped[i]) items.push_back({i});
  brute_result best;
  std::vector<std::size_t> c(items.size(), 0);
  for (;;) {
    double total_cost = 0.0, total_loss = 0.0;
    for (std::size_t it = 0; it < items.size(); ++it)
      for (std::size_t l : items[it]) {
        total_cost += cost(m.shapes[l], candidates[c[it]]);
        total_loss += m.table.loss(m.shapes[l], candidates[c[it]]);
      }
    if (total_cost <= budget && total_loss < best.loss) best = {total_loss, total_cost};
    std::size_t i = 0;
    while (i < c.size() && ++c[i] == candidates.size()) c[i++] = 0;
    if (i == c.size()) return best;
  }
}
double bytes_cost(const layer_shape& l, const quant_spec& q) { return static_cast<double>(quantized_bytes(q, l.rows, l.cols)); }

std::size_t total_bytes(const toy_model& m, const quant_spec& q) {
  std::size_t b = 0;
  for (const auto& l : m.shapes) b += quantized_bytes(q, l.rows, l.cols);
  return b;
}

// A user policy: the most expensive option of each item.
struct most_expensive_policy {
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    allocation_result r;
    for (const auto& item : p.items) {
      std::size_t best = 0;
      for (std::size_t k = 1; k < item.size(); ++k)
        if (item[k].cost > item[best].cost) best = k;
      r.choice.push_back(best);
    }
    sum_choices(p, r);
    return r;
  }
};
static_assert(AllocationPolicy<most_expensive_policy>);

// A broken user policy: one choice short.
struct broken_policy {
  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    allocation_result r;
    r.choice.assign(p.items.size() - 1, 0);
    return r;
  }
};

// A user source: loss halves per extra bit, proportional to the layer's size.
struct bits_source {
  [[nodiscard]] double loss(const layer_shape& l, const quant_spec& q) const {
    return static_cast<double>(l.size()) * std::ldexp(1.0, -bits_of(q.format));
  }
};
static_assert(SensitivitySource<bits_source> && !LayerCatalog<bits_source>);

// A user constraint: weight-bits moved per token (a bandwidth proxy without scale overhead).
struct weight_bits_constraint {
  double limit = 0.0;
  [[nodiscard]] double cost(const layer_shape& l, const quant_spec& q) const {
    return static_cast<double>(l.size()) * bits_of(q.format);
  }
  [[nodiscard]] double budget(const std::vector<layer_shape>&) const { return limit; }
  [[nodiscard]] std::string_view unit() const { return "weight-bits"; }
};
static_assert(Constraint<weight_bits_constraint>);

// A source that must not be consulted.
struct untouchable_source {
  [[nodiscard]] double loss(const layer_shape& l, const quant_spec&) const {
    throw std::logic_error("the source was asked about " + l.name);
  }
};

}  // namespace

TEST_CASE("a knapsack plan under a byte budget: optimal, exact bytes, tied groups, quantize_model matches it", "[plan]") {
  const toy_model m;
  const std::size_t lo = total_bytes(m, candidates[0]), hi = total_bytes(m, candidates[3]);
  for (double f : {0.0, 0.1, 0.35, 0.6, 1.0}) {
    const double budget = std::floor(static_cast<double>(lo) + f * static_cast<double>(hi - lo));
    INFO("budget " << budget);
    const plan p = plan_builder{m.table, knapsack_policy{}, byte_budget{budget}}.tie(qkv).tie(gate_up).build();
    const brute_result best = brute_force(m, {qkv, gate_up}, budget, bytes_cost);
    CHECK(p.proven_optimal);
    CHECK(p.policy == "knapsack");
    CHECK(p.predicted_loss() == Approx(best.loss).epsilon(1e-12));
    CHECK(static_cast<double>(p.bytes()) <= budget);
    CHECK(p.within_limit());
    CHECK(p.unit == "bytes");
    CHECK(p.cost() == static_cast<double>(p.bytes()));
    // Exact bytes: every entry as quantized_bytes counts it (scales and INT2 zero points included).
    std::size_t sum = 0;
    for (const auto& e : p.entries) {
      CHECK(e.bytes == quantized_bytes(e.spec, e.rows, e.cols));
      sum += e.bytes;
    }
    CHECK(p.bytes() == sum);
    CHECK(p.bits_per_weight() == Approx(8.0 * static_cast<double>(sum) / p.weights()));
    // Tied groups share one quantizer.
    CHECK(p.spec_of("blk.0.attn.q") == p.spec_of("blk.0.attn.k"));
    CHECK(p.spec_of("blk.0.attn.k") == p.spec_of("blk.0.attn.v"));
    CHECK(p.spec_of("blk.0.ffn.gate") == p.spec_of("blk.0.ffn.up"));
    CHECK(p.at("blk.0.attn.v").group == "blk.0.attn.q+blk.0.attn.k+blk.0.attn.v");
    CHECK(p.at("lm_head").group.empty());
    // quantize_model: the quantized model's exact bytes are the plan's prediction, layer by layer.
    const quantized_model q = quantize_model(p, m.views);
    REQUIRE(q.layers.size() == m.views.size());
    CHECK(q.bytes() == p.bytes());
    for (const auto& e : p.entries) {
      CHECK(q.at(e.layer).spec() == e.spec);
      CHECK(q.at(e.layer).bytes() == e.bytes);
    }
  }
  const plan all_int2 = plan_builder{m.table, knapsack_policy{}, byte_budget{static_cast<double>(lo)}}.build();
  for (const auto& e : all_int2.entries) CHECK(e.spec == candidates[0]);
  const plan all_best = plan_builder{m.table}.build();  // no budget: least loss everywhere
  for (const auto& e : all_best.entries) CHECK(e.spec == candidates[3]);
  CHECK(all_best.limit == std::numeric_limits<double>::infinity());
}

TEST_CASE("knapsack plans are never worse than greedy or threshold plans at the same budget", "[plan]") {
  // 60 layers of random shapes and random (monotone in bits) losses.
  std::mt19937 gen(9);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const index_t dims[] = {32, 48, 64, 96, 100, 128};
  sensitivity_table t;
  for (int i = 0; i < 60; ++i) {
    const std::string name = "layer." + std::to_string(i);
    const index_t rows = dims[static_cast<int>(6 * u(gen)) % 6], cols = dims[static_cast<int>(6 * u(gen)) % 6];
    const double drop = 0.05 * u(gen) * u(gen);
    for (std::size_t k = 0; k < candidates.size(); ++k)
      t.add(name, rows, cols, candidates[k], drop * std::pow(0.2 + 0.1 * u(gen), static_cast<double>(k)));
  }
  const plan th = plan_builder{t, threshold_policy{}}.build();
  CHECK(th.policy == "threshold");
  for (double bits : {2.8, 3.5, 4.5, 6.0, 9.0, th.bits_per_weight()}) {
    const plan k = plan_builder{t, knapsack_policy{}, bits_budget{bits}}.build();
    const plan g = plan_builder{t, greedy_policy{}, bits_budget{bits}}.build();
    const plan l = plan_builder{t, lagrangian_policy{}, bits_budget{bits}}.build();
    INFO(bits << " bits/weight");
    CHECK(k.proven_optimal);
    CHECK(k.bits_per_weight() <= bits);
    CHECK(g.bits_per_weight() <= bits);
    CHECK(l.bits_per_weight() <= bits);
    CHECK(k.predicted_loss() <= g.predicted_loss() * (1 + 1e-12));
    CHECK(k.predicted_loss() <= l.predicted_loss() * (1 + 1e-12));
    CHECK(g.lower_bound <= k.predicted_loss() * (1 + 1e-12));
  }
  // At the threshold plan's own size, the knapsack loses no more than it.
  const plan k = plan_builder{t, knapsack_policy{}, byte_budget{static_cast<double>(th.bytes())}}.build();
  CHECK(k.bytes() <= th.bytes());
  CHECK(k.predicted_loss() <= th.predicted_loss() * (1 + 1e-12));
}

TEST_CASE("rules: overrides by glob and regex, precision bounds, never-quantized layers", "[plan][rules]") {
  const toy_model m;
  const plan p = plan_builder{m.table, knapsack_policy{}}
                     .candidates({candidates[0], candidates[1], candidates[2]})  // no fp16 by default
                     .rule(plan_rule::at_least("*.attn.*", 8))
                     .rule(plan_rule::use("lm_head", parse_spec("fp16")))
                     .rule(plan_rule::never_quantize("blk.0.ffn.down"))
                     .rule(plan_rule::at_most(name_pattern::regex(R"(blk\.\d+\.ffn\.(gate|up))"), 2))
                     .build(m.shapes);
  for (const auto& name : qkv) CHECK(p.spec_of(name) == parse_spec("int8"));
  CHECK(p.spec_of("lm_head") == parse_spec("fp16"));  // forced, though not a candidate
  CHECK(p.spec_of("blk.0.ffn.down") == parse_spec("fp32"));
  CHECK(p.at("blk.0.ffn.down").loss == 0.0);
  CHECK(p.at("blk.0.ffn.down").bytes == 64u * 96u * 4u);
  CHECK(p.spec_of("blk.0.ffn.gate") == candidates[0]);
  CHECK(p.spec_of("blk.0.ffn.up") == candidates[0]);
  // With a budget the rules still hold; the smallest reachable size includes what they force.
  const auto cost_of = [&](const plan& x) { return static_cast<double>(x.bytes()); };
  const double forced = cost_of(p) - 1.0;
  CHECK_THROWS_AS((plan_builder{m.table, knapsack_policy{}, byte_budget{forced}}
                       .candidates({candidates[0], candidates[1], candidates[2]})
                       .rule(plan_rule::at_least("*.attn.*", 8))
                       .rule(plan_rule::use("lm_head", parse_spec("fp16")))
                       .rule(plan_rule::never_quantize("blk.0.ffn.down"))
                       .rule(plan_rule::at_most(name_pattern::regex(R"(blk\.\d+\.ffn\.(gate|up))"), 2))
                       .build(m.shapes)),
                    error);
  // A range rule.
  const plan mid = plan_builder{m.table}.rule(plan_rule::between("*", 4, 8)).build();
  for (const auto& e : mid.entries) CHECK(e.spec == candidates[2]);

  auto base = [&] { return plan_builder{m.table, knapsack_policy{}, byte_budget{1e9}}; };
  const auto typo = test::error_of([&] { (void)base().rule(plan_rule::use("lm_haed", parse_spec("fp16"))).build(); });
  REQUIRE(typo);
  CHECK(typo->code() == errc::invalid_argument);
  CHECK_THAT(typo->what(), Catch::Contains("'lm_haed'") && Catch::Contains("matches no layer"));
  CHECK_THROWS_WITH(base().rule(plan_rule::at_least("*.mlp.*", 8)).build(), Catch::Contains("'*.mlp.*'"));
  CHECK_THROWS_WITH(base().rule(plan_rule::at_least(name_pattern::regex("blk\\.1\\..*"), 8)).build(),
                    Catch::Contains("regex 'blk\\.1\\..*'"));
  const auto clash = test::error_of(
      [&] { (void)base().rule(plan_rule::use("lm_head", candidates[1])).rule(plan_rule::at_least("lm_*", 8)).build(); });
  REQUIRE(clash);
  CHECK(clash->code() == errc::infeasible);
  CHECK_THAT(clash->what(), Catch::Contains("'lm_head' has no candidate left") && Catch::Contains("rule 'lm_*' (8..32 bits)"));
  CHECK_THROWS_AS(name_pattern::regex("blk\\.(["), error);
}

TEST_CASE("rules from text: PATTERN=SPEC, bounds, re: regexes; typed errors", "[plan][rules]") {
  const plan_rule use = parse_plan_rule("lm_head=fp16");
  CHECK(use.pattern == name_pattern::glob("lm_head"));
  REQUIRE(use.force);
  CHECK(*use.force == parse_spec("fp16"));
  const plan_rule least = parse_plan_rule("*.attn.*>=8");
  CHECK(least.pattern == name_pattern::glob("*.attn.*"));
  CHECK((least.min_bits == 8 && least.max_bits == 32 && !least.force && !least.keep_fp32));
  const plan_rule most = parse_plan_rule("*.ffn.*<=4");
  CHECK((most.min_bits == 0 && most.max_bits == 4));
  CHECK(parse_plan_rule("blk.0.ffn.down=fp32").keep_fp32);
  const plan_rule re = parse_plan_rule(R"(re:blk\.\d+\.ffn\.(gate|up)=int4/g32/sym/minmax/s16)");
  CHECK(re.pattern.type() == name_pattern::kind::regex);
  CHECK(re.pattern.matches("blk.1.ffn.up"));
  CHECK_FALSE(re.pattern.matches("blk.1.ffn.down"));
  CHECK(*re.force == parse_spec("int4/g32/sym/minmax/s16"));

  // Parsed rules plan exactly like the ones built in code (the test above).
  const toy_model m;
  const plan from_text = plan_builder{m.table, knapsack_policy{}}
                             .candidates({candidates[0], candidates[1], candidates[2]})
                             .rule(parse_plan_rule("*.attn.*>=8"))
                             .rule(parse_plan_rule("lm_head=fp16"))
                             .rule(parse_plan_rule("blk.0.ffn.down=fp32"))
                             .rule(parse_plan_rule(R"(re:blk\.\d+\.ffn\.(gate|up)<=2)"))
                             .build(m.shapes);
  const plan in_code = plan_builder{m.table, knapsack_policy{}}
                           .candidates({candidates[0], candidates[1], candidates[2]})
                           .rule(plan_rule::at_least("*.attn.*", 8))
                           .rule(plan_rule::use("lm_head", parse_spec("fp16")))
                           .rule(plan_rule::never_quantize("blk.0.ffn.down"))
                           .rule(plan_rule::at_most(name_pattern::regex(R"(blk\.\d+\.ffn\.(gate|up))"), 2))
                           .build(m.shapes);
  REQUIRE(from_text.entries.size() == in_code.entries.size());
  for (std::size_t i = 0; i < in_code.entries.size(); ++i) CHECK(from_text.entries[i].spec == in_code.entries[i].spec);

  for (const char* bad : {"lm_head", "=int8", "lm_head=", "lm_head=int9", "x>=0", "x<=33", "x>=8bits", "x>=", "re:=int8",
                          "re:blk\\.([=int8"}) {
    INFO(bad);
    CHECK(test::error_code_of([&] { (void)parse_plan_rule(bad); }) == errc::parse_error);
  }
  CHECK_THROWS_WITH(parse_plan_rule("lm_head=int9"), Catch::Contains("plan rule 'lm_head=int9'"));
}

TEST_CASE("tied groups: one choice, validated", "[plan][ties]") {
  const toy_model m;
  // Under a tight budget the group's cost and loss are the members' sums: compare with brute force.
  const double budget = 0.3 * static_cast<double>(total_bytes(m, candidates[0]) + total_bytes(m, candidates[2]));
  const plan p = plan_builder{m.table, greedy_policy{}, byte_budget{budget}}.tie(qkv).build();
  CHECK(p.spec_of("blk.0.attn.q") == p.spec_of("blk.0.attn.v"));
  const allocation_problem prob = plan_builder{m.table, knapsack_policy{}, byte_budget{budget}}.tie(qkv).problem(m.shapes);
  REQUIRE(prob.items.size() == 5);  // the group + 4 untied layers
  double group_bytes = 0.0, group_loss = 0.0;
  for (const auto& name : qkv) {
    const layer_shape& l = m.shapes[static_cast<std::size_t>(&name - &qkv[0])];
    group_bytes += bytes_cost(l, candidates[1]);
    group_loss += m.table.loss(l, candidates[1]);
  }
  CHECK(prob.items[0][1].cost == group_bytes);
  CHECK(prob.items[0][1].loss == Approx(group_loss).epsilon(1e-15));

  auto base = [&] { return plan_builder{m.table, knapsack_policy{}, byte_budget{1e9}}; };
  CHECK_THROWS_WITH(base().tie({"blk.0.attn.q", "blk.9.attn.k"}).build(), Catch::Contains("'blk.9.attn.k' is not in the model"));
  CHECK_THROWS_WITH(base().tie(qkv).tie({"blk.0.attn.q", "lm_head"}).build(), Catch::Contains("tied twice"));
  CHECK_THROWS_WITH(base().tie({}).build(), Catch::Contains("empty tied group"));
  const auto e = test::error_of([&] {
    (void)base().tie(gate_up).rule(plan_rule::at_least("blk.0.ffn.gate", 8)).rule(plan_rule::at_most("blk.0.ffn.up", 4)).build();
  });
  REQUIRE(e);
  CHECK(e->code() == errc::infeasible);
  CHECK_THAT(e->what(), Catch::Contains("blk.0.ffn.gate+blk.0.ffn.up allow no common quantizer"));
}

TEST_CASE("impossible budgets fail at once, before any loss is asked for, with the reachable range", "[plan][errors]") {
  const toy_model m;
  const std::size_t lo = total_bytes(m, candidates[0]), hi = total_bytes(m, candidates[3]);
  const auto e = test::error_of([&] {
    (void)plan_builder{untouchable_source{}, knapsack_policy{}, byte_budget{static_cast<double>(lo - 1)}}
        .candidates(candidates)
        .build(m.shapes);
  });
  REQUIRE(e);
  CHECK(e->code() == errc::infeasible);
  CHECK_THAT(e->what(), Catch::Contains("smallest reachable size is " + std::to_string(lo) + " bytes") &&
                            Catch::Contains("the largest " + std::to_string(hi) + " bytes"));
  // The same budget in bits per weight, and for every policy (threshold included).
  const double weights = 64 * 64 + 2 * 32 * 64 + 2 * 96 * 64 + 64 * 96 + 100 * 70;
  const double min_bits = 8.0 * static_cast<double>(lo) / weights;
  CHECK_THROWS_WITH((plan_builder{m.table, threshold_policy{}, bits_budget{min_bits * 0.99}}.build()),
                    Catch::Contains("bits/weight") && Catch::Contains("smallest reachable size is " +
                                                                      detail::format_number(min_bits) + " bits/weight"));
  CHECK_THROWS_AS((plan_builder{m.table, greedy_policy{}, byte_budget{-1.0}}.build()), error);
  CHECK_THROWS_AS((plan_builder{m.table, knapsack_policy{}, byte_budget{std::nan("")}}.build()), error);
  // The smallest reachable budget itself is fine.
  CHECK(plan_builder{m.table, knapsack_policy{}, byte_budget{static_cast<double>(lo)}}.build().bytes() == lo);
}

TEST_CASE("other constraints: bits per weight, a latency table, a custom cost", "[plan][constraints]") {
  const toy_model m;
  // Bits per weight, every scale and zero point counted.
  const plan b = plan_builder{m.table, knapsack_policy{}, bits_budget{5.0}}.build();
  CHECK(b.bits_per_weight() <= 5.0);
  CHECK(b.unit == "bits");
  CHECK(b.predicted_loss() == Approx(brute_force(m, {}, 5.0 * b.weights() / 8.0, bytes_cost).loss).epsilon(1e-12));
  // Latency: a per-format, per-shape table (INT2 unpacking made slow on purpose: not monotone in bytes).
  latency_table lt;
  for (const auto& l : m.shapes) {
    const double n = static_cast<double>(l.size());
    lt.add(format_id::int2, l.rows, l.cols, 3.0e-9 * n)
        .add(format_id::int4, l.rows, l.cols, 0.8e-9 * n)
        .add(format_id::int8, l.rows, l.cols, 1.0e-9 * n)
        .add(format_id::fp16, l.rows, l.cols, 2.0e-9 * n);
  }
  lt.add(candidates[2], 100, 70, 0.5e-9 * 7000);  // an exact-spec entry wins over the format's
  CHECK(lt(candidates[2], 100, 70) == 0.5e-9 * 7000);
  CHECK(lt(parse_spec("int8/tensor"), 100, 70) == 1.0e-9 * 7000);
  CHECK_THROWS_WITH(lt(parse_spec("bf16"), 64, 64), Catch::Contains("bf16 at 64x64"));
  const latency_budget lat{lt, 40e-6};
  const plan t = plan_builder{m.table, knapsack_policy{}, lat}.build();
  CHECK(t.unit == "s");
  CHECK(t.cost() <= 40e-6);
  CHECK(t.proven_optimal);
  const auto latency_cost = [&](const layer_shape& l, const quant_spec& q) { return lt(q, l.rows, l.cols); };
  CHECK(t.predicted_loss() == Approx(brute_force(m, {}, 40e-6, latency_cost).loss).epsilon(1e-12));
  CHECK(t.table().find("cost (s)") != std::string::npos);
  CHECK_THROWS_AS((plan_builder{m.table, knapsack_policy{}, latency_budget{}}.build()), error);
  // A user's constraint and source, with candidates from the planner.
  const plan c = plan_builder{bits_source{}, knapsack_policy{}, weight_bits_constraint{6.0 * 64 * 64}}
                     .candidates(candidates)
                     .build({{"a", 64, 64}, {"b", 64, 64}});
  CHECK(c.unit == "weight-bits");
  CHECK(c.cost() <= 6.0 * 64 * 64);
  // At 6 bits per weight over two equal layers: int2 + int4 (either way round) is the best split.
  CHECK(bits_of(c.spec_of("a").format) + bits_of(c.spec_of("b").format) == 6);
  CHECK(c.predicted_loss() == Approx(64.0 * 64.0 * (0.25 + 0.0625)));
  CHECK_THROWS_WITH((plan_builder{bits_source{}}.build({{"a", 64, 64}})), Catch::Contains("no candidate quantizers"));
}

TEST_CASE("a custom policy plugs in; a broken one is caught", "[plan][policy]") {
  const toy_model m;
  const plan big = plan_builder{m.table, most_expensive_policy{}}.tie(qkv).build();
  CHECK(big.policy == "custom");
  for (const auto& e : big.entries) CHECK(e.spec == parse_spec("fp16"));
  CHECK(big.bytes() == total_bytes(m, parse_spec("fp16")));
  CHECK_THROWS_WITH((plan_builder{m.table, broken_policy{}}.build()), Catch::Contains("invalid choice"));
  static_assert(policy_name<knapsack_policy>() == "knapsack" && policy_name<most_expensive_policy>() == "custom");
}

TEST_CASE("least cost within a loss limit (cost as the objective)", "[plan][objective]") {
  const toy_model m;
  const double least = plan_builder{m.table}.build().predicted_loss();
  const double most = plan_builder{m.table, knapsack_policy{}, byte_budget{static_cast<double>(total_bytes(m, candidates[0]))}}
                          .build()
                          .predicted_loss();
  for (double f : {0.0, 0.01, 0.2, 0.7, 1.0}) {
    const double limit = (least + f * (most - least)) * (1 + 1e-9);  // sums in another order may round up
    const plan p = plan_builder{m.table}.tie(gate_up).build_for_loss(limit);
    CHECK(p.goal == plan_goal::least_cost);
    CHECK(p.predicted_loss() <= limit);
    CHECK(p.within_limit());
    CHECK(p.proven_optimal);
    // No plan is smaller with a loss within the limit: the byte budget one byte below finds none.
    if (p.bytes() > total_bytes(m, candidates[0])) {
      const plan smaller = plan_builder{m.table, knapsack_policy{}, byte_budget{static_cast<double>(p.bytes() - 1)}}
                               .tie(gate_up)
                               .build();
      CHECK(smaller.predicted_loss() > limit);
    }
  }
  CHECK_THROWS_WITH(plan_builder{m.table}.build_for_loss(least * 0.5), Catch::Contains("smallest reachable predicted loss"));
}

TEST_CASE("Pareto plans: sorted by size, strictly better loss, both ends", "[plan][pareto]") {
  const toy_model m;
  const auto front = plan_builder{m.table}.tie(qkv).pareto(20);
  REQUIRE(front.size() >= 3);
  for (std::size_t i = 1; i < front.size(); ++i) {
    CHECK(front[i].bytes() > front[i - 1].bytes());
    CHECK(front[i].predicted_loss() < front[i - 1].predicted_loss());
  }
  CHECK(front.front().bytes() == total_bytes(m, candidates[0]));
  CHECK(front.back().predicted_loss() == Approx(plan_builder{m.table}.build().predicted_loss()).epsilon(1e-12));
  for (const auto& p : front) CHECK(p.proven_optimal);
  std::vector<strategy_row> rows;
  for (std::size_t i = 0; i < front.size(); ++i) rows.push_back({"pareto " + std::to_string(i), &front[i]});
  CHECK(strategy_table(rows).find("| pareto 0 | " + std::to_string(front[0].bytes()) + " |") != std::string::npos);
}

TEST_CASE("upgrades_of: a plan nested on a smaller one only moves layers to bigger, better types", "[plan][pareto]") {
  const toy_model m;
  const auto front = plan_builder{m.table}.pareto(12);
  REQUIRE(front.size() >= 4);
  const plan& base = front[1];
  const sensitivity_table up = upgrades_of(m.table, base);
  REQUIRE(up.layers().size() == m.table.layers().size());
  for (const plan_entry& e : base.entries) {
    const layer_shape l{e.layer, e.rows, e.cols};
    const auto kept = up.candidates(l);
    CHECK(std::find(kept.begin(), kept.end(), e.spec) != kept.end());  // its own type stays
    for (const quant_spec& q : kept) {
      CHECK(quantized_bytes(q, e.rows, e.cols) >= e.bytes);
      CHECK(up.loss(l, q) <= e.loss);
      CHECK(up.loss(l, q) == m.table.loss(l, q));
    }
    for (const quant_spec& q : m.table.candidates(l))  // what is left out is cheaper or worse
      if (std::find(kept.begin(), kept.end(), q) == kept.end())
        CHECK((quantized_bytes(q, e.rows, e.cols) < e.bytes || m.table.loss(l, q) > e.loss));
  }
  // Planned at a larger plan's budget: no layer below base's type, within the budget, no better than the
  // unrestricted plan at that budget (which may downgrade some layers to upgrade others).
  for (std::size_t i = 2; i < front.size(); ++i) {
    const plan nested = plan_builder{up, knapsack_policy{}, byte_budget{static_cast<double>(front[i].bytes())}}.build();
    CHECK(nested.bytes() <= front[i].bytes());
    CHECK(nested.predicted_loss() >= front[i].predicted_loss() - 1e-12);
    CHECK(nested.predicted_loss() <= base.predicted_loss() + 1e-12);
    for (std::size_t k = 0; k < nested.entries.size(); ++k) {
      CHECK(nested.entries[k].layer == base.entries[k].layer);
      CHECK(nested.entries[k].bytes >= base.entries[k].bytes);
    }
  }
  // The cheapest plan: every spec no worse is allowed (each costs at least as much); the least-loss plan:
  // only its own spec (nothing has less loss).
  const sensitivity_table from_cheapest = upgrades_of(m.table, front.front()), from_best = upgrades_of(m.table, front.back());
  for (const plan_entry& e : front.front().entries) {
    const layer_shape l{e.layer, e.rows, e.cols};
    std::size_t no_worse = 0;
    for (const quant_spec& q : m.table.candidates(l)) no_worse += m.table.loss(l, q) <= e.loss ? 1 : 0;
    CHECK(from_cheapest.candidates(l).size() == no_worse);
    CHECK(no_worse >= 2);
  }
  for (const plan_entry& e : front.back().entries) {
    const auto kept = from_best.candidates({e.layer, e.rows, e.cols});
    REQUIRE(kept.size() == 1);
    CHECK(kept[0] == e.spec);
  }
}

TEST_CASE("threshold plan from measured drops", "[plan][threshold]") {
  const toy_model m;
  sensitivity_table drops;  // drops at int4 (the reference precision), others derived
  const double int4_drop[] = {0.03, 0.01, 0.001, 0.0, 0.0001, 0.004, 0.05};
  for (std::size_t i = 0; i < m.shapes.size(); ++i)
    for (const auto& c : candidates)
      drops.add(m.shapes[i].name, m.shapes[i].rows, m.shapes[i].cols, c,
                int4_drop[i] * std::ldexp(1.0, 4 - bits_of(c.format)));
  const plan p = plan_builder{drops, threshold_policy{}}.build();
  CHECK(p.spec_of("blk.0.attn.q").format == format_id::fp16);  // high
  CHECK(p.spec_of("blk.0.attn.k").format == format_id::int8);  // medium
  CHECK(p.spec_of("blk.0.attn.v") == candidates[1]);           // low: int4
  CHECK(p.spec_of("blk.0.ffn.gate") == candidates[0]);         // insensitive: int2
  CHECK(p.spec_of("blk.0.ffn.up") == candidates[0]);
  CHECK(p.spec_of("blk.0.ffn.down") == candidates[1]);
  CHECK(p.spec_of("lm_head").format == format_id::fp16);
  // A budget below the threshold plan's size: the plan says it does not fit.
  const plan over = plan_builder{drops, threshold_policy{}, byte_budget{static_cast<double>(p.bytes() - 1)}}.build();
  CHECK(over == [&] { plan x = p; x.limit = static_cast<double>(p.bytes() - 1); return x; }());
  CHECK_FALSE(over.within_limit());
}

TEST_CASE("quantize_model: checks the model against the plan first; any WeightView works", "[plan][quantize_model]") {
  const toy_model m;
  const plan p = plan_builder{m.table, knapsack_policy{}, bits_budget{6.0}}.build();
  plan other = p;
  other.entries[0].layer = "ghost";
  CHECK_THROWS_WITH(mixprec::quantize_model(other, m.views), Catch::Contains("'ghost' is not in the model"));
  other = p;
  other.entries[0].rows = 3;
  CHECK_THROWS_AS(mixprec::quantize_model(other, m.views), error);
  other = p;
  other.entries.pop_back();
  CHECK_THROWS_WITH(mixprec::quantize_model(other, m.views), Catch::Contains("'lm_head' is not in the plan"));
  std::vector<layer> twice = m.views;
  twice.push_back(m.views[0]);
  CHECK_THROWS_WITH(mixprec::quantize_model(p, twice), Catch::Contains("appears twice"));
  std::vector<layer> empty = m.views;
  empty[1].data = nullptr;
  CHECK_THROWS_AS(mixprec::quantize_model(p, empty), error);
  // A user's own view type, strided into a bigger buffer.
  struct my_layer {
    std::string name;
    const row_matrix* storage;
    index_t first_col, cols;
    [[nodiscard]] Eigen::Map<const row_matrix, 0, Eigen::OuterStride<>> weight() const {
      return {storage->data() + first_col, storage->rows(), cols, Eigen::OuterStride<>(storage->cols())};
    }
  };
  static_assert(WeightView<my_layer>);
  row_matrix big = test::gaussian(40, 100, 0.05f, 3);
  const row_matrix dense = big.middleCols(10, 64);
  const std::vector<my_layer> mine = {{"slice", &big, 10, 64}};
  const std::vector<layer_shape> shapes = shapes_of(mine);
  REQUIRE(shapes == std::vector<layer_shape>{{"slice", 40, 64}});
  const plan one = plan_builder{weight_error_source{&mine}, knapsack_policy{}}.candidates(candidates).build(shapes);
  const quantized_model q = mixprec::quantize_model(one, mine);
  CHECK(q.bytes() == one.bytes());
  const quantized_tensor ref = quantize(dense, one.entries[0].spec);
  CHECK(std::equal(q.at("slice").codes().begin(), q.at("slice").codes().end(), ref.codes().begin(), ref.codes().end()));
  // weight_error_source gives the same losses as the independently computed table.
  const weight_error_source src{&m.views};
  for (const auto& l : m.shapes)
    for (const auto& c : candidates) CHECK(src.loss(l, c) == Approx(m.table.loss(l, c)).epsilon(1e-12));
  CHECK_THROWS_AS(src.loss({"nope", 1, 1}, candidates[0]), error);
}

TEST_CASE("sensitivity table: validation and lookups", "[plan][sources]") {
  sensitivity_table t;
  t.add("a", 4, 8, "int8", 0.5).add("a", 4, 8, parse_spec("fp16"), 0.0).add("b", 2, 2, "int4/g32", 1.0);
  CHECK(t.layers() == std::vector<layer_shape>{{"a", 4, 8}, {"b", 2, 2}});
  CHECK(t.candidates({"a", 4, 8}) == std::vector<quant_spec>{parse_spec("int8"), parse_spec("fp16")});
  CHECK(t.loss({"a", 4, 8}, parse_spec("fp16")) == 0.0);
  CHECK_THROWS_WITH(t.loss({"a", 4, 8}, parse_spec("int4/g32")), Catch::Contains("'a' at int4/g32"));
  CHECK_THROWS_WITH(t.loss({"c", 4, 8}, parse_spec("int8")), Catch::Contains("no layer 'c'"));
  CHECK_THROWS_WITH(t.loss({"a", 4, 9}, parse_spec("int8")), Catch::Contains("4x9 in the model"));
  CHECK_THROWS_WITH(t.add("a", 4, 9, "int4/g32", 0.1), Catch::Contains("earlier rows say 4x8"));
  CHECK_THROWS_WITH(t.add("a", 4, 8, "int8", 0.1), Catch::Contains("given twice"));
  CHECK_THROWS_AS(t.add("a", 4, 8, "int2/g32", std::nan("")), error);
  CHECK_THROWS_AS(t.add("z", 0, 8, "int2/g32", 0.0), error);
  CHECK_THROWS_AS(t.add("z", 1, 8, "int3", 0.0), error);
  // A layer list with a different shape than the table's is caught by the planner.
  CHECK_THROWS_AS(plan_builder{t}.build({{"a", 4, 9}}), error);
  CHECK_THROWS_WITH(plan_builder{t}.build({{"a", 4, 8}, {"a", 4, 8}}), Catch::Contains("appears twice"));
  CHECK_THROWS_AS(plan_builder{t}.build({}), error);
}

TEST_CASE("name patterns: glob and regex", "[plan][rules]") {
  CHECK(glob_match("*.attn.*", "blk.0.attn.q"));
  CHECK_FALSE(glob_match("*.attn.*", "blk.0.ffn.up"));
  CHECK(glob_match("lm_head", "lm_head"));
  CHECK_FALSE(glob_match("lm_head", "lm_head2"));
  CHECK(glob_match("blk.?.ffn*", "blk.3.ffn.down"));
  CHECK_FALSE(glob_match("blk.?.ffn*", "blk.13.ffn.down"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("a*b*c", "axxbyyc"));
  CHECK_FALSE(glob_match("a*b*c", "axxbyy"));
  CHECK(glob_match("**a", "bba"));
  const name_pattern re = name_pattern::regex(R"(blk\.\d+\.attn_v)");
  CHECK(re.matches("blk.12.attn_v"));
  CHECK(re.matches("blk.12.attn_v.bias"));  // searched in the name, as llama.cpp's --tensor-type
  CHECK(re.matches("xblk.1.attn_v"));
  CHECK_FALSE(re.matches("blk.x.attn_v"));
  const name_pattern anchored = name_pattern::regex(R"(^blk\.\d+\.attn_v$)");
  CHECK(anchored.matches("blk.12.attn_v"));
  CHECK_FALSE(anchored.matches("blk.12.attn_v.bias"));  // anchors make it a whole-name match
  CHECK_FALSE(anchored.matches("xblk.1.attn_v"));
  CHECK(re.type() == name_pattern::kind::regex);
  const name_pattern g = "blk.*";
  CHECK(g.type() == name_pattern::kind::glob);
  CHECK_FALSE(name_pattern::glob("a.b") == name_pattern::regex("a.b"));
  CHECK_FALSE(name_pattern::glob("a.b").matches("axb"));
  CHECK(name_pattern::regex("a.b").matches("axb"));
}
