// The sensitivity report's JSON form round-trips and rejects bad input.
#include <catch2/catch.hpp>

#include "mixprec/sensitivity/report_json.hpp"

using namespace mixprec;

TEST_CASE("sensitivity report JSON round trip", "[sensitivity][json]") {
  probe_report probe;
  probe.baseline = 0.91;
  probe.results = {{"conv1", parse_spec("int4/g32"), 0.80, 0.11}, {"fc2", parse_spec("int4/g32"), 0.909, 0.001}};
  const sensitivity_report rep = make_report(probe, "accuracy");
  const nlohmann::json j = rep;
  CHECK(j["layers"][0]["class"] == "high");
  CHECK(j["layers"][1]["class"] == "low");
  CHECK(j["layers"][0]["suggestion"] == "fp16");
  const auto back = j.get<sensitivity_report>();
  CHECK(back == rep);
  nlohmann::json bad = j;
  bad["layers"][0]["class"] = "extreme";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["layers"][0]["spec"] = "int5";
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), error);
  bad = j;
  bad["layers"][0].erase("drop");
  CHECK_THROWS_AS(bad.get<sensitivity_report>(), nlohmann::json::exception);
}
