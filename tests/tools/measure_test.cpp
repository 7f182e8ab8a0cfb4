// `mixprec measure` on the shared aidreams260K model converted to GGUF: per tensor and type the KL of
// the model's output with only that tensor quantized, the imatrix proxy and SQNR; the imatrix it
// writes; reproducibility from the seed; and `mixprec plan --measured` -> `mixprec quantize`.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../tools/mixprec/app.hpp"

namespace fs = std::filesystem;

namespace {

const std::string model_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
const std::string tokenizer_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";

int tool(std::vector<std::string> args) {
  args.insert(args.begin(), "mixprec");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return mixprec_cli::run(static_cast<int>(argv.size()), argv.data());
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(std::ifstream(p)); }

}  // namespace

TEST_CASE("measure: KL per tensor and type, the imatrix, reproducible, and plans from it", "[cli][measure]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_measure_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string gguf = (dir / "a.gguf").string(), m1 = (dir / "m1.json").string(), m2 = (dir / "m2.json").string();
  REQUIRE(tool({"convert", model_path, tokenizer_path, "-o", gguf}) == 0);
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
    CHECK(r["fp16"].at("kl").get<double>() >= 0.0);
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
  const mixprec::plan p = mixprec_cli::load_plan(plan);
  CHECK(p.bits_per_weight() <= 7.0);
  REQUIRE(tool({"quantize", gguf, "--plan", plan, "--imatrix", (dir / "im.gguf").string(), "-o", out}) == 0);
  std::uint64_t planned = 0;
  const auto q = mixprec::gguf::file::open(out);
  for (const auto& e : p.entries) planned += q.at(e.layer).size;
  CHECK(planned == p.bytes());
  // A plan by KL and one by the proxy differ in what they predict, not in meeting the budget.
  REQUIRE(tool({"plan", gguf, "--measured", m1, "--metric", "proxy", "--budget", "7", "-o", plan}) == 0);
  CHECK(mixprec_cli::load_plan(plan).bits_per_weight() <= 7.0);

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
  const fs::path dir = fs::temp_directory_path() / ("mixprec_measure_text_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string gguf = (dir / "a.gguf").string();
  REQUIRE(tool({"convert", model_path, tokenizer_path, "-o", gguf}) == 0);
  std::ofstream(dir / "text.txt") << "Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes, a gentle hum of "
                                     "precision. Echoes of vectors unfold, a gentle hum.";
  REQUIRE(tool({"measure", gguf, "--types", "q4_0,q8_0", "--text", (dir / "text.txt").string(), "--ctx", "16", "--streams", "2", "-o",
                (dir / "m.json").string()}) == 0);
  const auto j = read_json(dir / "m.json");
  CHECK(j.at("calibration").at("source") == "text");
  CHECK(j.at("calibration").at("streams") == 2);
  CHECK(j.at("calibration").at("positions") == 32);
  fs::remove_all(dir);
}
