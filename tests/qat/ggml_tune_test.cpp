// GPTQ inside llama.cpp's block types (qat/ggml_tune.hpp) and the Gram collector it feeds on
// (sensitivity/input_gram.hpp): codes set in place without touching the rest of a block, the output
// error it minimises, and the held-out decision.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/qat/ggml_tune.hpp"
#include "mixprec/sensitivity/input_gram.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {

constexpr ggml_type tunable_types[] = {ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1,
                                       ggml_type::q8_0, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k};

std::vector<float> decode(ggml_type t, const std::vector<std::byte>& bytes, index_t n) {
  std::vector<float> y(static_cast<std::size_t>(n));
  ggml::dequantize_row(t, bytes, y);
  return y;
}

// Inputs with correlated columns (what makes GPTQ's error moving worth anything): X = Z M, Z gaussian,
// M = I + a gaussian mixing matrix, plus a few strong columns as LLM activations have.
row_matrix correlated_inputs(index_t positions, index_t n, std::uint32_t seed, const row_matrix& mix) {
  row_matrix x = test::gaussian(positions, n, 1.0f, seed) * mix;
  return x;
}

}  // namespace

TEST_CASE("set_code changes exactly one weight's code, and the block's values are affine in it", "[qat][ggml_tune]") {
  for (ggml_type t : tunable_types) {
    INFO(to_string(t));
    const int bs = ggml::block_size(t);
    const row_matrix w = test::gaussian(1, bs, 1.0f, 7);
    std::vector<std::byte> b = ggml::quantize(t, w);
    const std::vector<float> base = decode(t, b, bs);
    const ggml::codes r = ggml::code_range(t);
    for (int e = 0; e < bs; ++e) {
      const int original = ggml::get_code(t, b.data(), e);
      CHECK(original >= r.lo);
      CHECK(original <= r.hi);
      std::vector<float> at(static_cast<std::size_t>(r.hi - r.lo + 1));
      for (int c = r.lo; c <= r.hi; ++c) {
        std::vector<std::byte> m = b;
        ggml::set_code(t, m.data(), e, c);
        REQUIRE(ggml::get_code(t, m.data(), e) == c);
        const std::vector<float> y = decode(t, m, bs);
        int others_changed = 0;
        for (int k = 0; k < bs; ++k)
          if (k != e) others_changed += std::memcmp(&y[static_cast<std::size_t>(k)], &base[static_cast<std::size_t>(k)], sizeof(float)) != 0;
        REQUIRE(others_changed == 0);
        at[static_cast<std::size_t>(c - r.lo)] = y[static_cast<std::size_t>(e)];
        if (c == original) REQUIRE(std::memcmp(&y[static_cast<std::size_t>(e)], &base[static_cast<std::size_t>(e)], sizeof(float)) == 0);
      }
      const double step = static_cast<double>(at[1]) - at[0];
      REQUIRE(step != 0.0);
      for (std::size_t k = 2; k < at.size(); ++k)
        REQUIRE(std::abs((static_cast<double>(at[k]) - at[0]) - step * static_cast<double>(k)) <= 1e-5 * std::abs(step) * static_cast<double>(k));
    }
    CHECK_THROWS_AS(ggml::set_code(t, b.data(), 0, r.hi + 1), error);
  }
  CHECK_THROWS_AS(ggml::code_range(ggml_type::q2_k), error);
  CHECK_FALSE(ggml::tunable(ggml_type::iq4_nl));
}

TEST_CASE("input_gram sums x^T x over positions, across its batches", "[sensitivity][ggml_tune]") {
  const row_matrix x = test::gaussian(300, 24, 1.0f, 11);  // more than one batch of 256
  input_gram g;
  for (index_t p = 0; p < x.rows(); ++p) g.observe("m", &x(p, 0), x.cols());
  const Eigen::MatrixXd want = x.cast<double>().transpose() * x.cast<double>();
  CHECK((g.gram("m") - want).cwiseAbs().maxCoeff() <= 1e-9 * want.cwiseAbs().maxCoeff());
  CHECK(g.count("m") == 300.0);
  CHECK(g.gram("m").isApprox(g.gram("m").transpose()));
  CHECK_THROWS_AS(g.observe("m", &x(0, 0), 12), error);
  CHECK_THROWS_AS((void)g.gram("other"), error);
  std::vector<float> bad(24, 0.0f);
  bad[3] = std::nanf("");
  CHECK_THROWS_AS(g.observe("m", bad.data(), 24), error);
}

TEST_CASE("GPTQ in the block types lowers the output error on calibration and held-out inputs", "[qat][ggml_tune]") {
  const index_t n = 256, rows = 48;
  const row_matrix mix = row_matrix::Identity(n, n) + test::gaussian(n, n, 0.15f, 5);
  const row_matrix xc = correlated_inputs(1024, n, 21, mix), xh = correlated_inputs(1024, n, 22, mix);
  const Eigen::MatrixXd gc = xc.cast<double>().transpose() * xc.cast<double>();
  const Eigen::MatrixXd gh = xh.cast<double>().transpose() * xh.cast<double>();
  const row_matrix w = test::gaussian(rows, n, 0.05f, 9);
  Eigen::VectorXf imp = (xc.cast<double>().array().square().colwise().sum() / 1024.0).cast<float>().transpose();
  for (ggml_type t : tunable_types)
    for (bool with_imp : {false, true}) {
      INFO(to_string(t) << (with_imp ? " with importance" : ""));
      const float* qw = with_imp ? imp.data() : nullptr;
      const std::vector<std::byte> untuned =
          with_imp ? ggml::quantize(t, w, std::span<const float>(imp.data(), static_cast<std::size_t>(n))) : ggml::quantize(t, w);
      const std::vector<std::byte> tuned = ggml::gptq_quantize(t, w, gc, qw);
      REQUIRE(tuned.size() == untuned.size());
      const double before = ggml::output_error(t, untuned, w, gc), after = ggml::output_error(t, tuned, w, gc);
      const double held_before = ggml::output_error(t, untuned, w, gh), held_after = ggml::output_error(t, tuned, w, gh);
      CHECK(after < 0.8 * before);
      CHECK(held_after < 0.9 * held_before);
      // Threads split rows only.
      CHECK(ggml::gptq_quantize(t, w, gc, qw, {.threads = 3}) == tuned);
      const ggml::tuned_matrix m = ggml::tune_matrix(t, w, untuned, gc, gh, qw);
      CHECK(m.kept);
      CHECK(m.bytes == tuned);
      CHECK(m.heldout_after == held_after);
    }
}

TEST_CASE("with uncorrelated inputs GPTQ moves no error: the codes are the nearest under ggml's own scales", "[qat][ggml_tune]") {
  const index_t n = 256;
  const row_matrix w = test::gaussian(16, n, 1.0f, 13);
  const Eigen::MatrixXd g = Eigen::MatrixXd::Identity(n, n);
  for (ggml_type t : tunable_types) {
    INFO(to_string(t));
    const std::vector<std::byte> untuned = ggml::quantize(t, w), tuned = ggml::gptq_quantize(t, w, g);
    // Same scales, nearest codes: never worse than ggml's codes for the plain squared error.
    CHECK(ggml::output_error(t, tuned, w, g) <= ggml::output_error(t, untuned, w, g) * (1.0 + 1e-6));
  }
}

TEST_CASE("tune_matrix keeps ggml's bytes when GPTQ's are worse on the held-out inputs", "[qat][ggml_tune]") {
  const index_t n = 64;
  const row_matrix w = test::gaussian(32, n, 1.0f, 17);
  const row_matrix mix = row_matrix::Identity(n, n) + test::gaussian(n, n, 0.5f, 19);
  const row_matrix x = correlated_inputs(512, n, 23, mix);
  const Eigen::MatrixXd gc = x.cast<double>().transpose() * x.cast<double>();
  const Eigen::MatrixXd gh = Eigen::MatrixXd::Identity(n, n);  // other inputs: GPTQ's trade costs here
  const auto untuned = ggml::quantize(ggml_type::q4_0, w);
  const ggml::tuned_matrix m = ggml::tune_matrix(ggml_type::q4_0, w, untuned, gc, gh);
  REQUIRE(m.heldout_after > m.heldout_before);
  CHECK_FALSE(m.kept);
  CHECK(m.bytes == untuned);
  CHECK(m.calibration_after < m.calibration_before);
}

TEST_CASE("gptq_quantize refuses what it cannot tune", "[qat][ggml_tune]") {
  const row_matrix w = test::gaussian(4, 64, 1.0f, 1);
  const Eigen::MatrixXd g = Eigen::MatrixXd::Identity(64, 64);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q2_k, row_matrix::Ones(4, 256), Eigen::MatrixXd::Identity(256, 256)); }) == errc::unsupported);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, w, Eigen::MatrixXd::Identity(32, 32)); }) == errc::shape_mismatch);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, row_matrix::Ones(4, 48), Eigen::MatrixXd::Identity(48, 48)); }) == errc::invalid_argument);
  Eigen::MatrixXd bad = g;
  bad(3, 5) = std::nan("");
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, w, bad); }) == errc::non_finite);
  row_matrix wn = w;
  wn(1, 1) = INFINITY;
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, wn, g); }) == errc::non_finite);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, w, g, nullptr, {.damp = 0.0}); }) == errc::invalid_argument);
  // A column no input reaches (G_jj = 0) is no reason to fail.
  Eigen::MatrixXd dead = g;
  dead(7, 7) = 0.0;
  CHECK(ggml::gptq_quantize(ggml_type::q4_0, w, dead).size() == ggml::quantize(ggml_type::q4_0, w).size());
}

TEST_CASE("refit_scales solves for the FP16 scales of fixed codes and never raises a row's error", "[qat][ggml_tune]") {
  const index_t n = 256;
  const row_matrix w = test::gaussian(24, n, 1.0f, 29);
  const Eigen::MatrixXd g = Eigen::MatrixXd::Identity(n, n);
  for (ggml_type t : tunable_types) {
    INFO(to_string(t));
    const std::vector<std::byte> before = ggml::quantize(t, w);
    std::vector<std::byte> after = before;
    ggml::detail::refit_scales(t, w, g, after, 1);
    const std::size_t rb = ggml::row_bytes(t, n), ts = static_cast<std::size_t>(ggml::type_size(t));
    const int bs = ggml::block_size(t);
    int codes_changed = 0;
    for (std::size_t b = 0; b < after.size() / ts; ++b)
      for (int e = 0; e < bs; ++e) codes_changed += ggml::get_code(t, before.data() + b * ts, e) != ggml::get_code(t, after.data() + b * ts, e);
    CHECK(codes_changed == 0);
    std::vector<float> buf(static_cast<std::size_t>(n));
    for (index_t r = 0; r < w.rows(); ++r) {
      const auto row = [&](const std::vector<std::byte>& v) { return std::span<const std::byte>(v).subspan(static_cast<std::size_t>(r) * rb, rb); };
      CHECK(ggml::detail::row_error(t, row(after), w, r, g, buf) <= ggml::detail::row_error(t, row(before), w, r, g, buf));
    }
  }
  // ggml's q4_0 reference takes d = max / -8, not the least-squares scale of its codes: the refit finds better.
  std::vector<std::byte> q = ggml::quantize(ggml_type::q4_0, w);
  const double e0 = ggml::output_error(ggml_type::q4_0, q, w, g);
  ggml::detail::refit_scales(ggml_type::q4_0, w, g, q, 1);
  CHECK(ggml::output_error(ggml_type::q4_0, q, w, g) < 0.97 * e0);
}

TEST_CASE("the held-out check rejects GPTQ fitted to fewer positions than columns; rows split over threads", "[qat][ggml_tune]") {
  const index_t n = 256;
  const row_matrix mix = row_matrix::Identity(n, n) + test::gaussian(n, n, 0.15f, 31);
  const row_matrix few = correlated_inputs(32, n, 33, mix), enough = correlated_inputs(512, n, 36, mix), many = correlated_inputs(2048, n, 34, mix);
  const Eigen::MatrixXd g_few = few.cast<double>().transpose() * few.cast<double>();
  const Eigen::MatrixXd g_enough = enough.cast<double>().transpose() * enough.cast<double>();
  const Eigen::MatrixXd gh = many.cast<double>().transpose() * many.cast<double>();
  const row_matrix w = test::gaussian(130, n, 0.05f, 35);  // more than 64 rows: for_row_chunks splits them
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q4_1, ggml_type::q8_0, ggml_type::q4_k}) {
    INFO(to_string(t));
    const auto untuned = ggml::quantize(t, w);
    // 32 positions for 256 columns: G has rank 32 and GPTQ moves error where those inputs are blind.
    const auto overfit = ggml::tune_matrix(t, w, untuned, g_few, gh);
    CHECK(overfit.calibration_after < overfit.calibration_before);
    CHECK_FALSE(overfit.kept);
    CHECK(overfit.bytes == untuned);
    const auto m = ggml::tune_matrix(t, w, untuned, g_enough, gh);
    CHECK(m.kept);
    CHECK(m.heldout_after < 0.9 * m.heldout_before);
    CHECK(ggml::gptq_quantize(t, w, g_enough, nullptr, {.threads = 3}) == ggml::gptq_quantize(t, w, g_enough, nullptr, {.threads = 1}));
  }
}

TEST_CASE("weights a block's FP16 scale cannot hold are not_representable, as untuned", "[qat][ggml_tune]") {
  row_matrix w = test::gaussian(2, 64, 1.0f, 37);
  w(1, 3) = 1e6f;  // q4_0's d would be 1e6 / 8, above FP16's 65504
  w(1, 4) = -1e6f;
  const std::vector<float> imp(64, 1.0f);
  const Eigen::MatrixXd g = Eigen::MatrixXd::Identity(64, 64);
  CHECK(test::error_code_of([&] { (void)ggml::quantize(ggml_type::q4_0, w, std::span<const float>(imp)); }) == errc::not_representable);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, w, g, imp.data()); }) == errc::not_representable);
  CHECK(test::error_code_of([&] { (void)ggml::gptq_quantize(ggml_type::q4_0, w, g); }) == errc::not_representable);
}
