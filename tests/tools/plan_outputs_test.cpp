// What `mixprec plan` writes beside a plan, and the plan's check (tools/mixprec/plan_output.hpp, verify.hpp):
// - `plan --pareto DIR`: every plan on the bytes / predicted-loss frontier from one analysis or one
//   measure file, each as a plan file `quantize` takes and as llama.cpp's tensor-type file;
//   `plan --tensor-type-file` (tests/interop gives those files to llama.cpp's llama-quantize);
// - verified plans: `plan --measured` runs the whole plan on held-out streams and records its real KL
//   beside the prediction, which must be the KL of the file `quantize` writes from the plan (with the
//   same imatrix), run by the library's engine on the same streams, computed here from that file
//   independently of the verifier; measure's KL intervals and `--metric kl_upper`.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "mixprec/io/gguf.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/plan/tensor_type_file.hpp"
#include "mixprec/sensitivity/metrics.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"
#include "tools/mixprec/plan_output.hpp"
#include "tools/mixprec/verify.hpp"

namespace {

namespace fs = std::filesystem;
namespace mm = mixprec::models;

using mixprec::test::error_code_of;
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

// The logits of model `path` on each stream (llama_engine::logits).
std::vector<mixprec::row_matrix> logits_of(const std::string& path, const std::vector<std::vector<int>>& streams) {
  const mm::llama_model m = mm::load_gguf(path);
  mm::llama_engine e(m);
  std::vector<mixprec::row_matrix> out;
  for (const auto& s : streams) out.push_back(e.logits(s));
  return out;
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

TEST_CASE("plan --measured verifies the plan: the KL of the file quantize writes, on held-out streams", "[cli][plan][verify]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_verify");
  const std::string model = (dir / "a.gguf").string(), measure = (dir / "m.json").string(), imatrix = (dir / "im.gguf").string();
  REQUIRE(tool({"measure", model, "--types", "q4_0,q5_1,q8_0,f16", "--sample", "4:32", "--imatrix-out", imatrix, "-o", measure}) == 0);
  const std::string plan = (dir / "p.json").string(), out = (dir / "q.gguf").string();
  const auto r = tool_captured(dir, {"plan", model, "--measured", measure, "--budget", "7", "--imatrix", imatrix, "--verify", "3:40",
                                     "--verify-seed", "11", "-o", plan});
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("verified on 3 held-out streams (120 positions, seed 11)"));
  const nlohmann::json v = read_json(plan).at("verified");
  CHECK(v.at("streams") == 3);
  CHECK(v.at("positions") == 120);
  const double kl = v.at("kl").get<double>();
  CHECK(kl > 0.0);
  CHECK(v.at("kl_ci95")[0].get<double>() <= kl);
  CHECK(v.at("kl_ci95")[1].get<double>() >= kl);
  CHECK(v.at("kl_p99").get<double>() <= v.at("kl_max").get<double>());
  CHECK(v.at("kl_max").get<double>() >= kl);
  CHECK(v.at("top1").get<double>() > 0.0);
  CHECK(v.at("top1").get<double>() <= 1.0);
  double predicted = 0.0;  // the plan's own prediction: the sum of its entries' measured one-tensor KLs
  const nlohmann::json written = read_json(plan);
  for (const auto& e : written.at("layers")) predicted += e.at("loss").get<double>();
  CHECK(v.at("predicted").get<double>() == Approx(predicted));

  // The same number from the written file: quantize with the imatrix, sample the streams as documented
  // (seed 11, each from the BOS), run both files, average the per-position KL.
  REQUIRE(tool({"quantize", model, "--plan", plan, "--imatrix", imatrix, "-o", out}) == 0);
  const mm::llama_model fp = mm::load_gguf(model);
  mm::llama_engine sampler(fp);
  const auto streams = mm::sample_streams(sampler, {.streams = 3, .length = 40, .seed = 11, .first = mm::bos_of(mixprec::gguf::file::open(model)).id});
  const auto ref = logits_of(model, streams), q = logits_of(out, streams);
  double sum = 0.0, agree = 0.0;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    sum += mixprec::kl_per_row(ref[s], q[s]).sum();
    agree += mixprec::top1_agreement(ref[s], q[s]) * static_cast<double>(streams[s].size());
  }
  CHECK(kl == Approx(sum / 120.0).epsilon(1e-12));
  CHECK(v.at("top1").get<double>() == Approx(agree / 120.0));

  // More bytes, less real loss, on these streams: the f16 plan's KL is far below the 7-bit one's.
  REQUIRE(tool({"plan", model, "--measured", measure, "--budget", "16", "--verify", "3:40", "--verify-seed", "11", "-o", plan}) == 0);
  CHECK(read_json(plan).at("verified").at("kl").get<double>() < kl / 10.0);
  fs::remove_all(dir);
}

TEST_CASE("plan verification: off with --no-verify, on request for a plan from the weights, never on the measurement's own streams",
          "[cli][plan][verify]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_verify_options");
  const std::string model = (dir / "a.gguf").string(), measure = (dir / "m.json").string(), plan = (dir / "p.json").string();
  REQUIRE(tool({"measure", model, "--types", "q4_0,q8_0,f16", "--sample", "2:24", "--seed", "5", "-o", measure}) == 0);
  REQUIRE(tool({"plan", model, "--measured", measure, "--budget", "9", "--no-verify", "-o", plan}) == 0);
  CHECK_FALSE(read_json(plan).contains("verified"));
  REQUIRE(tool({"plan", model, "--budget", "9", "-o", plan}) == 0);  // from the weights: not run unless asked
  CHECK_FALSE(read_json(plan).contains("verified"));
  REQUIRE(tool({"plan", model, "--budget", "9", "--verify", "2:16", "-o", plan}) == 0);
  CHECK(read_json(plan).at("verified").at("positions") == 32);
  // The measurement's own streams (the same seed and shape) are no held-out data.
  const auto same = tool_captured(dir, {"plan", model, "--measured", measure, "--budget", "9", "--verify", "2:24", "--verify-seed", "5", "-o", plan});
  CHECK(same.code == 2);
  CHECK_THAT(same.err, Catch::Contains("give another --verify-seed"));
  // A prefix of them too (one generator draws every stream in turn).
  CHECK(tool({"plan", model, "--measured", measure, "--budget", "9", "--verify", "1:16", "--verify-seed", "5", "-o", plan}) == 2);
  for (const char* bad : {"2", "0:16", "2:1", "x:16"})
    CHECK(tool({"plan", model, "--measured", measure, "--budget", "9", "--verify", bad, "-o", plan}) == 2);
  CHECK(tool({"plan", model, "--measured", measure, "--budget", "9", "--verify", "2:16", "--no-verify", "-o", plan}) == 2);
  fs::remove_all(dir);
}

TEST_CASE("measure gives every KL a bootstrap interval over its streams, and plan --metric kl_upper plans on its upper end",
          "[cli][measure][verify]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_kl_interval");
  const std::string model = (dir / "a.gguf").string(), measure = (dir / "m.json").string(), plan = (dir / "p.json").string();
  REQUIRE(tool({"measure", model, "--types", "q4_0,q8_0,f16", "--sample", "6:24", "-o", measure}) == 0);
  nlohmann::json m = read_json(measure);
  std::size_t wide = 0;
  for (const auto& t : m.at("tensors"))
    for (const auto& r : t.at("results")) {
      INFO(t.at("name") << " " << r.at("spec"));
      const double kl = r.at("kl").get<double>(), lo = r.at("kl_ci95")[0].get<double>(), hi = r.at("kl_ci95")[1].get<double>();
      CHECK(lo <= kl);
      CHECK(kl <= hi);
      wide += hi > lo ? 1 : 0;
    }
  CHECK(wide > 0);  // six streams that differ: the intervals have width
  REQUIRE(tool({"plan", model, "--measured", measure, "--metric", "kl_upper", "--budget", "8", "--no-verify", "-o", plan}) == 0);
  // The plan's losses are the upper ends.
  std::map<std::string, double> upper;
  for (const auto& t : m.at("tensors"))
    for (const auto& r : t.at("results")) upper[t.at("name").get<std::string>() + " " + r.at("spec").get<std::string>()] = r.at("kl_ci95")[1];
  const nlohmann::json p = read_json(plan);
  for (const auto& e : p.at("layers")) CHECK(e.at("loss").get<double>() == upper.at(e.at("layer").get<std::string>() + " " + e.at("spec").get<std::string>()));
  // A file measured before the intervals existed cannot be planned by them.
  for (auto& t : m["tensors"])
    for (auto& r : t["results"]) r.erase("kl_ci95");
  std::ofstream(dir / "old.json") << m.dump();
  CHECK(tool({"plan", model, "--measured", (dir / "old.json").string(), "--metric", "kl_upper", "--budget", "8", "--no-verify", "-o", plan}) == 2);
  CHECK(tool({"plan", model, "--measured", (dir / "old.json").string(), "--metric", "kl", "--budget", "8", "--no-verify", "-o", plan}) == 0);
  fs::remove_all(dir);
}

TEST_CASE("plan --pareto verifies every plan on the frontier as plan --budget verifies the same plan alone", "[cli][plan][verify][pareto]") {
  // One verifier runs every plan of the frontier in turn (tensors swapped in and back, quantized ones kept
  // between neighbours): each point's KL must be the one a fresh run of that plan alone gives.
  const fs::path dir = mixprec::test::dir_with_model("mixprec_verify_frontier");
  const std::string model = (dir / "a.gguf").string(), measure = (dir / "m.json").string(), imatrix = (dir / "im.gguf").string();
  REQUIRE(tool({"measure", model, "--types", "q4_0,q5_1,q8_0,f16", "--sample", "3:24", "--imatrix-out", imatrix, "-o", measure}) == 0);
  REQUIRE(tool({"plan", model, "--measured", measure, "--imatrix", imatrix, "--verify", "2:24", "--pareto", (dir / "f/").string(), "--points", "6"}) ==
          0);  // "f/": the folder f
  CHECK((fs::status(dir / "f").permissions() & fs::perms::others_read) != fs::perms::none);  // a folder as mkdir makes it
  const nlohmann::json points = read_json(dir / "f" / "frontier.json").at("points");
  REQUIRE(points.size() >= 3);
  double previous = 1e300;
  for (const auto& pt : points) {
    INFO(pt.dump());
    const double kl = pt.at("verified").at("kl").get<double>();
    CHECK(kl < previous);  // monotone_frontier: more bytes, less real loss
    previous = kl;
    if (pt.contains("nested_on")) continue;  // replanned: no --budget run gives it
    const std::string alone = (dir / "alone.json").string();
    REQUIRE(tool({"plan", model, "--measured", measure, "--imatrix", imatrix, "--verify", "2:24", "--budget",
                  std::to_string(pt.at("planned_bytes").get<std::uint64_t>()) + "B", "-o", alone}) == 0);
    const nlohmann::json a = read_json(alone);
    const nlohmann::json p = read_json(dir / "f" / pt.at("plan").get<std::string>());
    REQUIRE(a.at("layers") == p.at("layers"));  // the same plan
    CHECK(a.at("verified").at("kl").get<double>() == kl);
    CHECK(a.at("verified").at("imatrix") == imatrix);
  }
  fs::remove_all(dir);
}

TEST_CASE("monotone_frontier: a plan that downgrades a smaller one's tensor races its nested replan; one no better is left out",
          "[cli][plan][verify][pareto]") {
  // Plans told apart by their limit. A knapsack plan at limit L has tensor a at L bytes and b at 100 - L:
  // it downgrades b against every smaller plan. A nested replan is marked by its policy.
  auto plan_of = [](double limit, const std::string& policy = "knapsack") {
    mixprec::plan p;
    p.limit = limit;
    p.policy = policy;
    const bool nested = policy == "nested";
    p.entries.push_back({"a", mixprec::parse_spec(nested ? "q8_0" : "q4_0"), 1, 32, static_cast<std::size_t>(limit), limit, 0.0, ""});
    p.entries.push_back({"b", mixprec::parse_spec("q4_0"), 1, 32, static_cast<std::size_t>(nested ? 100 : 100 - limit), 0.0, 0.0, ""});
    return p;
  };
  // Knapsack KLs by limit: 0.10, 0.02, 0.035 (a rise: its nested replan, 0.015, wins), 0.018 (nested: 0.03;
  // 0.018 is above the best so far, 0.015: left out), 0.01 (nested 0.008 wins although 0.01 is already
  // lower), unverified (kept, nothing replanned).
  const std::map<double, double> knapsack_kl = {{1, 0.10}, {2, 0.02}, {3, 0.035}, {4, 0.018}, {5, 0.01}};
  const std::map<double, double> nested_kl = {{3, 0.015}, {4, 0.03}, {5, 0.008}};
  std::vector<std::pair<double, double>> replans;  // (base limit, limit)
  const mixprec_cli::detail::plan_check verify = [&](const mixprec::plan& p) -> std::optional<mixprec_cli::verification> {
    const auto& kls = p.policy == "nested" ? nested_kl : knapsack_kl;
    const auto it = kls.find(p.limit);
    if (it == kls.end()) return std::nullopt;
    mixprec_cli::verification v;
    v.kl = it->second;
    return v;
  };
  const mixprec_cli::detail::nested_replan replan = [&](const mixprec::plan& base, double limit) {
    replans.emplace_back(base.limit, limit);
    return plan_of(limit, "nested");
  };
  std::vector<mixprec_cli::detail::dropped_point> dropped;
  const auto front = mixprec_cli::detail::monotone_frontier({plan_of(1), plan_of(2), plan_of(3), plan_of(4), plan_of(5), plan_of(6)}, verify,
                                                            replan, &dropped);
  REQUIRE(front.size() == 5);
  CHECK(front[0].plan.limit == 1);
  CHECK(front[1].plan.policy == "knapsack");  // its replan verified nothing: the knapsack plan stays
  CHECK(front[2].plan.policy == "nested");
  CHECK(front[2].plan.solver.find("nested on") != std::string::npos);
  CHECK(front[2].nested_on == std::optional<std::size_t>(1));
  CHECK(front[2].knapsack->kl == 0.035);
  CHECK(front[2].verified->kl == 0.015);
  CHECK(front[3].plan.limit == 5);
  CHECK(front[3].plan.policy == "nested");
  CHECK(front[3].nested_on == std::optional<std::size_t>(2));
  CHECK(front[3].knapsack->kl == 0.01);
  CHECK(front[4].plan.limit == 6);
  CHECK_FALSE(front[4].verified);
  double previous = 1.0;
  for (const auto& pt : front) {
    if (!pt.verified) continue;
    CHECK(pt.verified->kl < previous);
    previous = pt.verified->kl;
  }
  REQUIRE(dropped.size() == 1);
  CHECK(dropped[0].plan.limit == 4);
  CHECK(dropped[0].verified.kl == 0.018);  // the knapsack plan's
  REQUIRE(dropped[0].nested);
  CHECK(dropped[0].nested->kl == 0.03);    // and its nested replan's
  CHECK(dropped[0].worse_than == 2);       // the nested plan at limit 3, the best smaller point then
  CHECK(replans == std::vector<std::pair<double, double>>{{1, 2}, {2, 3}, {3, 4}, {3, 5}});
  // A plan that keeps every tensor of the best smaller one at least as big is not replanned.
  replans.clear();
  mixprec::plan up = plan_of(5);  // verified (0.01), b kept at 100 bytes
  up.entries[1].bytes = 100;
  (void)mixprec_cli::detail::monotone_frontier({plan_of(1), up}, verify, replan);
  CHECK(replans.empty());
  // Without verification nothing is replanned or dropped.
  CHECK(mixprec_cli::detail::monotone_frontier({plan_of(1), plan_of(3)}, {}, replan).size() == 2);
  CHECK(replans.empty());
}

TEST_CASE("plan --refine searches by the whole plan's KL and never writes a plan worse than the knapsack's on the held-out streams",
          "[cli][plan][refine]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_refine");
  const std::string model = (dir / "a.gguf").string(), measure = (dir / "m.json").string(), imatrix = (dir / "im.gguf").string();
  REQUIRE(tool({"measure", model, "--types", "q4_0,q5_1,q8_0,f16", "--sample", "4:32", "--imatrix-out", imatrix, "-o", measure}) == 0);
  const std::string knapsack = (dir / "k.json").string(), refined = (dir / "r.json").string();
  const std::vector<std::string> common{"plan", model, "--measured", measure, "--budget", "7.5", "--imatrix", imatrix, "--verify", "3:32"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  REQUIRE(tool(with({"-o", knapsack})) == 0);
  const auto r = tool_captured(dir, with({"--refine", "3", "--refine-streams", "8:32", "-o", refined}));
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("refined for") && Catch::Contains("held out: knapsack plan KL"));
  const nlohmann::json k = read_json(knapsack), p = read_json(refined);
  const nlohmann::json& rec = p.at("refined");
  INFO(rec.dump());
  CHECK(rec.at("generations").get<std::size_t>() >= 1);
  CHECK(rec.at("evaluations")[2].get<std::size_t>() == rec.at("generations").get<std::size_t>() + 1);
  CHECK(rec.at("evaluations")[0].get<std::size_t>() >= rec.at("evaluations")[1].get<std::size_t>());
  CHECK(rec.at("fitness").get<double>() <= rec.at("fitness_start").get<double>());
  CHECK(rec.at("streams") == 8);
  CHECK(rec.at("seed") == 3);
  // The knapsack plan's check is the one plan --measured gives it alone, on the same held-out streams.
  CHECK(rec.at("knapsack_verified").at("kl").get<double>() == k.at("verified").at("kl").get<double>());
  CHECK(rec.at("knapsack_verified").at("ids_fnv1a64") == p.at("verified").at("ids_fnv1a64"));
  CHECK(rec.at("ids_fnv1a64") != p.at("verified").at("ids_fnv1a64"));  // the search's streams are not the held-out ones
  // Never worse held out, within the budget; the plan written is the knapsack's unless the refined one is better.
  const double kept_kl = p.at("verified").at("kl").get<double>(), knapsack_kl = k.at("verified").at("kl").get<double>();
  CHECK(p.at("bytes").get<double>() <= p.at("limit").get<double>());
  CHECK(p.at("limit") == k.at("limit"));
  if (rec.at("kept") == "refined") {
    CHECK(kept_kl < knapsack_kl);
    CHECK(p.at("layers") != k.at("layers"));
  } else {
    CHECK(rec.at("kept") == "knapsack");
    CHECK(kept_kl == knapsack_kl);
    CHECK(p.at("layers") == k.at("layers"));
  }
  // quantize takes the plan, at the bytes it lists.
  REQUIRE(tool({"quantize", model, "--plan", refined, "--imatrix", imatrix, "-o", (dir / "q.gguf").string()}) == 0);

  // The search's fitness is the verifier's KL: over every stream of a set it is verify()'s mean, the
  // model's own types give 0, and a smaller plan loses more.
  {
    const mixprec_cli::model_file f(model);
    const mixprec_cli::importance_set importance = mixprec_cli::load_importance(imatrix);
    mixprec_cli::verify_options vo;
    vo.streams = 3, vo.length = 32, vo.seed = 11;
    mixprec_cli::plan_verifier v(f, importance, vo);
    const mixprec::plan kp = mixprec_cli::load_plan(knapsack);
    const double full = v.mean_kl(kp, 0, 3);
    CHECK(full == Approx(v.verify(kp).kl).epsilon(1e-12));
    CHECK(full > 0.0);
    mixprec::plan stored = kp;
    for (auto& e : stored.entries) e.spec = mixprec::parse_spec("f32");
    CHECK(v.mean_kl(stored, 0, 3) == 0.0);
    const std::size_t other = v.add_streams(4, 16, 12);
    CHECK(v.stream_ids(other).size() == 4);
    mixprec::plan small = kp;
    for (auto& e : small.entries)
      if (e.cols % 32 == 0) e.spec = mixprec::parse_spec("q4_0");  // (ffn_down's rows of 172 keep theirs)
    CHECK(v.mean_kl(small, other, 4) > v.mean_kl(kp, other, 4));
    CHECK(v.mean_kl(kp, other, 1) != v.mean_kl(kp, other, 4));  // the first stream alone is another mean
    CHECK(error_code_of([&] { (void)v.mean_kl(kp, other, 0); }) == mixprec::errc::invalid_argument);
  }

  // From the weights too (the refinement runs the model, as --verify does).
  REQUIRE(tool({"plan", model, "--budget", "7.5", "--refine", "1", "--refine-streams", "4:16", "--verify", "2:16", "-o", refined}) == 0);
  CHECK(read_json(refined).contains("refined"));
  CHECK(read_json(refined).contains("verified"));
  // Refused: tuning on the held-out streams, no check, a frontier, a negative time, malformed streams.
  CHECK(tool(with({"--refine", "1", "--refine-seed", "2", "-o", refined})) == 2);
  CHECK(tool({"plan", model, "--measured", measure, "--budget", "7.5", "--refine", "1", "--no-verify", "-o", refined}) == 2);
  CHECK(tool({"plan", model, "--measured", measure, "--refine", "1", "--pareto", (dir / "fr").string()}) == 2);
  CHECK(tool(with({"--refine", "-1", "-o", refined})) == 2);
  for (const char* bad : {"8", "0:32", "8:1", "x:32"}) CHECK(tool(with({"--refine", "1", "--refine-streams", bad, "-o", refined})) == 2);
  CHECK(tool({"plan", model, "--measured", measure, "--budget", "7.5", "--refine-seed", "5", "-o", refined}) == 2);  // needs --refine
  fs::remove_all(dir);
}
