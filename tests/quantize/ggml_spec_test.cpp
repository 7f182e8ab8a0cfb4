// llama.cpp's block types as quant specs: their text form, exact sizes, and that quantize, dequantize,
// the GEMV row-decode path and analyze_weights give formats/ggml.hpp's bytes and values (which the
// interop test compares with llama.cpp's own), with and without importance.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/ref/gemv_ref.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {

const ggml_type block_types[] = {ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1,
                                 ggml_type::q8_0, ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k,
                                 ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_nl, ggml_type::iq4_xs};

std::vector<std::uint8_t> bytes_of(const std::vector<std::byte>& b) {
  std::vector<std::uint8_t> out(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) out[i] = static_cast<std::uint8_t>(b[i]);
  return out;
}

std::vector<float> importance(index_t cols) {
  std::vector<float> v(static_cast<std::size_t>(cols));
  for (index_t j = 0; j < cols; ++j) v[static_cast<std::size_t>(j)] = std::exp(std::sin(0.37f * static_cast<float>(j)) * 3.0f);
  return v;
}

}  // namespace

TEST_CASE("ggml block types parse, print and size as llama.cpp's", "[ggml][spec]") {
  for (ggml_type t : block_types) {
    const std::string name(to_string(t));
    const quant_spec s = parse_spec(name);
    CHECK(s.format == format_id::ggml_block);
    CHECK(s.ggml == t);
    CHECK(to_string(s) == name);
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(parse_spec(upper) == s);
    CHECK(ggml_spec(t) == s);
    CHECK(ggml_type_of(s) == t);
    const index_t bs = ggml::block_size(t);
    CHECK(quantized_bytes(s, 3, 2 * bs) == 3u * 2u * static_cast<std::size_t>(ggml::type_size(t)));
    CHECK(bits_per_weight(s, 3, 2 * bs) == Approx(ggml::bits_per_weight(t)));
    CHECK(fits(s, 2 * bs));
    CHECK_FALSE(fits(s, bs + 16));
    CHECK_THROWS_AS(quantized_bytes(s, 3, bs + 16), error);
    CHECK_THROWS_AS(parse_spec(name + "/g32"), error);
  }
  // llama.cpp's float names are mixprec's float formats (the same bytes).
  CHECK(parse_spec("f16") == parse_spec("fp16"));
  CHECK(parse_spec("BF16") == parse_spec("bf16"));
  CHECK(parse_spec("f32") == parse_spec("fp32"));
  CHECK(ggml_type_of(parse_spec("fp16")) == ggml_type::f16);
  CHECK_FALSE(ggml_type_of(parse_spec("int4/g32")).has_value());
  CHECK(nominal_bits(parse_spec("q4_K")) == 4);
  CHECK(nominal_bits(parse_spec("q6_K")) == 6);
  CHECK(nominal_bits(parse_spec("q8_0")) == 8);
  CHECK(nominal_bits(parse_spec("q2_K")) == 2);
  quant_spec bad;
  bad.format = format_id::ggml_block;  // no block type named
  CHECK_THROWS_AS(validate(bad), error);
}

TEST_CASE("quantize and dequantize of a ggml spec are formats/ggml.hpp's bytes and values", "[ggml][spec]") {
  const row_matrix w = test::gaussian(7, 512, 0.02f, 11);
  const std::vector<float> imp = importance(w.cols());
  for (ggml_type t : block_types) {
    INFO(to_string(t));
    const quant_spec s = ggml_spec(t);
    const quantized_tensor q = quantize(w, s, "w");
    CHECK(q.bytes() == quantized_bytes(s, w.rows(), w.cols()));
    CHECK(std::vector<std::uint8_t>(q.codes().begin(), q.codes().end()) == bytes_of(ggml::quantize(t, w)));
    const quantized_tensor qr = quantize_reference(w, s, "w");
    CHECK(std::vector<std::uint8_t>(qr.codes().begin(), qr.codes().end()) == bytes_of(ggml::quantize(t, w)));
    const quantized_tensor qi = quantize(w, s, "w", imp);
    CHECK(std::vector<std::uint8_t>(qi.codes().begin(), qi.codes().end()) ==
          bytes_of(ggml::quantize(t, w, std::span<const float>(imp))));
    if (ggml::traits(t).takes_weights) CHECK_FALSE(std::equal(qi.codes().begin(), qi.codes().end(), q.codes().begin()));
    const row_matrix back = dequantize(q);
    CHECK(back == ggml::dequantize(t, ggml::quantize(t, w), w.rows(), w.cols()));
    CHECK(dequantize_reference(q) == back);

    // The GEMV row-decode path: within the FP32 summation bound of the double reference.
    const row_matrix x = test::gaussian(1, w.cols(), 1.0f, 3);
    std::vector<float> y(static_cast<std::size_t>(w.rows())), yr(y.size());
    std::vector<double> mag(y.size());
    gemv(q, {x.data(), static_cast<std::size_t>(x.size())}, y, {.activations = activation_type::fp32});
    ref::gemv(q, x.data(), yr.data());
    ref::gemv_magnitude(q, x.data(), mag.data());
    for (std::size_t r = 0; r < y.size(); ++r)
      CHECK((std::abs(static_cast<double>(y[r]) - yr[r]) <= static_cast<double>(w.cols()) * 0x1p-23 * mag[r] + 1e-30));
  }
  CHECK_THROWS_AS(quantize(test::gaussian(2, 100, 0.02f, 1), parse_spec("q4_0")), error);           // 100 % 32 != 0
  CHECK_THROWS_AS(quantize(w, parse_spec("q4_K"), "w", std::vector<float>(5, 1.0f)), error);        // wrong length
}

TEST_CASE("analyze_weights on ggml specs searches with the layer's importance", "[ggml][spec]") {
  row_matrix w = test::gaussian(40, 256, 0.02f, 5);
  const std::vector<float> imp = importance(w.cols());
  Eigen::VectorXd d(w.cols());
  for (index_t j = 0; j < w.cols(); ++j) d[j] = imp[static_cast<std::size_t>(j)];
  const layer plain = make_layer("plain", w);
  layer weighted = make_layer("weighted", w);
  weighted.with_importance(d);
  const std::vector<layer> layers{plain, weighted};
  const std::vector<quant_spec> specs{parse_spec("q4_K"), parse_spec("q4_0"), parse_spec("q8_0")};
  weight_analysis_options options;
  options.threads = 2;
  const auto scores = analyze_weights(layers, specs, options);
  REQUIRE(scores.size() == 6);
  for (std::size_t k = 0; k < scores.size(); ++k) {
    const bool is_weighted = k >= specs.size();
    const quant_spec& s = specs[k % specs.size()];
    INFO(to_string(s) << (is_weighted ? " weighted" : " plain"));
    const auto bytes = is_weighted ? ggml::quantize(s.ggml, w, std::span<const float>(imp)) : ggml::quantize(s.ggml, w);
    const row_matrix back = ggml::dequantize(s.ggml, bytes, w.rows(), w.cols());
    const Eigen::ArrayXXd e = (back.cast<double>() - w.cast<double>()).array();
    CHECK(scores[k].bytes == bytes.size());
    CHECK(scores[k].weight_error == Approx((e * e).sum()).epsilon(1e-12));
    if (is_weighted)
      CHECK(scores[k].output_error == Approx(((e * e).rowwise() * d.transpose().array()).sum()).epsilon(1e-12));
  }
  // The weighted search lowers the weighted error it is steered by (q4_K and q4_0; q8_0 ignores it).
  const auto weighted_error_of_plain = [&](const quant_spec& s) {
    const row_matrix back = ggml::dequantize(s.ggml, ggml::quantize(s.ggml, w), w.rows(), w.cols());
    const Eigen::ArrayXXd e = (back.cast<double>() - w.cast<double>()).array();
    return ((e * e).rowwise() * d.transpose().array()).sum();
  };
  CHECK(scores[3].output_error < weighted_error_of_plain(specs[0]));
  CHECK(scores[4].output_error < weighted_error_of_plain(specs[1]));
  CHECK(scores[5].output_error == Approx(weighted_error_of_plain(specs[2])).epsilon(1e-12));
}
