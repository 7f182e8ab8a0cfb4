// Weight-only analysis: blocked scoring equals whole-matrix quantization, the Gram / activation /
// importance proxies equal the direct ||(Q(W) - W) X||^2, threads, progress, errors, the model view.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "mixprec/model.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

const std::vector<quant_spec> specs = {parse_spec("int4/g32/sym/minmax/s16"), parse_spec("int4/g16/asym/mse"),
                                       parse_spec("int8/channel"),           parse_spec("int4/tensor/sym/p99"),
                                       parse_spec("int2/g64/asym"),          parse_spec("fp8_e4m3/channel"),
                                       parse_spec("int4/g32/stochastic"),    parse_spec("fp16"),
                                       parse_spec("bf16"),                   parse_spec("fp32")};

// ||(Q(W) - W) X||_F^2 straight from the definition, X = in x tokens.
double direct_output_error(const row_matrix& w, const quant_spec& s, const Eigen::MatrixXf& x) {
  const Eigen::MatrixXd e = dequantize(quantize(w, s)).cast<double>() - w.cast<double>();
  return (e * x.cast<double>()).squaredNorm();
}

}  // namespace

TEST_CASE("blocked weight scores equal the metrics of the whole-matrix round trip", "[sensitivity][weights]") {
  // 300 x 700: about 93 rows per block, so 4 blocks, the last one short.
  row_matrix w = test::gaussian(300, 700, 0.02f, 11);
  w(123, 456) = 0.9f;  // an outlier
  const std::vector<layer> layers = {make_layer("w", w)};
  const auto scores = analyze_weights(layers, specs);
  REQUIRE(scores.size() == specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const weight_score& s = scores[i];
    INFO(to_string(s.spec));
    CHECK(s.layer == "w");
    CHECK(s.spec == specs[i]);
    const quantized_tensor q = quantize(w, specs[i]);
    const row_matrix back = dequantize(q);
    CHECK(s.bytes == q.bytes());
    CHECK(s.bits_per_weight == Approx(q.bits_per_weight()));
    const Eigen::MatrixXd e = back.cast<double>() - w.cast<double>();  // exact differences
    const double noise = e.squaredNorm();
    CHECK(s.weight_error == Approx(noise).epsilon(1e-12));
    CHECK(s.mse == Approx(noise / (300.0 * 700.0)).epsilon(1e-12));
    CHECK(s.max_abs_error == e.cwiseAbs().maxCoeff());
    CHECK(s.cosine == Approx(cosine_similarity(w, back)).epsilon(1e-12));
    if (specs[i].format == format_id::fp32) {
      CHECK(s.sqnr_db == std::numeric_limits<double>::infinity());
    } else {
      CHECK(s.sqnr_db == Approx(10.0 * std::log10(w.cast<double>().squaredNorm() / noise)).epsilon(1e-12));
    }
    CHECK(std::isnan(s.output_error));  // no statistics
  }
  // More bits, less noise.
  CHECK(scores[0].sqnr_db < scores[2].sqnr_db);
  CHECK(scores[2].sqnr_db < scores[7].sqnr_db);
}

TEST_CASE("the Gram proxy equals the direct output error (all three statistics)", "[sensitivity][weights]") {
  row_matrix w = test::gaussian(37, 48, 0.1f, 7);
  const Eigen::MatrixXf x = test::gaussian(48, 200, 1.0f, 8);  // 48 features x 200 tokens, col-major
  const std::vector<quant_spec> candidates = {parse_spec("int4/g16"), parse_spec("int8/channel"), parse_spec("int4/tensor"),
                                              parse_spec("fp16")};
  layer with_gram = make_layer("gram", w);
  with_gram.with_gram(gram_from_activations(x));
  layer with_x = make_layer("acts", w);
  with_x.with_activations(x);
  // A tokens x features row-major buffer is the same memory: map it as features x tokens.
  const row_matrix x_tokens_major = x.transpose();
  layer with_buffer = make_layer("buffer", w);
  with_buffer.with_activations(x_tokens_major.data(), 200);
  const std::vector<layer> layers = {with_gram, with_x, with_buffer};
  const auto scores = analyze_weights(layers, candidates, {2, {}});
  REQUIRE(scores.size() == 12);
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const weight_score& s = scores[i];
    INFO(s.layer << " " << to_string(s.spec));
    const double direct = direct_output_error(w, s.spec, x);
    CHECK(s.output_error == Approx(direct).epsilon(1e-10));
    CHECK(s.output_error > 0.0);
  }
  CHECK(scores[0].output_error > scores[1].output_error);  // int4 worse than int8
  CHECK(scores[1].output_error > scores[3].output_error);  // int8 worse than fp16
  // The Gram from batches equals the Gram of all tokens.
  gram_accumulator acc(48);
  acc.add(x.leftCols(77));
  acc.add(x.rightCols(123));
  CHECK(acc.tokens() == 200);
  CHECK((acc.gram() - gram_from_activations(x)).cwiseAbs().maxCoeff() < 1e-9);
  CHECK((acc.importance() - importance_from_activations(x)).cwiseAbs().maxCoeff() < 1e-9);
  CHECK_THROWS_AS(acc.add(Eigen::MatrixXf::Ones(47, 3)), error);
}

TEST_CASE("the importance proxy is the diagonal-weighted squared error", "[sensitivity][weights]") {
  row_matrix w = test::gaussian(20, 64, 0.1f, 9);
  Eigen::VectorXd d(64);
  for (int j = 0; j < 64; ++j) d[j] = 1.0 + j % 5;
  layer l = make_layer("l", w);
  l.with_importance(d);
  const std::vector<layer> layers = {l};
  const auto s = analyze_weights(layers, {parse_spec("int4/g32")});
  const Eigen::MatrixXd e = dequantize(quantize(w, parse_spec("int4/g32"))).cast<double>() - w.cast<double>();
  double expected = 0.0;
  for (index_t r = 0; r < 20; ++r)
    for (index_t c = 0; c < 64; ++c) expected += e(r, c) * e(r, c) * d[c];
  CHECK(s[0].output_error == Approx(expected).epsilon(1e-12));
  // With uncorrelated, equal-variance features the Gram is diagonal and both proxies agree.
  layer g = make_layer("g", w);
  g.with_gram(Eigen::MatrixXd(d.asDiagonal()));
  const std::vector<layer> gl = {g};
  CHECK(analyze_weights(gl, {parse_spec("int4/g32")})[0].output_error == Approx(expected).epsilon(1e-12));
  // output_error_proxy (what plan/ uses) gives the same number.
  CHECK(output_error_proxy(l, dequantize(quantize(w, parse_spec("int4/g32")))) == Approx(expected).epsilon(1e-12));
  CHECK(std::isnan(output_error_proxy(make_layer("none", w), w)));
  CHECK_THROWS_AS(output_error_proxy(l, row_matrix(20, 63)), error);
}

TEST_CASE("a strided view scores like a dense copy", "[sensitivity][weights]") {
  row_matrix big = test::gaussian(40, 100, 0.05f, 3);
  row_matrix slice = big.middleCols(10, 64);  // dense copy
  const std::vector<layer> a = {make_layer("slice", big.data() + 10, 40, 64, 100)};
  const std::vector<layer> b = {make_layer("slice", slice)};
  const std::vector<layer> c = {make_layer("slice", big.middleCols(10, 64))};
  CHECK(a[0].stride == 100);
  CHECK(c[0].stride == 100);
  const std::vector<quant_spec> cand = {parse_spec("int4/g32"), parse_spec("int8/tensor")};
  const auto sa = analyze_weights(a, cand), sb = analyze_weights(b, cand), sc = analyze_weights(c, cand);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(sa[i].weight_error == sb[i].weight_error);
    CHECK(sc[i].weight_error == sb[i].weight_error);
  }
}

TEST_CASE("threads give the same scores; progress is counted; errors name the layer", "[sensitivity][weights]") {
  std::vector<row_matrix> ws;
  for (int i = 0; i < 6; ++i) ws.push_back(test::gaussian(8 + 16 * i, 64, 0.1f, static_cast<std::uint32_t>(i)));
  model m;
  for (int i = 0; i < 6; ++i) m.add("l" + std::to_string(i), ws[static_cast<std::size_t>(i)]);
  const std::vector<quant_spec> cand = {parse_spec("int4/g32"), parse_spec("int8")};
  const auto one = analyze_weights(m, cand, {1, {}});
  std::size_t calls = 0, last = 0;
  bool in_order = true;
  const auto two = analyze_weights(m, cand, {2, [&](std::size_t done, std::size_t total, const std::string& name) {
                                               ++calls;  // serialised: no data race on these
                                               in_order = in_order && done == last + 1 && total == 12 && !name.empty();
                                               last = done;
                                             }});
  CHECK(calls == 12);
  CHECK(in_order);
  const auto all = analyze_weights(m, cand, {0, {}});
  REQUIRE(one.size() == 12);
  for (std::size_t i = 0; i < 12; ++i) {
    CHECK(one[i].layer == "l" + std::to_string(i / 2));
    CHECK(one[i].spec == cand[i % 2]);
    CHECK(two[i].weight_error == one[i].weight_error);
    CHECK(all[i].sqnr_db == one[i].sqnr_db);
  }
  ws[4](3, 5) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(analyze_weights(m, cand, {2, {}}), Catch::Contains("'l4'") && Catch::Contains("row 3, column 5"));
  CHECK_THROWS_WITH(analyze_weights(m, {parse_spec("fp16")}, {2, {}}), Catch::Contains("row 3, column 5"));
  ws[4](3, 5) = 0.0f;
  // A format overflow is a result, not an error: fp16 cannot hold 1e6.
  ws[2](0, 0) = 1e6f;
  const auto over = analyze_weights(m, {parse_spec("fp16")});
  CHECK(over[2].sqnr_db == -std::numeric_limits<double>::infinity());
  CHECK(over[2].weight_error == std::numeric_limits<double>::infinity());
  CHECK(std::isfinite(over[1].sqnr_db));
}

TEST_CASE("invalid views and candidates are rejected", "[sensitivity][weights]") {
  row_matrix w = test::gaussian(4, 8, 1.0f, 1);
  const std::vector<quant_spec> cand = {parse_spec("int8")};
  auto fails = [&](const std::vector<layer>& ls, errc code) {
    return test::error_code_of([&] { (void)analyze_weights(ls, cand); }) == code;
  };
  CHECK(fails({}, errc::empty_input));
  CHECK(fails({make_layer("a", w), make_layer("a", w)}, errc::invalid_argument));
  layer l = make_layer("a", w);
  l.name.clear();
  CHECK(fails({l}, errc::invalid_argument));
  l = make_layer("a", w);
  l.with_gram(Eigen::MatrixXd::Identity(7, 7));
  CHECK(fails({l}, errc::shape_mismatch));
  l.with_gram(Eigen::MatrixXd::Identity(8, 8)).with_importance(Eigen::VectorXd::Ones(8));
  CHECK(fails({l}, errc::invalid_argument));  // two statistics
  l = make_layer("a", w);
  l.with_importance(-Eigen::VectorXd::Ones(8));
  CHECK(fails({l}, errc::invalid_argument));
  l = make_layer("a", w);
  Eigen::MatrixXd g = Eigen::MatrixXd::Identity(8, 8);
  g(1, 2) = std::numeric_limits<double>::infinity();
  l.with_gram(g);
  CHECK(fails({l}, errc::non_finite));
  l = make_layer("a", w);
  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(8, 3);
  x(0, 0) = std::numeric_limits<float>::quiet_NaN();
  l.with_activations(x);
  CHECK(fails({l}, errc::non_finite));
  const Eigen::MatrixXf x7 = Eigen::MatrixXf::Ones(7, 3);
  CHECK_THROWS_AS(l.with_activations(x7), error);  // 7 features for 8 columns
  l = make_layer("a", w.data(), 4, 8, 3);
  CHECK(fails({l}, errc::invalid_argument));  // stride < cols
  CHECK_THROWS_AS(make_layer("a", nullptr, 4, 8), error);
  row_matrix empty(0, 8);
  CHECK_THROWS_AS(make_layer("e", empty), error);
  CHECK_THROWS_AS(analyze_weights(std::vector<layer>{make_layer("a", w)}, {}), error);
  quant_spec bad = parse_spec("int4/g32");
  bad.group_size = 0;
  CHECK_THROWS_AS(analyze_weights(std::vector<layer>{make_layer("a", w)}, {bad}), error);
}

TEST_CASE("model: an ordered list of views over the user's weights", "[sensitivity][model]") {
  row_matrix a = test::gaussian(4, 8, 1.0f, 1), b = test::gaussian(6, 8, 1.0f, 2);
  model m;
  m.add("a", a);
  m.add("b", b.data(), 6, 8);
  CHECK(m.size() == 2);
  CHECK(m.parameters() == 80);
  CHECK(m["b"].data == b.data());  // a view, not a copy
  CHECK(m.find("c") == nullptr);
  CHECK_THROWS_AS(m["c"], error);
  CHECK_THROWS_AS(m.add("a", b), error);
  m["a"].with_importance(Eigen::VectorXd::Ones(8));
  CHECK(m.layers()[0].statistic() == layer_statistic::importance);
  m.layers()[0].weight()(0, 0) = 42.0f;  // writes through to the user's matrix
  CHECK(a(0, 0) == 42.0f);
  std::vector<std::string> names;
  for (const layer& l : m) names.push_back(l.name);
  CHECK(names == std::vector<std::string>{"a", "b"});
  CHECK_THROWS_AS(model(std::vector<layer>{make_layer("x", a), make_layer("x", b)}), error);
}

TEST_CASE("a Gram accumulator of no features is refused before anything is allocated", "[sensitivity][weights]") {
  CHECK(test::error_code_of([] { gram_accumulator a(0); }) == errc::empty_input);
  CHECK(test::error_code_of([] { gram_accumulator a(-3); }) == errc::empty_input);
}
