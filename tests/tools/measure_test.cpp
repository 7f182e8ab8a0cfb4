// `mixprec measure` on the seeded synthetic model of support/tiny_llama.hpp (llama2.c's 260K shapes,
// random weights), written into each test's own folder and converted to GGUF: per tensor and type the
// KL of the model's output with only that tensor quantized, the imatrix proxy and SQNR; the imatrix it
// writes; reproducibility from the seed; and `mixprec plan --measured` -> `mixprec quantize`.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "mixprec/io/imatrix.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "support/files.hpp"
#include "support/tiny_llama.hpp"
#include "support/tool_run.hpp"

namespace fs = std::filesystem;

namespace {

using mixprec::test::dir_with_model;
using mixprec::test::read_json;
using mixprec::test::tool;

// The plan a plan file holds (the library's plan JSON, as `mixprec quantize` reads it).
mixprec::plan plan_of(const std::string& path) {
  const std::vector<char> text = mixprec::test::read_bytes(path);
  return mixprec::parse_plan(std::string_view(text.data(), text.size()), path);
}

}  // namespace

TEST_CASE("measure: KL per tensor and type, the imatrix, reproducible, and plans from it", "[cli][measure]") {
  const fs::path dir = dir_with_model("mixprec_measure");
  const std::string gguf = (dir / "a.gguf").string(), m1 = (dir / "m1.json").string(), m2 = (dir / "m2.json").string();
  const std::vector<std::string> base = {"measure", gguf, "--types", "q4_0,q8_0,f16", "--sample", "4:32", "--seed", "7"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE(tool(with({"--imatrix-out", (dir / "im.gguf").string(), "-o", m1})) == 0);
  REQUIRE(tool(with({"-o", m2})) == 0);
  const nlohmann::json j = read_json(m1);
  CHECK(j == read_json(m2));  // the same seed: the same streams, the same numbers
  CHECK(j.at("format") == "mixprec-measure");
  CHECK(j.at("calibration").at("positions") == 4 * 32);
  const auto g = mixprec::gguf::file::open(gguf);
  std::size_t matrices = 0;
  for (const auto& t : g.tensors()) matrices += t.dims.size() == 2 ? 1 : 0;
  REQUIRE(j.at("tensors").size() == matrices);  // every weight matrix, token_embd included
  for (const auto& t : j.at("tensors")) {
    INFO(t.at("name").get<std::string>());
    std::map<std::string, nlohmann::json> r;
    for (const auto& x : t.at("results")) r[x.at("spec").get<std::string>()] = x;
    if (t.at("cols") == 172) {  // ffn_down: rows of 172 fit no 32-block
      CHECK(r.size() == 1);
      CHECK(r.count("fp16") == 1);
      continue;
    }
    REQUIRE(r.size() == 3);
    // More bits, less damage to the output: strictly, at each step.
    CHECK(r["q4_0"].at("kl").get<double>() > r["q8_0"].at("kl").get<double>());
    CHECK(r["q8_0"].at("kl").get<double>() > r["fp16"].at("kl").get<double>());
    CHECK(r["fp16"].at("kl").get<double>() > 1e-12);  // a measured effect, above rounding (about 1e-14)
    CHECK(r["q4_0"].at("sqnr_db").get<double>() < r["q8_0"].at("sqnr_db").get<double>());
    CHECK(r["q4_0"].at("bytes").get<std::uint64_t>() == mixprec::quantized_bytes(mixprec::parse_spec("q4_0"), t.at("rows"), t.at("cols")));
  }
  // The imatrix: one entry per product input (not the embedding lookup), every token counted.
  const auto im = mixprec::imatrix::load((dir / "im.gguf").string());
  CHECK(im.entries.size() == matrices - 1);
  for (const auto& [name, e] : im.entries) {
    INFO(name);
    CHECK(e.counts == std::vector<float>{4.0f * 32.0f});
    CHECK(e.values.minCoeff() >= 0.0f);
  }
  CHECK(im.entries.count("token_embd.weight") == 0);

  // Plans from the file: the KL plan meets the budget and quantize writes exactly its bytes.
  const std::string plan = (dir / "p.json").string(), out = (dir / "q.gguf").string();
  REQUIRE(tool({"plan", gguf, "--measured", m1, "--budget", "7", "-o", plan}) == 0);
  const mixprec::plan p = plan_of(plan);
  CHECK(p.bits_per_weight() <= 7.0);
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--imatrix", (dir / "im.gguf").string(), "-o", out}) == 0);
  std::uint64_t planned = 0;
  const auto q = mixprec::gguf::file::open(out);
  for (const auto& e : p.entries) planned += q.at(e.layer).size;
  CHECK(planned == p.bytes());
  // A plan by KL and one by the proxy differ in what they predict, not in meeting the budget.
  REQUIRE(tool({"plan", gguf, "--measured", m1, "--metric", "proxy", "--budget", "7", "-o", plan}) == 0);
  CHECK(plan_of(plan).bits_per_weight() <= 7.0);

  // Shards: two partial files, merged in either order, are the single-process file; so is another thread count.
  const std::string s0 = (dir / "s0.json").string(), s1 = (dir / "s1.json").string(), merged = (dir / "merged.json").string();
  REQUIRE(tool(with({"--shard", "1/2", "--threads", "2", "-o", s1})) == 0);
  REQUIRE(tool(with({"--shard", "0/2", "-o", s0})) == 0);
  CHECK(read_json(s0).at("tensors").size() == (matrices + 1) / 2);
  CHECK(read_json(s0).at("shard") == nlohmann::json{{"index", 0}, {"count", 2}});
  REQUIRE(tool({"merge", s1, s0, "-o", merged}) == 0);
  CHECK(read_json(merged) == j);
  CHECK(tool({"plan", gguf, "--measured", s0, "--budget", "7", "-o", plan}) == 2);  // a part: merge first
  CHECK(tool({"merge", s0, "-o", merged}) == 2);                                      // a shard missing
  CHECK(tool({"merge", s0, s0, "-o", merged}) == 2);                                  // one given twice
  const std::string other = (dir / "other.json").string();
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0,f16", "--sample", "4:32", "--seed", "8", "--shard", "1/2", "-o", other}) == 0);
  CHECK(tool({"merge", s0, other, "-o", merged}) == 2);                               // another calibration
  CHECK(tool({"merge", s0, gguf, "-o", merged}) == 3);                                // not a measure file
  CHECK(tool({"measure", gguf, "--sample", "4:32", "--shard", "2/2", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "4:32", "--shard", "x/2", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "x:32", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "4x:32", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "4:32", "--shard", "1/2x", "-o", m2}) == 2);

  // Bad requests, refused before any work.
  CHECK(tool({"measure", gguf, "-o", m2}) == 2);                                                // no calibration
  CHECK(tool({"measure", gguf, "--sample", "4:32", "--tokens", m1, "-o", m2}) == 2);              // two
  CHECK(tool({"measure", gguf, "--sample", "4", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "4:32", "--types", "q9_9", "-o", m2}) == 2);
  CHECK(tool({"measure", gguf, "--sample", "4:32", "-o", gguf}) == 2);                            // the input
  CHECK(tool({"plan", gguf, "--measured", m1, "--metric", "nope", "--budget", "7", "-o", plan}) == 2);
  CHECK(tool({"plan", gguf, "--measured", gguf, "--budget", "7", "-o", plan}) == 3);              // not a measure file
  fs::remove_all(dir);
}

TEST_CASE("measure: calibration text tokenized with the model's vocabulary", "[cli][measure]") {
  const fs::path dir = dir_with_model("mixprec_measure_text");
  const std::string gguf = (dir / "a.gguf").string();
  // Not the text the vocabulary was learned from: words it has as pieces, characters it lacks (7, ').
  std::ofstream(dir / "text.txt") << "The little dog ran to the park with his red ball. Lily and Tom played with the dog until the "
                                     "sun went down, and then they all went home to sleep! It was 7 o'clock.";
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0", "--text", (dir / "text.txt").string(), "--ctx", "16", "--streams", "2", "-o",
                (dir / "m.json").string()}) == 0);
  const auto j = read_json(dir / "m.json");
  CHECK(j.at("calibration").at("source") == "text");
  CHECK(j.at("calibration").at("streams") == 2);
  CHECK(j.at("calibration").at("positions") == 32);
  fs::remove_all(dir);
}

TEST_CASE("measure: the Gram proxy is |(W - Q(W)) X|^2 per position of the tensor's own inputs", "[cli][measure]") {
  const fs::path dir = dir_with_model("mixprec_measure_gram");
  const std::string gguf = (dir / "a.gguf").string(), tokens = (dir / "ids.txt").string(), m = (dir / "m.json").string();
  std::vector<std::vector<int>> streams = {{1, 319, 201, 281, 430, 274, 440, 363, 316, 444}, {1, 260, 275, 281, 430, 7, 9, 300}};
  {
    std::ofstream f(tokens);
    for (const auto& s : streams) {
      for (int id : s) f << id << ' ';
      f << '\n';
    }
  }
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0", "--tokens", tokens, "-o", m}) == 0);
  const nlohmann::json j = read_json(m);
  // The inputs of blk.1.attn_v.weight and of the classifier, taken independently with the engine's observer.
  const auto model = mixprec::models::load_gguf(gguf);
  mixprec::models::llama_engine e(model);
  std::map<std::string, std::vector<Eigen::VectorXd>> inputs;
  e.observe([&](const std::string& name, const float* x, mixprec::index_t n) {
    inputs[name].push_back(Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>());
  });
  for (const auto& s : streams) (void)e.logits(s);
  for (const std::string name : {"blk.1.attn_v.weight", "output.weight"}) {
    INFO(name);
    const auto& xs = inputs.at(name);
    REQUIRE(xs.size() == 18);
    // The imatrix as measure takes it (sum of x^2 in double, divided, then FP32): a searched type's
    // scales depend on the last bit of these weights.
    Eigen::VectorXd sum2 = Eigen::VectorXd::Zero(xs[0].size());
    for (const auto& x : xs) sum2.array() += x.array().square();
    const Eigen::VectorXf imp = (sum2 / static_cast<double>(xs.size())).cast<float>();
    const mixprec::row_matrix w = model.layers[1].wv.name() == name ? model.layers[1].wv.fp32() : model.output->fp32();
    nlohmann::json row;
    for (const auto& t : j.at("tensors"))
      if (t.at("name") == name) row = t;
    REQUIRE(row.is_object());
    for (const auto& r : row.at("results")) {
      const auto spec = mixprec::parse_spec(r.at("spec").get<std::string>());
      const auto q = mixprec::quantize(w, spec, name, std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())));
      const Eigen::MatrixXd d = mixprec::dequantize(q).cast<double>() - w.cast<double>();
      double direct = 0.0;
      for (const auto& x : xs) direct += (d * x).squaredNorm();
      direct /= static_cast<double>(xs.size());
      CHECK(r.at("gram_proxy").get<double>() == Approx(direct).epsilon(1e-5));  // FP32 products
      CHECK(r.at("bytes").get<std::size_t>() == q.bytes());
      // The imatrix proxy keeps only G's diagonal: a different number from the same errors.
      CHECK(r.at("proxy").get<double>() != Approx(direct).epsilon(1e-3));
    }
  }
  // ffn_down's rows of 172 fit neither type: measured at the fallback type that holds them (as analyze does),
  // so that a measured plan covers, and its budget counts, every matrix.
  for (const auto& t : j.at("tensors")) {
    if (t.at("cols") != 172) continue;
    INFO(t.at("name").get<std::string>());
    REQUIRE(t.at("results").size() == 1);
    CHECK(t.at("results")[0].at("spec") == "fp16");
    REQUIRE_FALSE(t.at("notes").empty());
    CHECK(t.at("notes").back().get<std::string>().find("fallback types fp16") != std::string::npos);
  }
  REQUIRE(tool({"plan", gguf, "--measured", m, "--metric", "gram_proxy", "--budget", "7", "-o", (dir / "p.json").string()}) == 0);
  CHECK(plan_of((dir / "p.json").string()).entries.size() == j.at("tensors").size());
  fs::remove_all(dir);
}

TEST_CASE("measure --method fisher|both: Fisher estimates in the file, plans from them, the kl only where probed", "[cli][measure]") {
  const fs::path dir = dir_with_model("mixprec_measure_fisher");
  const std::string gguf = (dir / "a.gguf").string(), fisher = (dir / "f.json").string(), both = (dir / "b.json").string();
  const std::vector<std::string> base = {"measure", gguf, "--types", "q4_0,q8_0", "--sample", "4:24", "--seed", "3", "--fisher-draws", "4"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  REQUIRE(tool(with({"--method", "fisher", "-o", fisher})) == 0);
  REQUIRE(tool(with({"--method", "both", "-o", both})) == 0);
  const nlohmann::json f = read_json(fisher), b = read_json(both);
  CHECK(f.at("method") == nlohmann::json{{"probe", false}, {"fisher_draws", 4}});
  CHECK(b.at("method") == nlohmann::json{{"probe", true}, {"fisher_draws", 4}});
  REQUIRE(f.at("tensors").size() == b.at("tensors").size());
  for (std::size_t k = 0; k < f.at("tensors").size(); ++k)
    for (std::size_t j = 0; j < f.at("tensors")[k].at("results").size(); ++j) {
      const auto& rf = f.at("tensors")[k].at("results")[j];
      const auto& rb = b.at("tensors")[k].at("results")[j];
      CHECK_FALSE(rf.contains("kl"));
      CHECK_FALSE(rf.contains("kl_ci95"));
      CHECK(rb.contains("kl"));
      for (const char* key : {"fisher_sequence", "fisher_token", "fisher_kfac", "fisher_diagonal"}) {
        CHECK(rf.at(key).get<double>() > 0.0);
        CHECK(rf.at(key) == rb.at(key));  // the probes change no estimate
      }
    }
  // Plans by the Fisher estimate meet the budget; by a metric the file lacks: refused, saying why.
  const std::string plan = (dir / "p.json").string();
  REQUIRE(tool({"plan", gguf, "--measured", fisher, "--metric", "fisher", "--budget", "7", "-o", plan}) == 0);
  CHECK(plan_of(plan).bits_per_weight() <= 7.0);
  REQUIRE(tool({"plan", gguf, "--measured", both, "--metric", "fisher_kfac", "--budget", "7", "-o", plan}) == 0);
  CHECK(tool({"plan", gguf, "--measured", fisher, "--budget", "7", "-o", plan}) == 2);  // the default metric kl
  CHECK(tool({"plan", gguf, "--measured", fisher, "--metric", "kl_upper", "--budget", "7", "-o", plan}) == 2);
  const std::string probed = (dir / "k.json").string();
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0", "--sample", "4:24", "--seed", "3", "-o", probed}) == 0);
  CHECK_FALSE(read_json(probed).at("tensors")[0].at("results")[0].contains("fisher_sequence"));
  CHECK(tool({"plan", gguf, "--measured", probed, "--metric", "fisher", "--budget", "7", "-o", plan}) == 2);
  // Shards of a Fisher measurement merge into the single-process file; shards of different methods do not.
  const std::string s0 = (dir / "s0.json").string(), s1 = (dir / "s1.json").string(), merged = (dir / "m.json").string();
  REQUIRE(tool(with({"--method", "fisher", "--shard", "0/2", "-o", s0})) == 0);
  REQUIRE(tool(with({"--method", "fisher", "--shard", "1/2", "--threads", "2", "-o", s1})) == 0);
  REQUIRE(tool({"merge", s0, s1, "-o", merged}) == 0);
  CHECK(read_json(merged) == f);
  REQUIRE(tool(with({"--method", "both", "--shard", "1/2", "-o", s1})) == 0);
  CHECK(tool({"merge", s0, s1, "-o", merged}) == 2);
  // Bad requests.
  CHECK(tool(with({"--method", "hessian", "-o", fisher})) == 2);
  CHECK(tool({"measure", gguf, "--types", "q4_0", "--sample", "4:24", "--method", "fisher", "--fisher-draws", "0", "-o", fisher}) == 2);
  fs::remove_all(dir);
}

TEST_CASE("measure --dry-run: the work counted as measure does it, a time and memory, nothing written", "[cli][measure]") {
  const fs::path dir = dir_with_model("mixprec_measure_dry");
  const std::string gguf = (dir / "a.gguf").string(), out = (dir / "m.json").string();
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0", "--sample", "3:16", "--method", "both", "--dry-run", "-o", out}) == 0);
  CHECK_FALSE(fs::exists(out));
  CHECK(tool({"measure", gguf, "--types", "q4_0,q8_0", "--sample", "3:16", "--method", "nope", "--dry-run", "-o", out}) == 2);

  // The library's counts against what measure_llama then does.
  namespace mm = mixprec::models;
  mm::llama_model m = mm::load_gguf(gguf);
  mm::llama_engine sampler(m);
  const auto streams = mm::sample_streams(sampler, {.streams = 3, .length = 16, .seed = 2, .first = 1});
  const std::vector<mixprec::quant_spec> types = {mixprec::parse_spec("q4_0"), mixprec::parse_spec("q8_0")};
  for (const bool probe : {true, false}) {
    const mm::measure_options o{.types = types, .threads = 1, .shard_index = 1, .shard_count = 2, .fisher_draws = 2, .probe = probe};
    const mm::measure_cost c = mm::estimate_measure(m, streams, o);
    const mm::llama_measurement r = mm::measure_llama(m, streams, o);
    std::size_t pairs = 0;
    for (const auto& t : r.tensors) pairs += t.types.size();
    CHECK(c.matrices == r.tensors.size());
    CHECK(c.quantizations == pairs);
    CHECK(c.probes == (probe ? pairs : 0));
    CHECK(c.backward_passes == 6);
    CHECK(c.seconds > 0.0);
    CHECK(c.peak_bytes > 0.0);
    CHECK(c.model_bytes > 0.0);
  }
  fs::remove_all(dir);
}
