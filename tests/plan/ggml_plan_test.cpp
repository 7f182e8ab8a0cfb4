// Plans over llama.cpp's block types: the planner, rules with llama.cpp's --tensor-type semantics
// (regex searched, first forcing rule wins), the versioned plan JSON, and quantize_model, whose bytes are the
// plan's exactly.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/sensitivity/to_table.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

struct toy_model {
  std::map<std::string, row_matrix> weights;
  toy_model() {
    weights.emplace("blk.0.attn_v.weight", test::gaussian(32, 256, 0.02f, 1));
    weights.emplace("blk.0.attn_q.weight", test::gaussian(32, 256, 0.05f, 2));
    weights.emplace("blk.0.ffn_down.weight", test::gaussian(64, 96, 0.02f, 3));  // fits 32-blocks, not 256
    weights.emplace("output.weight", test::gaussian(48, 256, 0.01f, 4));
  }
  [[nodiscard]] model view() {
    model out;
    for (auto& [name, w] : weights) out.add(name, w);
    return out;
  }
  [[nodiscard]] sensitivity_table table(const std::vector<quant_spec>& specs) {
    const model m = view();
    std::vector<weight_score> scores;  // each layer at the specs whose blocks tile its rows
    for (const layer& l : m)
      for (const quant_spec& s : specs)
        if (fits(s, l.cols)) scores.push_back(analyze_weights(std::span<const layer>(&l, 1), {s}).at(0));
    return to_sensitivity_table(scores, m);
  }
};

std::vector<quant_spec> ladder() {
  return {parse_spec("q2_K"), parse_spec("q3_K"), parse_spec("q4_0"), parse_spec("q4_K"), parse_spec("q5_K"),
          parse_spec("q6_K"), parse_spec("q8_0"), parse_spec("f16")};
}

}  // namespace

TEST_CASE("a plan over ggml types meets its budget and quantize_model writes exactly its bytes", "[plan][ggml]") {
  toy_model m;
  const sensitivity_table t = m.table(ladder());
  for (double bpw : {3.0, 4.6, 6.0, 9.0}) {
    INFO(bpw << " bits/weight");
    const plan p = plan_builder{t, knapsack_policy{}, bits_budget{bpw}}.build();
    CHECK(p.bits_per_weight() <= bpw + 1e-12);
    CHECK(p.proven_optimal);
    CHECK(p.at("blk.0.ffn_down.weight").spec.ggml != ggml_type::q4_k);  // rows of 96 fit no 256-block type
    const quantized_model q = quantize_model(p, m.view());
    CHECK(q.bytes() == p.bytes());
    for (const auto& e : p.entries) CHECK(q.at(e.layer).spec() == e.spec);
    // The versioned JSON reads back to the same plan.
    const nlohmann::json j = p;
    CHECK(j.at("format") == "mixprec-plan");
    CHECK(j.at("version") == plan_format_version);
    CHECK(nlohmann::json::parse(j.dump()).get<plan>() == p);
  }
  // More bits never predict more loss.
  const double lo = plan_builder{t, knapsack_policy{}, bits_budget{3.5}}.build().predicted_loss();
  const double hi = plan_builder{t, knapsack_policy{}, bits_budget{6.5}}.build().predicted_loss();
  CHECK(hi < lo);
}

TEST_CASE("plan JSON refuses other formats and newer versions", "[plan][ggml][json]") {
  toy_model m;
  nlohmann::json j = plan_builder{m.table(ladder()), knapsack_policy{}, bits_budget{5.0}}.build();
  j.erase("format");
  j.erase("version");
  CHECK_NOTHROW(j.get<plan>());  // a file from before the keys existed reads as version 1
  j["version"] = plan_format_version + 1;
  CHECK(test::error_code_of([&] { (void)j.get<plan>(); }) == errc::unsupported);  // a newer version is not read
  j["version"] = 1;
  j["format"] = "mixprec-ggml-plan";
  CHECK_THROWS_AS(j.get<plan>(), error);
}

TEST_CASE("rules follow llama.cpp's --tensor-type: regexes searched, first forcing rule wins, bounds intersect",
          "[plan][ggml][rules]") {
  toy_model m;
  const sensitivity_table t = m.table(ladder());
  using kind = name_pattern::kind;
  {
    // `attn_v` is found inside blk.0.attn_v.weight (a glob or whole-name match would not).
    const plan p = plan_builder{t, knapsack_policy{}, bits_budget{5.0}}
                       .rule(parse_plan_rule("attn_v=q8_0", kind::regex))
                       .build();
    CHECK(to_string(p.spec_of("blk.0.attn_v.weight")) == "q8_0");
  }
  {
    // Two forcing rules match attn_v: the first decides, as llama.cpp's first matching pattern does.
    const plan p = plan_builder{t, knapsack_policy{}, bits_budget{9.0}}
                       .rule(parse_plan_rule("attn=q6_K", kind::regex))
                       .rule(parse_plan_rule("attn_v=q8_0", kind::regex))
                       .build();
    CHECK(to_string(p.spec_of("blk.0.attn_v.weight")) == "q6_K");
    CHECK(to_string(p.spec_of("blk.0.attn_q.weight")) == "q6_K");
  }
  {
    // A bound applies with everything else: nothing under 6 bits for ffn, even at a tight budget.
    const plan p = plan_builder{t, knapsack_policy{}, bits_budget{5.5}}
                       .rule(parse_plan_rule("re:ffn>=6"))
                       .build();
    CHECK(nominal_bits(p.spec_of("blk.0.ffn_down.weight")) >= 6);
  }
  {
    // `re:` in the default (glob) grammar is the same regex rule; a glob matches whole names only.
    CHECK(parse_plan_rule("re:attn_v=q8_0").pattern.matches("blk.0.attn_v.weight"));
    CHECK_FALSE(parse_plan_rule("attn_v=q8_0").pattern.matches("blk.0.attn_v.weight"));
    CHECK(parse_plan_rule("*attn_v*=q8_0").pattern.matches("blk.0.attn_v.weight"));
  }
  // A forced type whose blocks do not tile the layer's rows is a bad request, named.
  const auto e = test::error_of(
      [&] { (void)plan_builder{t, knapsack_policy{}, bits_budget{9.0}}.rule(parse_plan_rule("ffn_down=q4_K", kind::regex)).build(); });
  REQUIRE(e);
  CHECK(e->code() == errc::invalid_argument);
  CHECK_THAT(e->message(), Catch::Contains("blk.0.ffn_down.weight") && Catch::Contains("256"));
}
