// The sensitivity report's and the weight scores' JSON forms round-trip and reject bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "mixprec/sensitivity/report_json.hpp"
#include "support/data.hpp"

using namespace mixprec;

TEST_CASE("sensitivity report JSON round trip", "[sensitivity][json]") {
  probe_report probe;
  probe.baseline = 0.91;
  const quant_spec q = parse_spec("int4/g32");
  probe.results = {{"conv1", q, 0.80, 0.91 - 0.80},
                   {"fc2", q, 0.909, 0.91 - 0.909},
                   {"fc3", q, 0.1 / 3.0, 0.91 - 0.1 / 3.0},
                   {"head", q, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()}};
  report_options o;
  o.metric_name = "accuracy";
  o.thresholds = {.high = 0.03, .medium = 0.01, .insensitive = 0.0001};
  const sensitivity_report rep = make_report(probe, o);
  const nlohmann::json j = rep;
  CHECK(j["metric"] == "accuracy");
  CHECK(j["drops"] == "absolute");
  CHECK(j["thresholds"]["high"] == 0.03);
  CHECK(j["layers"][0]["class"] == "high");
  CHECK(j["layers"][1]["class"] == "low");
  CHECK(j["layers"][0]["suggestion"] == "fp16");
  CHECK(j["layers"][3]["drop"] == "inf");
  // Every field survives text and back, doubles exactly.
  const auto back = nlohmann::json::parse(j.dump()).get<sensitivity_report>();
  CHECK(back == rep);
  CHECK(back.rows[2].metric == 0.1 / 3.0);
  // Bad input.
  nlohmann::json bad = j;
  bad["layers"][0]["class"] = "extreme";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["layers"][0]["spec"] = "int5";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["layers"][0]["drop"] = "lots";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["drops"] = "sideways";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["thresholds"]["medium"] = 0.5;
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["layers"][0].erase("drop");
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), nlohmann::json::exception);
}

TEST_CASE("weight scores JSON round trip, non-finite values included", "[sensitivity][json]") {
  row_matrix w = test::gaussian(8, 64, 0.1f, 1);
  const std::vector<layer> layers = {make_layer("proj", w)};
  const auto scores = analyze_weights(layers, {parse_spec("int4/g32/sym/mse/s16"), parse_spec("fp32")});
  const nlohmann::json j = scores;
  CHECK(j[1]["sqnr_db"] == "inf");
  CHECK(j[0]["output_error"] == "nan");
  const auto back = nlohmann::json::parse(j.dump()).get<std::vector<weight_score>>();
  REQUIRE(back.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(back[i].layer == scores[i].layer);
    CHECK(back[i].spec == scores[i].spec);
    CHECK(back[i].bytes == scores[i].bytes);
    CHECK(back[i].bits_per_weight == scores[i].bits_per_weight);
    CHECK(back[i].sqnr_db == scores[i].sqnr_db);
    CHECK(back[i].mse == scores[i].mse);
    CHECK(back[i].max_abs_error == scores[i].max_abs_error);
    CHECK(back[i].cosine == scores[i].cosine);
    CHECK(back[i].weight_error == scores[i].weight_error);
    CHECK(std::isnan(back[i].output_error));
  }
}
