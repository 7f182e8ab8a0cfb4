// `mixprec plan --pareto DIR`: every plan on the bytes / predicted-loss frontier from one analysis or one
// measure file, each as a plan file `quantize` takes and as llama.cpp's tensor-type file; and
// `plan --tensor-type-file`. (tests/interop gives the tensor-type files to llama.cpp's llama-quantize.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mixprec/io/gguf.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/plan/tensor_type_file.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;

using mixprec::test::read_json;
using mixprec::test::tool;
using mixprec::test::tool_captured;

std::string text_of(const fs::path& p) {
  const std::vector<char> b = mixprec::test::read_bytes(p);
  return std::string(b.begin(), b.end());
}

// The folder's entries, hidden ones (a temporary folder left behind) included.
std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("plan --pareto writes every plan on the frontier, each one quantize takes at the bytes the frontier lists", "[cli][plan][pareto]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_pareto");
  const std::string model = (dir / "a.gguf").string();
  const auto before = entries_of(dir);
  REQUIRE(tool({"plan", model, "--types", "q4_0,q5_1,q8_0,f16", "--pareto", (dir / "frontier").string(), "--points", "8"}) == 0);
  CHECK(entries_of(dir).size() == before.size() + 1);  // the folder, and no temporary one beside it

  const nlohmann::json frontier = read_json(dir / "frontier" / "frontier.json");
  CHECK(frontier.at("format") == "mixprec-frontier");
  CHECK(frontier.at("model").at("path") == model);
  const nlohmann::json& points = frontier.at("points");
  REQUIRE(points.size() >= 3);
  REQUIRE(points.size() <= 8);
  // Each plan file and tensor-type file exists, the bytes rise and the predicted loss falls along the frontier.
  std::size_t files = 2;  // frontier.json, frontier.svg
  for (std::size_t i = 0; i < points.size(); ++i) {
    const nlohmann::json& pt = points[i];
    INFO(pt.dump());
    if (i > 0) {
      CHECK(pt.at("bytes").get<double>() > points[i - 1].at("bytes").get<double>());
      CHECK(pt.at("predicted_loss").get<double>() < points[i - 1].at("predicted_loss").get<double>());
    }
    const fs::path plan_path = dir / "frontier" / pt.at("plan").get<std::string>();
    const mixprec::plan p = mixprec::parse_plan(text_of(plan_path), plan_path.string());
    CHECK(p.bytes() == pt.at("planned_bytes").get<std::size_t>());
    CHECK(p.predicted_loss() == Approx(pt.at("predicted_loss").get<double>()));
    CHECK(text_of(dir / "frontier" / pt.at("tensor_type_file").get<std::string>()) == mixprec::to_tensor_type_file(p));
    files += 2;
    // quantize takes the plan (the model record is the model's) and writes those bytes.
    const fs::path out = dir / ("q" + std::to_string(i) + ".gguf");
    REQUIRE(tool({"quantize", model, "--plan", plan_path.string(), "-o", out.string()}) == 0);
    std::uint64_t weight_bytes = 0;
    const auto written = mixprec::gguf::file::open(out.string());
    for (const auto& t : written.tensors())
      if (t.dims.size() >= 2) weight_bytes += t.bytes.size();
    CHECK(weight_bytes == pt.at("bytes").get<std::uint64_t>());
  }
  CHECK(entries_of(dir / "frontier").size() == files);
  const std::string svg = text_of(dir / "frontier" / "frontier.svg");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("<circle") != std::string::npos);
  // The first plan is the smallest the types allow, the last the largest (all f16: these rows of 172 fit no block).
  CHECK(points.front().at("bits_per_weight").get<double>() < 7.0);
  CHECK(points.back().at("bits_per_weight").get<double>() == Approx(16.0));
  fs::remove_all(dir);
}

TEST_CASE("plan --pareto refuses a folder that holds anything, and the options a frontier has no use for", "[cli][plan][pareto]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_pareto_refused");
  const std::string model = (dir / "a.gguf").string();
  const fs::path taken = dir / "taken";
  fs::create_directories(taken);
  std::ofstream(taken / "notes.txt") << "mine";
  const auto r = tool_captured(dir, {"plan", model, "--pareto", taken.string()});
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("not an empty folder"));
  CHECK(entries_of(taken) == std::vector<std::string>{"notes.txt"});
  CHECK(tool({"plan", model, "--pareto", (dir / "f1").string(), "--budget", "5"}) == 2);
  CHECK(tool({"plan", model, "--pareto", (dir / "f2").string(), "-o", (dir / "p.json").string()}) == 2);
  CHECK(tool({"plan", model, "--pareto", (dir / "f3").string(), "--points", "1"}) == 2);
  CHECK(tool({"plan", model, "--points", "4", "-o", (dir / "p.json").string()}) == 2);  // --points needs --pareto
  CHECK(tool({"plan", model, "--pareto", (dir / "no" / "such" / "folder").string()}) == 2);
  // An empty folder is taken (and filled whole).
  fs::create_directories(dir / "empty");
  CHECK(tool({"plan", model, "--pareto", (dir / "empty").string(), "--points", "3"}) == 0);
  CHECK(fs::exists(dir / "empty" / "frontier.json"));
  for (const char* f : {"f1", "f2", "f3", "p.json"}) CHECK_FALSE(fs::exists(dir / f));
  fs::remove_all(dir);
}

TEST_CASE("plan --tensor-type-file writes the plan as llama.cpp's tensor-type file beside plan.json", "[cli][plan][tensor_type_file]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_tensor_types");
  const std::string model = (dir / "a.gguf").string(), plan_path = (dir / "p.json").string(), types = (dir / "p.txt").string();
  const auto r = tool_captured(dir, {"plan", model, "--budget", "9", "--tensor-type-file", types, "-o", plan_path});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.err, Catch::Contains("llama-quantize --pure --tensor-type-file " + types));
  const mixprec::plan p = mixprec::parse_plan(text_of(plan_path), plan_path);
  CHECK(text_of(types) == mixprec::to_tensor_type_file(p));
  CHECK(tool({"plan", model, "--budget", "9", "--tensor-type-file", plan_path, "-o", plan_path}) == 2);  // one file for both
  CHECK(tool({"plan", model, "--budget", "9", "--tensor-type-file", model, "-o", plan_path}) == 2);      // the model itself
  fs::remove_all(dir);
}
