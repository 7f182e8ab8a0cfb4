// Weight-only analysis and the accuracy-drop probe on a synthetic MLP with one layer built to be
// sensitive.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "mixprec/sensitivity/probe.hpp"
#include "mixprec/sensitivity/report.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {

// x -> tanh(W1 x) -> tanh(W2 h) -> W3 h: 3 layers, 32 inputs, 8 classes.
struct mlp {
  row_matrix w1 = test::gaussian(32, 32, 0.25f, 1);
  row_matrix w2 = test::gaussian(32, 32, 0.25f, 2);
  row_matrix w3 = test::gaussian(8, 32, 0.25f, 3);
  row_matrix x = test::gaussian(512, 32, 1.0f, 4);  // 512 samples, one per row

  mlp() {
    // Layer 2 is made fragile: a few huge weights dominate its per-tensor INT4 scale, so every other
    // weight rounds to zero, and the sharp tanh after it turns that into wrong classes.
    w2.diagonal().head(4).setConstant(40.0f);
  }
  [[nodiscard]] Eigen::MatrixXf logits() const {
    const Eigen::MatrixXf h1 = (x * w1.transpose()).array().tanh();
    const Eigen::MatrixXf h2 = (3.0f * (h1 * w2.transpose())).array().tanh();
    return h2 * w3.transpose();
  }
  std::vector<layer_ref> layers() {
    return {make_layer("fc1", w1), make_layer("fc2", w2), make_layer("fc3", w3)};
  }
};

std::vector<int> argmax_rows(const Eigen::MatrixXf& m) {
  std::vector<int> out(static_cast<std::size_t>(m.rows()));
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    Eigen::Index c = 0;
    m.row(r).maxCoeff(&c);
    out[static_cast<std::size_t>(r)] = static_cast<int>(c);
  }
  return out;
}

}  // namespace

TEST_CASE("the probe ranks the fragile layer first and restores every weight bit for bit", "[sensitivity][probe]") {
  mlp model;
  const std::vector<int> labels = argmax_rows(model.logits());  // FP32 predictions as labels
  auto accuracy = [&] {
    const auto pred = argmax_rows(model.logits());
    std::size_t hits = 0;
    for (std::size_t i = 0; i < pred.size(); ++i) hits += pred[i] == labels[i] ? 1 : 0;
    return static_cast<double>(hits) / static_cast<double>(pred.size());
  };
  const mlp before = model;
  auto layers = model.layers();
  std::size_t calls = 0;
  const std::vector<quant_spec> candidates = {parse_spec("int4/tensor"), parse_spec("int8/channel")};
  const probe_report rep = probe_layers(layers, candidates, accuracy,
                                        [&](std::size_t done, std::size_t total, const std::string&) {
                                          ++calls;
                                          CHECK(done <= total);
                                        });
  CHECK(calls == 6);
  CHECK(rep.baseline == 1.0);
  REQUIRE(rep.results.size() == 6);
  // Bit-identical weights after the run.
  CHECK(std::memcmp(before.w1.data(), model.w1.data(), sizeof(float) * 32 * 32) == 0);
  CHECK(std::memcmp(before.w2.data(), model.w2.data(), sizeof(float) * 32 * 32) == 0);
  CHECK(std::memcmp(before.w3.data(), model.w3.data(), sizeof(float) * 8 * 32) == 0);
  // INT4 per-tensor: fc2 has the largest drop, by a margin.
  const double d1 = rep.results[0].drop, d2 = rep.results[2].drop, d3 = rep.results[4].drop;
  INFO("drops fc1 " << d1 << " fc2 " << d2 << " fc3 " << d3);
  CHECK(rep.results[2].layer == "fc2");
  CHECK(d2 > 2.0 * std::max(d1, d3));
  CHECK(d2 > 0.1);
  // INT8 hurts less than INT4 on the fragile layer.
  CHECK(rep.results[3].drop < d2);
  // The report classifies it high and suggests FP16.
  const sensitivity_report report = make_report(rep, "accuracy");
  CHECK(report.rows[2].cls == sensitivity_class::high);
  CHECK(report.rows[2].suggestion == "fp16");
  CHECK(report.table().find("| fc2 | int4/tensor/sym/minmax/s32 |") != std::string::npos);
}

TEST_CASE("weights are restored when the evaluation throws", "[sensitivity][probe]") {
  mlp model;
  const mlp before = model;
  auto layers = model.layers();
  int n = 0;
  auto failing = [&]() -> double {
    if (++n == 3) throw std::runtime_error("evaluation failed");
    return 0.5;
  };
  const std::vector<quant_spec> int2 = {parse_spec("int2/tensor")};
  CHECK_THROWS_WITH(probe_layers(layers, int2, failing), "evaluation failed");
  CHECK(std::memcmp(before.w1.data(), model.w1.data(), sizeof(float) * 32 * 32) == 0);
  CHECK(std::memcmp(before.w2.data(), model.w2.data(), sizeof(float) * 32 * 32) == 0);
  CHECK_THROWS_AS(probe_layers(layers, std::vector<quant_spec>{}, failing), error);
}

TEST_CASE("weight analysis: the Gram proxy equals the direct output error", "[sensitivity][weights]") {
  row_matrix w = test::gaussian(16, 48, 0.1f, 7);
  const row_matrix x = test::gaussian(200, 48, 1.0f, 8);  // 200 tokens
  std::vector<layer_ref> layers = {make_layer("proj", w)};
  layers[0].gram = gram_from_activations(x);
  const std::vector<quant_spec> candidates = {parse_spec("int4/g16"), parse_spec("int8/channel"), parse_spec("fp16")};
  const auto scores = analyze_weights(layers, candidates, {2, {}});
  REQUIRE(scores.size() == 3);
  for (const auto& s : scores) {
    const row_matrix back = dequantize(quantize(w, s.spec));
    const double direct = ((back - w).cast<double>() * x.cast<double>().transpose()).squaredNorm();
    CHECK(s.output_error == Approx(direct).epsilon(1e-9));
    CHECK(s.bytes == quantized_bytes(s.spec, 16, 48));
    CHECK(s.sqnr_db == Approx(sqnr_db(w, back)));
  }
  CHECK(scores[0].output_error > scores[1].output_error);
  CHECK(scores[1].output_error > scores[2].output_error);
  // A diagonal importance vector gives the diagonal-only proxy.
  layers[0].gram.reset();
  layers[0].importance = Eigen::VectorXd::Ones(48);
  const auto diag = analyze_weights(layers, {parse_spec("int4/g16")});
  const row_matrix back = dequantize(quantize(w, parse_spec("int4/g16")));
  CHECK(diag[0].output_error == Approx((back - w).cast<double>().squaredNorm()));
  // Bad statistics are rejected.
  layers[0].importance = Eigen::VectorXd::Ones(47);
  CHECK_THROWS_AS(analyze_weights(layers, candidates), error);
}

TEST_CASE("weight analysis reports progress and propagates errors from threads", "[sensitivity][weights]") {
  std::vector<row_matrix> ws;
  for (int i = 0; i < 6; ++i) ws.push_back(test::gaussian(8, 64, 0.1f, static_cast<std::uint32_t>(i)));
  ws[4](3, 3) = std::numeric_limits<float>::quiet_NaN();
  std::vector<layer_ref> layers;
  for (int i = 0; i < 6; ++i) layers.push_back(make_layer("l" + std::to_string(i), ws[static_cast<std::size_t>(i)]));
  CHECK_THROWS_WITH(analyze_weights(layers, {parse_spec("int4/g32")}, {2, {}}), Catch::Contains("l4"));
  ws[4](3, 3) = 0.0f;
  std::size_t last = 0;
  const auto scores = analyze_weights(layers, {parse_spec("int4/g32")}, {2, [&](std::size_t d, std::size_t t, const std::string&) {
                                                                             CHECK(t == 6);
                                                                             last = std::max(last, d);
                                                                           }});
  CHECK(last == 6);
  CHECK(scores[5].layer == "l5");
}
