// Plan and sensitivity-table JSON: round trips that give equal objects, and files that no longer add up
// are rejected with mixprec::error(parse_error).
#include <catch2/catch.hpp>

#include <limits>

#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

sensitivity_table toy_table() {
  sensitivity_table t;
  const char* specs[] = {"int2/g32/asym/minmax/s16", "int4/g128/sym/mse/sbf16", "int8/channel/sym/p99.9/s32", "fp16"};
  const struct {
    const char* name;
    index_t rows, cols;
  } layers[] = {{"blk.0.attn_q", 64, 64}, {"blk.0.attn_k", 16, 64}, {"blk.0.ffn_up", 172, 64}, {"output", 100, 70}};
  double loss = 0.123456789012345678;
  for (const auto& l : layers)
    for (const char* s : specs) {
      t.add(l.name, l.rows, l.cols, s, loss);
      loss *= 0.3183098861837907;  // awkward doubles, to test that they survive
    }
  return t;
}

plan round_trip(const plan& p) { return nlohmann::json::parse(nlohmann::json(p).dump()).get<plan>(); }

}  // namespace

TEST_CASE("plan JSON round trip", "[plan][json]") {
  const sensitivity_table t = toy_table();
  std::vector<plan> plans;
  plans.push_back(plan_builder{t, knapsack_policy{}, bits_budget{7.3}}.tie({"blk.0.attn_q", "blk.0.attn_k"}).build());
  plans.push_back(plan_builder{t}.rule(plan_rule::never_quantize("output")).build());  // no limit: null
  plans.push_back(plan_builder{t, greedy_policy{}}.build_for_loss(0.01));
  plans.push_back(plan_builder{t, threshold_policy{}}.build());
  latency_table lt;
  for (const auto& l : t.layers())
    for (auto f : {format_id::int2, format_id::int4, format_id::int8, format_id::fp16})
      lt.add(f, l.rows, l.cols, 1e-9 * static_cast<double>(l.size()) * (1 + bits_of(f)));
  plans.push_back(plan_builder{t, lagrangian_policy{}, latency_budget{lt, 1e-4}}.build());
  // A stochastic-rounding spec carries its seed.
  quant_spec sr = parse_spec("int4/g32/sym/minmax/s16/stochastic");
  sr.seed = 0xfeedbeefcafe1234ull;
  plans.push_back(plan_builder{loss_function_source{[](const layer_shape&, const quant_spec&) { return 0.25; }}}
                      .candidates({sr})
                      .build(t.layers()));
  for (const plan& p : plans) {
    INFO(nlohmann::json(p).dump(2));
    const plan back = round_trip(p);
    CHECK(back == p);
    CHECK(round_trip(back) == p);
    const nlohmann::json j = p;
    CHECK(j["bytes"] == p.bytes());
    CHECK(j["bits_per_weight"] == p.bits_per_weight());
  }
  CHECK(nlohmann::json(plans[1])["limit"].is_null());
  CHECK(round_trip(plans[1]).limit == std::numeric_limits<double>::infinity());
  CHECK(round_trip(plans[2]).goal == plan_goal::least_cost);
  CHECK(round_trip(plans[5]).entries[0].spec.seed == 0xfeedbeefcafe1234ull);
}

TEST_CASE("plan JSON that does not add up is rejected", "[plan][json]") {
  const plan p = plan_builder{toy_table(), knapsack_policy{}, bits_budget{6.0}}.build();
  const nlohmann::json j = p;
  auto rejects = [](const nlohmann::json& bad, const char* what) {
    INFO(what);
    CHECK(test::error_code_of([&] { (void)bad.get<plan>(); }) == errc::parse_error);
  };
  nlohmann::json bad = j;
  bad["layers"][0]["bytes"] = p.entries[0].bytes + 1;
  rejects(bad, "wrong bytes");
  bad = j;
  bad["layers"][1]["spec"] = "int4/g0";
  rejects(bad, "bad spec");
  bad = j;
  bad["layers"][1]["rows"] = 0;
  rejects(bad, "bad shape");
  bad = j;
  bad["layers"][2].erase("loss");
  rejects(bad, "missing loss");
  bad = j;
  bad["goal"] = "fastest";
  rejects(bad, "bad goal");
  bad = j;
  bad["layers"] = nlohmann::json::array();
  rejects(bad, "no layers");
  bad = j;
  bad["proven_optimal"] = "yes";
  rejects(bad, "wrong type");
  // Numbers that nlohmann's get<T>() would cast without a check (a float beyond long's range is UB;
  // -1 as a size_t wraps; 2.5 truncates): found by the plan_json fuzzer.
  bad = j;
  bad["layers"][0]["rows"] = 4.55556e+30;
  rejects(bad, "float rows beyond int64");
  bad = j;
  bad["layers"][0]["cols"] = 64.0;
  rejects(bad, "float cols, however whole");
  bad = j;
  bad["layers"][0]["bytes"] = -1;
  rejects(bad, "negative bytes");
  bad = j;
  bad["layers"][0]["rows"] = std::numeric_limits<std::uint64_t>::max();
  rejects(bad, "rows beyond int64");
  bad = j;
  bad["layers"][0]["rows"] = std::int64_t{1} << 40;
  bad["layers"][0]["cols"] = std::int64_t{1} << 40;
  rejects(bad, "rows x cols beyond int64");
}

TEST_CASE("quantized_bytes refuses shapes whose size does not fit 64 bits", "[plan][json]") {
  const quant_spec s = parse_spec("int4/g32/sym/mse/s16");  // 4-bit codes, one FP16 scale per 32
  CHECK(quantized_bytes(s, 8, 64) == 8 * 32 + 8 * 2 * 2);
  CHECK_THROWS_AS(quantized_bytes(s, -1, 64), error);
  CHECK_THROWS_AS(quantized_bytes(s, std::int64_t{1} << 40, std::int64_t{1} << 40), error);
  CHECK_THROWS_AS(quantized_bytes(s, 1, std::numeric_limits<index_t>::max()), error);
}

TEST_CASE("sensitivity table JSON round trip", "[plan][json]") {
  const sensitivity_table t = toy_table();
  const sensitivity_table back = nlohmann::json::parse(nlohmann::json(t).dump()).get<sensitivity_table>();
  REQUIRE(back.rows().size() == t.rows().size());
  for (std::size_t i = 0; i < t.rows().size(); ++i) {
    CHECK(back.rows()[i].layer == t.rows()[i].layer);
    REQUIRE(back.rows()[i].losses.size() == t.rows()[i].losses.size());
    for (std::size_t k = 0; k < t.rows()[i].losses.size(); ++k) {
      CHECK(back.rows()[i].losses[k].spec == t.rows()[i].losses[k].spec);
      CHECK(back.rows()[i].losses[k].loss == t.rows()[i].losses[k].loss);
    }
  }
  // Plans from the original and the reloaded table agree.
  CHECK(plan_builder{back, knapsack_policy{}, bits_budget{5.0}}.build() ==
        plan_builder{t, knapsack_policy{}, bits_budget{5.0}}.build());
  nlohmann::json bad = t;
  bad["layers"][0]["losses"][1]["loss"] = "high";
  CHECK_THROWS_AS(bad.get<sensitivity_table>(), error);
  bad = t;
  bad["layers"][0]["rows"] = 65;  // contradicts nothing yet, but the next layer row...
  bad["layers"][1]["name"] = "blk.0.attn_q";  // ...repeats the name with another shape
  CHECK_THROWS_AS(bad.get<sensitivity_table>(), error);
}

namespace {

// text with `what` inserted right after the first occurrence of `after`.
std::string inserted(std::string text, const std::string& after, const std::string& what) {
  const std::size_t at = text.find(after);
  REQUIRE(at != std::string::npos);
  return text.insert(at + after.size(), what);
}

// The error `fn` throws: a parse_error whose message names `source` and every one of `needles`.
template <class Fn>
void refused_naming(Fn&& fn, const std::string& source, std::initializer_list<std::string> needles) {
  const auto e = test::error_of(fn);
  REQUIRE(e);
  CHECK(e->code() == errc::parse_error);
  CHECK_THAT(e->what(), Catch::Contains("'" + source + "'"));
  for (const std::string& n : needles) CHECK_THAT(e->what(), Catch::Contains(n));
}

}  // namespace

TEST_CASE("plan JSON text: a key given twice, a raw NUL and a layer planned twice are refused by name", "[plan][json]") {
  const plan p = plan_builder{toy_table(), knapsack_policy{}, bits_budget{6.0}}.build();
  const std::string text = nlohmann::json(p).dump();
  CHECK(parse_plan(text, "p.json") == p);
  CHECK(parse_plan(nlohmann::json(p).dump(2), "p.json") == p);

  // A second "spec" in a layer: nlohmann keeps the last and reads the plan as if the first were not
  // there; a reader that keeps the first quantizes that layer otherwise.
  const std::string two_specs = inserted(text, "\"layers\":[{", "\"spec\":\"int8\",");
  refused_naming([&] { (void)parse_plan(two_specs, "p.json"); }, "p.json", {"duplicate key \"spec\"", "\"layers\"[0]"});
  // A second "limit" at the top level.
  const std::string two_limits = inserted(text, "{", "\"limit\":1e300,");
  refused_naming([&] { (void)parse_plan(two_limits, "p.json"); }, "p.json", {"duplicate key \"limit\"", "the top level"});
  // nlohmann stops at a NUL byte: a second document after it was never read.
  refused_naming([&] { (void)parse_plan(text + std::string(1, '\0') + two_specs, "p.json"); }, "p.json",
                 {"NUL byte at offset " + std::to_string(text.size())});
  // Text that is not JSON is a parse_error naming the source too.
  refused_naming([&] { (void)parse_plan(text.substr(0, text.size() / 2), "p.json"); }, "p.json", {"not JSON"});

  // The same layer planned twice (whichever entry a reader applies, the totals count both).
  nlohmann::json j = p;
  const std::size_t n = j["layers"].size();
  j["layers"].push_back(nlohmann::json(j["layers"][1]));
  const std::string layer = p.entries[1].layer;
  const std::string where = "layers[1] and layers[" + std::to_string(n) + "]";
  refused_naming([&] { (void)parse_plan(j.dump(), "twice.json"); }, "twice.json", {"layer '" + layer + "' is planned twice", where});
  const auto e = test::error_of([&] { (void)j.get<plan>(); });  // from_json alone refuses it too
  REQUIRE(e);
  CHECK(e->code() == errc::parse_error);
  CHECK_THAT(e->what(), Catch::Contains("'" + layer + "' is planned twice"));
}

TEST_CASE("sensitivity table JSON text: a key, a layer or a candidate given twice is refused by name", "[plan][json]") {
  const sensitivity_table t = toy_table();
  const std::string text = nlohmann::json(t).dump();
  const sensitivity_table back = parse_sensitivity_table(text, "t.json");
  REQUIRE(back.rows().size() == t.rows().size());
  CHECK(back.rows()[0].losses.size() == t.rows()[0].losses.size());

  const std::string two_losses = inserted(text, "\"losses\":[{", "\"loss\":0.0,");
  refused_naming([&] { (void)parse_sensitivity_table(two_losses, "t.json"); }, "t.json",
                 {"duplicate key \"loss\"", "\"layers\"[0].\"losses\"[0]"});

  const std::string first = t.rows()[0].layer.name;
  nlohmann::json j = t;
  j["layers"].push_back(nlohmann::json(j["layers"][0]));  // the layer listed again, same shape and candidates
  refused_naming([&] { (void)parse_sensitivity_table(j.dump(), "t.json"); }, "t.json", {"layer '" + first + "' is listed twice"});

  j = t;
  j["layers"][0]["losses"].push_back(nlohmann::json(j["layers"][0]["losses"][0]));  // one candidate twice in a layer
  refused_naming([&] { (void)parse_sensitivity_table(j.dump(), "t.json"); }, "t.json",
                 {"layer '" + first + "'", to_string(t.rows()[0].losses[0].spec), "given twice"});
}
