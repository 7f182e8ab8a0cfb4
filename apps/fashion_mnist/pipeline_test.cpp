// The Fashion-MNIST pipeline, shortened (--quick with smaller subsets): the JSON carries what the
// issue asks for, plans respect the budget and each other, sizes add up, and the cache is used.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include <unistd.h>

#include "report.hpp"
#include "support/errors.hpp"

TEST_CASE("pipeline: quick run on real data; plans, sizes, frontier, JSON, cache", "[fashion][pipeline]") {
  const auto out = std::filesystem::temp_directory_path() / ("mixprec_fashion_pipeline_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(out);
  fashion::options o;
  o.quick = true;
  o.quick_train = 1500;
  o.quick_val = 500;
  o.quick_test = 500;
  o.epochs = 1;
  o.qat_steps = 6;
  o.hessian_images = 32;
  o.out_dir = out.string();
  o.arch = {.c1 = 8, .c2 = 8, .c3 = 16, .f1 = 32, .f2 = 32};  // narrower: the suite also runs under sanitizers
  fashion::progress_log quiet{[](const std::string&) {}};
  const fashion::results r = fashion::run_pipeline(o, quiet);
  const nlohmann::json j = fashion::to_json(r);

  // The keys the issue names.
  REQUIRE(j.contains("fp32"));
  CHECK(j["fp32"]["accuracy"].get<double>() > 0.3);
  std::set<std::string> names;
  for (const auto& s : j["strategies"]) {
    for (const char* k : {"name", "bytes", "avg_bits", "accuracy"}) REQUIRE(s.contains(k));
    names.insert(s["name"].get<std::string>());
  }
  CHECK(names == std::set<std::string>{"fp32", "int8", "int4", "threshold", "greedy", "knapsack", "int4+qat", "knapsack+qat"});
  REQUIRE(j["layers"].size() == 6);
  for (const auto& l : j["layers"])
    for (const char* k : {"name", "params", "drop_int4", "drop_int8", "sqnr_int4_db", "hessian_trace", "class"}) REQUIRE(l.contains(k));
  REQUIRE(j.contains("budget_bytes"));
  REQUIRE(j["pareto"].size() >= 1);
  for (const auto& p : j["pareto"]) REQUIRE((p.contains("bytes") && p.contains("accuracy")));

  // Sizes: each strategy's bytes are the exact quantized sizes of its layers.
  for (const auto& s : r.strategies) {
    std::size_t bytes = 0;
    for (std::size_t l = 0; l < fashion::n_layers; ++l) {
      const auto it = s.specs.find(fashion::layer_names[l]);
      const auto& w = r.layers[l];
      bytes += it == s.specs.end() ? 4 * static_cast<std::size_t>(w.rows * w.cols) : mixprec::quantized_bytes(it->second, w.rows, w.cols);
    }
    INFO(s.name);
    CHECK(bytes == s.bytes);
  }
  // The default budget is the all-INT4 size; the budgeted plans fit and the exact one predicts no more
  // loss than greedy.
  const auto& int4 = fashion::strategy(r, "int4");
  CHECK(r.budget_bytes == static_cast<double>(int4.bytes));
  const auto& greedy = fashion::strategy(r, "greedy");
  const auto& knapsack = fashion::strategy(r, "knapsack");
  CHECK(static_cast<double>(greedy.bytes) <= r.budget_bytes);
  CHECK(static_cast<double>(knapsack.bytes) <= r.budget_bytes);
  CHECK(knapsack.predicted_kl <= greedy.predicted_kl + 1e-12);
  CHECK(knapsack.predicted_kl <= int4.predicted_kl + 1e-12);  // all-INT4 is one of the plans within the budget
  CHECK(fashion::strategy(r, "knapsack+qat").specs == knapsack.specs);
  CHECK(fashion::strategy(r, "knapsack+qat").bytes == knapsack.bytes);
  CHECK(fashion::strategy(r, "int4+qat").bytes == int4.bytes);
  // INT8 everywhere loses little; the classes follow the INT4 drops.
  CHECK(fashion::strategy(r, "int8").accuracy > fashion::strategy(r, "fp32").accuracy - 0.05);
  for (const auto& l : r.layers) CHECK(l.cls == mixprec::classify(l.drop_int4));
  // The frontier: sizes increase and predicted losses decrease.
  for (std::size_t i = 1; i < r.pareto.size(); ++i) {
    CHECK(r.pareto[i].bytes > r.pareto[i - 1].bytes);
    CHECK(r.pareto[i].predicted_kl < r.pareto[i - 1].predicted_kl);
  }
  // KL is measured, non-negative, and zero only for the FP32 network itself.
  CHECK(fashion::strategy(r, "fp32").kl == Approx(0.0).margin(1e-12));
  CHECK(fashion::strategy(r, "int4").kl > 0.0);
  // Hessian traces of the Gauss-Newton blocks are positive.
  for (const auto& l : r.layers) CHECK(l.hessian_trace > 0.0);

  // Outputs, and the cache: a second run loads the weights and reproduces the FP32 accuracy.
  const auto files = fashion::write_pareto(r, o.out_dir);
  CHECK(std::filesystem::exists(out / "pareto.csv"));
  CHECK(std::filesystem::exists(out / "pareto.gp"));
  CHECK_FALSE(r.from_cache);
  o.qat_steps = 1;
  const fashion::results again = fashion::run_pipeline(o, quiet);
  CHECK(again.from_cache);
  CHECK(fashion::strategy(again, "fp32").accuracy == fashion::strategy(r, "fp32").accuracy);
  // A cache for another architecture is not used.
  o.arch.f1 = 24;
  o.qat_steps = 0;
  CHECK_FALSE(fashion::run_pipeline(o, quiet).from_cache);
  std::filesystem::remove_all(out);
}

TEST_CASE("pipeline: missing data names the package", "[fashion][pipeline]") {
  const auto e = mixprec::test::error_of([] { (void)fashion::load_dataset("/nonexistent/fashion", 10, 10, 10); });
  REQUIRE(e);
  CHECK(e->code() == mixprec::errc::io_error);
  CHECK_THAT(e->what(), Catch::Contains("dataset-fashion-mnist"));
}
