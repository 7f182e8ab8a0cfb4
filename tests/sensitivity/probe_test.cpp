// The accuracy-drop probe on a synthetic MLP with one layer built to be sensitive: ranking, exact
// restoration (also after exceptions), the replica-parallel probe, progress.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixprec/model.hpp"
#include "mixprec/plan/quantize_model.hpp"
#include "mixprec/sensitivity/probe.hpp"
#include "mixprec/sensitivity/report.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {

// x -> tanh(W1 x) -> tanh(3 W2 h1) -> W3 h2: 3 layers, 32 inputs, 8 classes, 512 samples (columns).
struct mlp {
  row_matrix w1 = test::gaussian(32, 32, 0.25f, 1);
  row_matrix w2 = test::gaussian(32, 32, 0.25f, 2);
  row_matrix w3 = test::gaussian(8, 32, 0.25f, 3);
  Eigen::MatrixXf x = test::gaussian(32, 512, 1.0f, 4);

  mlp() {
    // fc2 is made fragile: four huge weights set its per-tensor INT4 scale (40 / 7), so every other
    // weight rounds to zero, and the steep tanh after it turns that into wrong classes.
    w2.diagonal().head(4).setConstant(40.0f);
    // Values whose bits a sloppy restore would lose: -0.0 and a denormal.
    w1(0, 0) = -0.0f;
    w1(0, 1) = 1e-40f;
  }
  [[nodiscard]] Eigen::MatrixXf h1() const { return (w1 * x).array().tanh(); }
  [[nodiscard]] Eigen::MatrixXf h2() const { return (3.0f * (w2 * h1())).array().tanh(); }
  [[nodiscard]] Eigen::MatrixXf logits() const { return w3 * h2(); }  // classes x samples
  [[nodiscard]] std::vector<layer> layers() {
    return {make_layer("fc1", w1), make_layer("fc2", w2), make_layer("fc3", w3)};
  }
};

std::vector<index_t> argmax_cols(const Eigen::MatrixXf& m) {
  std::vector<index_t> out(static_cast<std::size_t>(m.cols()));
  for (index_t c = 0; c < m.cols(); ++c) m.col(c).maxCoeff(&out[static_cast<std::size_t>(c)]);
  return out;
}

// Accuracy against the full-precision predictions.
double accuracy(const mlp& m, const std::vector<index_t>& labels) {
  const auto pred = argmax_cols(m.logits());
  std::size_t hits = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) hits += pred[i] == labels[i] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(pred.size());
}

bool same_bits(const row_matrix& a, const row_matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0;
}
bool same_bits(const mlp& a, const mlp& b) { return same_bits(a.w1, b.w1) && same_bits(a.w2, b.w2) && same_bits(a.w3, b.w3); }

const std::vector<quant_spec> candidates = {parse_spec("int4/tensor"), parse_spec("int8/channel"), parse_spec("fp16")};

}  // namespace

TEST_CASE("the probe ranks the fragile layer first and restores every weight bit for bit", "[sensitivity][probe]") {
  mlp net;
  const auto labels = argmax_cols(net.logits());
  const mlp before = net;
  auto layers = net.layers();
  std::size_t calls = 0;
  bool in_order = true;
  const probe_report rep = probe_layers(layers, candidates, [&] { return accuracy(net, labels); },
                                        [&](std::size_t done, std::size_t total, const std::string& name) {
                                          in_order = in_order && done == ++calls && total == 9 &&
                                                     name == layers[(done - 1) / 3].name;
                                        });
  CHECK(calls == 9);
  CHECK(in_order);
  CHECK(same_bits(before, net));
  CHECK(std::signbit(net.w1(0, 0)));
  CHECK(rep.baseline == 1.0);
  REQUIRE(rep.results.size() == 9);
  for (std::size_t i = 0; i < 9; ++i) {
    CHECK(rep.results[i].layer == layers[i / 3].name);
    CHECK(rep.results[i].spec == candidates[i % 3]);
    CHECK(rep.results[i].drop == std::fabs(rep.baseline - rep.results[i].metric));
  }
  // INT4 per-tensor: fc2 first, by a margin; INT8 hurts it much less.
  const auto ranked = rep.ranked(candidates[0]);
  REQUIRE(ranked.size() == 3);
  INFO("int4 drops: " << ranked[0].layer << " " << ranked[0].drop << ", " << ranked[1].layer << " " << ranked[1].drop
                      << ", " << ranked[2].layer << " " << ranked[2].drop);
  CHECK(ranked[0].layer == "fc2");
  CHECK(ranked[0].drop > 0.2);
  CHECK(ranked[0].drop > 3.0 * ranked[1].drop);
  CHECK(rep.results[4].drop < 0.5 * ranked[0].drop);  // fc2 at int8
  // The probe measured what a hand-quantized model gives.
  mlp by_hand = before;
  by_hand.w2 = dequantize(quantize(by_hand.w2, candidates[0]));
  CHECK(rep.results[3].metric == accuracy(by_hand, labels));
  // The report classifies it high and suggests FP16.
  const sensitivity_report report = make_report(rep, "accuracy");
  CHECK(report.rows[3].layer == "fc2");
  CHECK(report.rows[3].cls == sensitivity_class::high);
  CHECK(report.rows[3].suggestion == "fp16");
  CHECK(report.table().find("| fc2 | int4/tensor/sym/minmax/s32 |") != std::string::npos);
}

TEST_CASE("weight-only scores: the output proxy flags the fragile layer, the weight SQNR cannot",
          "[sensitivity][probe]") {
  mlp net;
  const Eigen::MatrixXf h1 = net.h1(), h2 = net.h2();
  auto layers = net.layers();
  layers[0].with_activations(net.x);
  layers[1].with_activations(h1);
  layers[2].with_activations(h2);
  const auto scores = analyze_weights(layers, {candidates[0]});
  INFO("output errors " << scores[0].output_error << " " << scores[1].output_error << " " << scores[2].output_error);
  INFO("SQNR " << scores[0].sqnr_db << " " << scores[1].sqnr_db << " " << scores[2].sqnr_db);
  // ||(Q(W) - W) X||^2: fc2 loses every weight but its four outliers, on inputs of magnitude ~1.
  CHECK(scores[1].output_error > 3.0 * std::max(scores[0].output_error, scores[2].output_error));
  // Its SQNR is the best of the three: the preserved outliers dominate |W|^2. (Why the probe exists.)
  CHECK(scores[1].sqnr_db > std::max(scores[0].sqnr_db, scores[2].sqnr_db));
}

TEST_CASE("weights are restored when the evaluation or the quantizer throws", "[sensitivity][probe]") {
  mlp net;
  const mlp before = net;
  auto layers = net.layers();
  int n = 0;
  auto failing = [&]() -> double {
    if (++n == 3) throw std::runtime_error("evaluation failed");
    return 0.5;
  };
  CHECK_THROWS_WITH(probe_layers(layers, {parse_spec("int2/tensor")}, failing), "evaluation failed");
  CHECK(n == 3);  // baseline, fc1, then fc2 threw with fc2 quantized
  CHECK(same_bits(before, net));
  // A weight the quantizer rejects: nothing is touched, the error names the layer.
  net.w3(2, 5) = std::numeric_limits<float>::quiet_NaN();
  const mlp with_nan = net;
  CHECK_THROWS_WITH(probe_layers(layers, {parse_spec("int8")}, [] { return 1.0; }), Catch::Contains("fc3"));
  CHECK(same_bits(with_nan, net));
  // Bad arguments.
  CHECK_THROWS_AS(probe_layers(layers, std::vector<quant_spec>{}, [] { return 1.0; }), error);
  std::vector<layer> none;
  CHECK_THROWS_AS(probe_layers(none, candidates, [] { return 1.0; }), error);
  CHECK_THROWS_AS(probe_layers(layers, candidates, [] { return std::nan(""); }), error);  // baseline
}

TEST_CASE("a NaN metric is an infinite drop", "[sensitivity][probe]") {
  mlp net;
  auto layers = net.layers();
  const float* fc2 = net.w2.data();
  // The evaluation "breaks" whenever fc2 holds quantized values.
  const float original = fc2[1];
  auto eval = [&] { return fc2[1] == original ? 2.0 : std::nan(""); };
  const probe_report rep = probe_layers(layers, {parse_spec("int4/tensor")}, eval);
  CHECK(rep.results[0].drop == 0.0);
  CHECK(std::isnan(rep.results[1].metric));
  CHECK(rep.results[1].drop == std::numeric_limits<double>::infinity());
  CHECK(make_report(rep).rows[1].cls == sensitivity_class::high);
}

TEST_CASE("the replica-parallel probe gives the sequential results", "[sensitivity][probe]") {
  const mlp original;
  const auto labels = argmax_cols(original.logits());
  const std::vector<quant_spec> cand = {parse_spec("int4/tensor"), parse_spec("int4/g8"), parse_spec("int8/channel")};
  mlp seq = original;
  auto seq_layers = seq.layers();
  const probe_report expected = probe_layers(seq_layers, cand, [&] { return accuracy(seq, labels); });
  int made = 0;
  auto factory = [&] {
    ++made;
    auto copy = std::make_shared<mlp>(original);
    return probe_replica{copy->layers(), [copy, &labels] { return accuracy(*copy, labels); }, copy};
  };
  for (unsigned threads : {1u, 2u, 3u}) {
    made = 0;
    std::size_t ticks = 0;
    const probe_report got = probe_layers_parallel(factory, cand, {threads, [&](std::size_t, std::size_t, const std::string&) { ++ticks; }});
    CHECK(made == static_cast<int>(threads));
    CHECK(ticks == 9);
    CHECK(got.baseline == expected.baseline);
    CHECK(got.results == expected.results);
  }
  // Replicas that share the original's memory would race: rejected before any work.
  mlp shared = original;
  auto bad_factory = [&] { return probe_replica{shared.layers(), [&] { return accuracy(shared, labels); }, nullptr}; };
  CHECK_THROWS_WITH(probe_layers_parallel(bad_factory, cand, {2, {}}), Catch::Contains("shares weight memory"));
  // Replicas must agree on their layers.
  int k = 0;
  auto uneven = [&] {
    auto copy = std::make_shared<mlp>(original);
    auto ls = copy->layers();
    if (k++ == 1) ls.pop_back();
    return probe_replica{ls, [copy, &labels] { return accuracy(*copy, labels); }, copy};
  };
  CHECK_THROWS_AS(probe_layers_parallel(uneven, cand, {2, {}}), error);
  // An exception in a worker propagates.
  auto throwing = [&] {
    auto copy = std::make_shared<mlp>(original);
    auto calls = std::make_shared<int>(0);
    return probe_replica{copy->layers(),
                         [copy, calls]() -> double {
                           if (++*calls == 4) throw std::runtime_error("worker failed");
                           return 1.0;
                         },
                         copy};
  };
  CHECK_THROWS_WITH(probe_layers_parallel(throwing, cand, {2, {}}), "worker failed");
  CHECK_THROWS_AS(probe_layers_parallel(nullptr, cand), error);
}

TEST_CASE("the probe takes llama.cpp's block types like any spec", "[probe][ggml]") {
  mlp net;
  const mlp before = net;
  const auto labels = argmax_cols(net.logits());
  auto layers = net.layers();
  const std::vector<quant_spec> candidates{parse_spec("q4_0"), parse_spec("q8_0")};
  const probe_report rep = probe_layers(layers, candidates, [&] { return accuracy(net, labels); });
  REQUIRE(rep.results.size() == 6);
  CHECK(same_bits(net.w1, before.w1));  // restored exactly
  CHECK(same_bits(net.w2, before.w2));
  // Each metric is that of the model with this one layer at ggml's bytes (formats/ggml.hpp).
  for (std::size_t i = 0; i < rep.results.size(); ++i) {
    const auto& r = rep.results[i];
    mlp by_hand = before;
    row_matrix& w = r.layer == "fc1" ? by_hand.w1 : r.layer == "fc2" ? by_hand.w2 : by_hand.w3;
    w = ggml::dequantize(r.spec.ggml, ggml::quantize(r.spec.ggml, w), w.rows(), w.cols());
    INFO(r.layer << " " << to_string(r.spec));
    CHECK(r.metric == accuracy(by_hand, labels));
  }
}

// The one view: a const layer or model only reads (so analyses cannot write), a mutable one is what
// the probe needs; the planner's functions take the same model.
static_assert(!std::is_assignable_v<decltype(std::declval<const layer&>().weight()(0, 0)), float>);
static_assert(std::is_assignable_v<decltype(std::declval<layer&>().weight()(0, 0)), float>);
static_assert(std::is_convertible_v<model&, std::span<layer>>);
static_assert(!std::is_convertible_v<const model&, std::span<layer>>);
static_assert(std::is_convertible_v<const model&, std::span<const layer>>);
static_assert(!std::is_convertible_v<const std::vector<layer>&, std::span<layer>>);

TEST_CASE("one model view serves the probe, shapes_of and quantize_model", "[sensitivity][probe][plan]") {
  mlp net;
  const auto labels = argmax_cols(net.logits());
  model m;
  m.add("fc1", net.w1);
  m.add("fc2", net.w2);
  m.add("fc3", net.w3);
  const probe_report rep = probe_layers(m, {parse_spec("int8/channel")}, [&] { return accuracy(net, labels); });
  CHECK(rep.results.size() == 3);
  const std::vector<layer_shape> shapes = shapes_of(m);
  REQUIRE(shapes.size() == 3);
  CHECK(shapes[2] == layer_shape{"fc3", 8, 32});
  plan p;
  for (const layer_shape& s : shapes) {
    plan_entry e;
    e.layer = s.name;
    e.spec = parse_spec("int4/g8");
    e.rows = s.rows;
    e.cols = s.cols;
    p.entries.push_back(e);
  }
  const quantized_model q = quantize_model(p, m);
  REQUIRE(q.layers.size() == 3);
  CHECK(q.at("fc2").bytes() == quantize(net.w2, parse_spec("int4/g8")).bytes());
  CHECK(dequantize(q.at("fc1")) == dequantize(quantize(net.w1, parse_spec("int4/g8"))));
}
