// Importance-weighted scale search (ggml's quantize_row_{q4_0,q4_1,q4_K,q6_K}_impl; Q8_0 takes no weights).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "support/errors.hpp"

using mixprec::ggml_type;
using mixprec::index_t;
namespace ggml = mixprec::ggml;

namespace {

struct data {
  std::vector<float> x, w;
};

// Gaussian rows and log-normal (strongly non-uniform) importance, one weight per column.
data make(std::size_t rows, std::size_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  data d;
  d.x.resize(rows * cols);
  for (float& v : d.x) v = 0.02f * g(rng);
  d.w.resize(cols);
  for (float& v : d.w) v = std::exp(1.5f * g(rng));
  return d;
}

// sum_j w_j (x_j - y_j)^2 over all rows (w indexed by column).
double weighted_error(const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& w) {
  double e = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double r = double(x[i]) - y[i];
    e += w[i % w.size()] * r * r;
  }
  return e;
}

std::vector<float> round_trip(ggml_type t, const data& d, std::size_t cols, bool weighted) {
  const std::size_t rows = d.x.size() / cols;
  const Eigen::Map<const mixprec::row_matrix> m(d.x.data(), index_t(rows), index_t(cols));
  const auto bytes = weighted ? ggml::quantize(t, m, std::span<const float>(d.w)) : ggml::quantize(t, m);
  const mixprec::row_matrix back = ggml::dequantize(t, bytes, index_t(rows), index_t(cols));
  return {back.data(), back.data() + back.size()};
}

}  // namespace

TEST_CASE("without weights the bytes are the reference's", "[ggml][weighted]") {
  const data d = make(4, 512, 1);
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q6_k, ggml_type::q4_1, ggml_type::q4_k}) {
    std::vector<std::byte> got(ggml::row_bytes(t, 512)), want(got.size());
    ggml::quantize_row(t, std::span<const float>(d.x).first(512), got, std::nullopt);
    // The reference, block by block.
    for (std::size_t b = 0; b < 512 / std::size_t(ggml::block_size(t)); ++b) {
      const float* xb = d.x.data() + b * std::size_t(ggml::block_size(t));
      std::byte* out = want.data() + b * std::size_t(ggml::type_size(t));
      if (t == ggml_type::q4_0) {
        ggml::block_q4_0 blk;
        ggml::ref::quantize_q4_0(xb, blk);
        std::memcpy(out, &blk, sizeof blk);
      } else if (t == ggml_type::q8_0) {
        ggml::block_q8_0 blk;
        ggml::ref::quantize_q8_0(xb, blk);
        std::memcpy(out, &blk, sizeof blk);
      } else if (t == ggml_type::q4_1) {
        ggml::block_q4_1 blk;
        ggml::ref::quantize_q4_1(xb, blk);
        std::memcpy(out, &blk, sizeof blk);
      } else if (t == ggml_type::q4_k) {
        ggml::block_q4_k blk{};
        ggml::ref::quantize_q4_k(xb, blk);
        std::memcpy(out, &blk, sizeof blk);
      } else {
        ggml::block_q6_k blk;
        ggml::ref::quantize_q6_k(xb, blk);
        std::memcpy(out, &blk, sizeof blk);
      }
    }
    CHECK(got == want);
  }
}

TEST_CASE("importance-weighted search lowers the weighted error", "[ggml][weighted]") {
  const std::size_t cols = 1024;
  for (unsigned seed : {1u, 2u, 3u}) {
    const data d = make(64, cols, seed);
    for (ggml_type t : {ggml_type::q4_0, ggml_type::q6_k, ggml_type::q4_1, ggml_type::q4_k}) {
      const double plain = weighted_error(d.x, round_trip(t, d, cols, false), d.w);
      const double weighted = weighted_error(d.x, round_trip(t, d, cols, true), d.w);
      INFO(mixprec::to_string(t) << " seed " << seed << ": plain " << plain << ", weighted " << weighted);
      CHECK(weighted < plain);
      if (t == ggml_type::q4_0 || t == ggml_type::q4_1 || t == ggml_type::q4_k)
        CHECK(weighted < 0.95 * plain);  // a clear gain at 4 bits
    }
  }
}

TEST_CASE("Q8_0 ignores importance weights, as ggml's quantize_q8_0 does", "[ggml][weighted]") {
  const data d = make(16, 256, 11);
  for (std::size_t r = 0; r < 16; ++r) {
    const std::span<const float> x(d.x.data() + r * 256, 256);
    std::vector<std::byte> plain(ggml::row_bytes(ggml_type::q8_0, 256)), weighted(plain.size());
    ggml::quantize_row(ggml_type::q8_0, x, plain);
    ggml::quantize_row(ggml_type::q8_0, x, weighted, std::span<const float>(d.w));
    CHECK(weighted == plain);
  }
}

TEST_CASE("Q4_0 weighted search follows make_qx_quants: a stored scale is the weighted LS fit", "[ggml][weighted]") {
  // For the codes ggml keeps, its scale is sum(w x l) / sum(w l^2) with w = qw * sqrt(sigma2 + x^2)
  // (unless every grid was worse than RTN, when it is still that block's LS scale of the RTN codes).
  const data d = make(1, 256, 21);
  std::vector<std::byte> out(ggml::row_bytes(ggml_type::q4_0, 256));
  ggml::quantize_row(ggml_type::q4_0, d.x, out, std::span<const float>(d.w));
  double sx2 = 0;
  for (float v : d.x) sx2 += double(v) * v;
  const double sigma2 = sx2 / 256;
  for (std::size_t b = 0; b < 8; ++b) {
    ggml::block_q4_0 blk;
    std::memcpy(&blk, out.data() + b * sizeof blk, sizeof blk);
    double slx = 0, sl2 = 0;
    for (int j = 0; j < 32; ++j) {
      const int code = j < 16 ? (blk.qs[j] & 0xF) : (blk.qs[j - 16] >> 4);
      const double l = code - 8;
      const double x = d.x[b * 32 + std::size_t(j)];
      const double w = d.w[b * 32 + std::size_t(j)] * std::sqrt(sigma2 + x * x);
      slx += w * x * l;
      sl2 += w * l * l;
    }
    const double ls = slx / sl2;
    CHECK(mixprec::fp16_to_fp32(blk.d) == Approx(ls).epsilon(2e-3));
  }
}

TEST_CASE("weights: checked, ignored by float types", "[ggml][weighted]") {
  std::vector<float> x(256, 0.1f), w(256, 1.0f);
  std::vector<std::byte> out(ggml::row_bytes(ggml_type::q4_0, 256));
  auto code_of = [&](ggml_type t, std::span<const float> ws) {
    std::vector<std::byte> o(ggml::row_bytes(t, 256));
    return mixprec::test::error_code_of([&] { ggml::quantize_row(t, x, o, ws); });
  };
  CHECK(code_of(ggml_type::q4_0, std::span<const float>(w).first(255)) == mixprec::errc::shape_mismatch);
  w[3] = -1.0f;
  CHECK(code_of(ggml_type::q4_0, w) == mixprec::errc::invalid_argument);
  w[3] = std::nanf("");
  CHECK(code_of(ggml_type::q8_0, w) == mixprec::errc::invalid_argument);
  w[3] = 1.0f;
  CHECK(code_of(ggml_type::q4_1, w) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::q4_k, w) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::f16, w) == std::nullopt);  // accepted
  {
    // Float types store the values whatever the weights.
    std::vector<std::byte> a(512), b(512);
    ggml::quantize_row(ggml_type::f16, x, a, std::span<const float>(w));
    ggml::quantize_row(ggml_type::f16, x, b);
    CHECK(a == b);
  }
  CHECK(code_of(ggml_type::q6_k, w) == std::nullopt);  // accepted
  // All-zero weights leave nothing to optimise: still a valid block.
  std::vector<float> zero(256, 0.0f);
  CHECK(code_of(ggml_type::q4_0, zero) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::q8_0, zero) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::q4_1, zero) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::q4_k, zero) == std::nullopt);  // accepted
  CHECK(code_of(ggml_type::q6_k, zero) == std::nullopt);  // accepted
}
