// Sensitivity classes at and around every boundary, suggestions, and the report built from them.
#include <catch2/catch.hpp>

#include <limits>

#include "mixprec/sensitivity/classify.hpp"
#include "mixprec/sensitivity/report.hpp"

using namespace mixprec;

TEST_CASE("class boundaries follow the seed's table (fractions)", "[sensitivity][classify]") {
  using c = sensitivity_class;
  // high: > 2 %.
  CHECK(classify(0.0201) == c::high);
  CHECK(classify(0.5) == c::high);
  CHECK(classify(std::numeric_limits<double>::infinity()) == c::high);
  // medium: 0.5 % .. 2 %, both ends included.
  CHECK(classify(0.02) == c::medium);
  CHECK(classify(0.01) == c::medium);
  CHECK(classify(0.005) == c::medium);
  // low: below 0.5 %, above "about 0".
  CHECK(classify(0.0049) == c::low);
  CHECK(classify(0.001) == c::low);
  CHECK(classify(0.00051) == c::low);
  // insensitive: <= 0.05 % by default.
  CHECK(classify(0.0005) == c::insensitive);
  CHECK(classify(0.0001) == c::insensitive);
  CHECK(classify(0.0) == c::insensitive);
  // Drops computed in double land on the boundary they mean.
  CHECK(0.905 - 0.9 > 0.005);
  CHECK(classify(0.905 - 0.9) == c::medium);
  CHECK(0.92 - 0.9 > 0.02);
  CHECK(classify(0.92 - 0.9) == c::medium);
  // Negative drops (the quantized model scored better) count by magnitude.
  CHECK(classify(-0.03) == c::high);
  CHECK(classify(-0.001) == c::low);
  CHECK_THROWS_AS(classify(std::nan("")), error);
}

TEST_CASE("thresholds and suggestions are configurable", "[sensitivity][classify]") {
  using c = sensitivity_class;
  const class_thresholds t{.high = 0.05, .medium = 0.02, .insensitive = 0.0};
  CHECK(classify(0.04, t) == c::medium);
  CHECK(classify(0.01, t) == c::low);
  CHECK(classify(1e-12, t) == c::low);  // epsilon 0: only an exact 0 is insensitive
  CHECK(classify(0.0, t) == c::insensitive);
  CHECK_THROWS_AS(classify(0.01, {0.01, 0.02, 0.0}), error);
  CHECK_THROWS_AS(classify(0.01, {0.02, 0.01, -0.1}), error);
  CHECK_THROWS_AS(classify(0.01, {std::numeric_limits<double>::infinity(), 0.01, 0.0}), error);
  const class_suggestions s;
  CHECK(s[c::high] == parse_spec("fp16"));
  CHECK(s[c::medium] == parse_spec("int8/channel"));
  CHECK(s[c::low].format == format_id::int4);
  CHECK(s[c::insensitive].format == format_id::int4);
  // Cheaper going down the table.
  const index_t r = 4096, k = 4096;
  CHECK(bits_per_weight(s[c::high], r, k) > bits_per_weight(s[c::medium], r, k));
  CHECK(bits_per_weight(s[c::medium], r, k) > bits_per_weight(s[c::low], r, k));
  CHECK(bits_per_weight(s[c::low], r, k) > bits_per_weight(s[c::insensitive], r, k));
  CHECK(parse_sensitivity_class("low") == c::low);
  CHECK_THROWS_AS(parse_sensitivity_class("lowish"), error);
}

TEST_CASE("reports: absolute and relative drops, custom classes, the table", "[sensitivity][report]") {
  probe_report probe;
  probe.baseline = 10.0;  // e.g. a perplexity
  const quant_spec q4 = parse_spec("int4/g32");
  probe.results = {{"a", q4, 10.3, 0.3}, {"b", q4, 10.1, 0.1}, {"c", q4, 10.001, 0.001}};
  // Absolute: 0.3 and 0.1 are 30 % and 10 %: high.
  const auto abs = make_report(probe, "ppl");
  CHECK(abs.rows[0].cls == sensitivity_class::high);
  CHECK(abs.rows[1].cls == sensitivity_class::high);
  // Relative: 3 %, 1 %, 0.01 %.
  report_options o;
  o.metric_name = "ppl";
  o.kind = drop_kind::relative;
  o.suggestions.high = parse_spec("int8");
  const auto rel = make_report(probe, o);
  CHECK(rel.kind == drop_kind::relative);
  CHECK(rel.rows[0].drop == Approx(0.03));
  CHECK(rel.rows[0].cls == sensitivity_class::high);
  CHECK(rel.rows[0].suggestion == "int8/channel/sym/minmax/s32");
  CHECK(rel.rows[1].cls == sensitivity_class::medium);
  CHECK(rel.rows[2].cls == sensitivity_class::insensitive);
  const std::string table = rel.table();
  CHECK(table.find("ppl at full precision: 10 (relative drops)") != std::string::npos);
  CHECK(table.find("| layer | quantized as | ppl | drop | class | suggestion |") != std::string::npos);
  CHECK(table.find("| a | int4/g32/sym/minmax/s32 | 10.3 | 3.000 % | high | int8/channel/sym/minmax/s32 |") !=
        std::string::npos);
  probe.baseline = 0.0;
  CHECK_THROWS_AS(make_report(probe, o), error);
  o.thresholds.medium = 0.5;
  CHECK_THROWS_AS(make_report(probe, report_options{.thresholds = {0.02, 0.5, 0.0}}), error);
}
