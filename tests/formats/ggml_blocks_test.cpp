// ggml block formats: type codes and sizes, hand-derived blocks from the documented formulas, nibble
// order, round-trip bounds, errors, and the SQNR ggml itself reaches on Gaussian weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "support/errors.hpp"

using mixprec::ggml_type;
using mixprec::index_t;
namespace ggml = mixprec::ggml;

namespace {

std::vector<float> gaussian(std::size_t n, float sigma, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<std::byte> q_row(ggml_type t, const std::vector<float>& x,
                             std::optional<std::span<const float>> w = std::nullopt) {
  std::vector<std::byte> out(ggml::row_bytes(t, static_cast<std::int64_t>(x.size())));
  ggml::quantize_row(t, x, out, w);
  return out;
}

std::vector<float> dq_row(ggml_type t, const std::vector<std::byte>& b, std::size_t n) {
  std::vector<float> y(n);
  ggml::dequantize_row(t, b, y);
  return y;
}

std::uint8_t u8(const std::vector<std::byte>& b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }
std::uint16_t u16(const std::vector<std::byte>& b, std::size_t i) {
  return static_cast<std::uint16_t>(u8(b, i) | (u8(b, i + 1) << 8));
}

double sqnr_db(const std::vector<float>& x, const std::vector<float>& y) {
  double s = 0, e = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    s += double(x[i]) * x[i];
    e += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  }
  return 10.0 * std::log10(s / e);
}

using mixprec::test::error_code_of;

}  // namespace

// Codes as GGUF stores them (ggml.h's enum ggml_type).
static_assert(static_cast<std::uint32_t>(ggml_type::f32) == 0);
static_assert(static_cast<std::uint32_t>(ggml_type::f16) == 1);
static_assert(static_cast<std::uint32_t>(ggml_type::q4_0) == 2);
static_assert(static_cast<std::uint32_t>(ggml_type::q4_1) == 3);
static_assert(static_cast<std::uint32_t>(ggml_type::q8_0) == 8);
static_assert(static_cast<std::uint32_t>(ggml_type::q4_k) == 12);
static_assert(static_cast<std::uint32_t>(ggml_type::q6_k) == 14);
static_assert(static_cast<std::uint32_t>(ggml_type::bf16) == 30);
static_assert(static_cast<std::uint32_t>(ggml_type::q5_0) == 6);
static_assert(static_cast<std::uint32_t>(ggml_type::q5_1) == 7);
static_assert(mixprec::is_supported_ggml_type(14) && mixprec::is_supported_ggml_type(6) && !mixprec::is_supported_ggml_type(16));

TEST_CASE("ggml types: names, sizes and row bytes", "[ggml]") {
  for (ggml_type t : mixprec::all_ggml_types) CHECK(mixprec::parse_ggml_type(mixprec::to_string(t)) == t);
  CHECK(mixprec::parse_ggml_type("Q4_0") == ggml_type::q4_0);
  CHECK(mixprec::parse_ggml_type("q4_k") == ggml_type::q4_k);
  CHECK(mixprec::parse_ggml_type("Q6_K") == ggml_type::q6_k);
  CHECK(mixprec::parse_ggml_type("BF16") == ggml_type::bf16);
  CHECK(mixprec::to_string(ggml_type::q4_k) == "q4_K");
  CHECK(error_code_of([] { (void)mixprec::parse_ggml_type("iq2_xxs"); }) == mixprec::errc::invalid_argument);
  CHECK_THROWS_WITH(mixprec::parse_ggml_type("int4"), Catch::Contains("q8_0"));

  CHECK(ggml::row_bytes(ggml_type::f32, 7) == 28);
  CHECK(ggml::row_bytes(ggml_type::f16, 3) == 6);
  CHECK(ggml::row_bytes(ggml_type::bf16, 3) == 6);
  CHECK(ggml::row_bytes(ggml_type::q8_0, 32) == 34);
  CHECK(ggml::row_bytes(ggml_type::q4_0, 64) == 36);
  CHECK(ggml::row_bytes(ggml_type::q4_1, 96) == 60);
  CHECK(ggml::row_bytes(ggml_type::q4_k, 256) == 144);
  CHECK(ggml::row_bytes(ggml_type::q6_k, 512) == 420);
  CHECK(ggml::bits_per_weight(ggml_type::q4_0) == 4.5);
  CHECK(ggml::bits_per_weight(ggml_type::q8_0) == 8.5);
  CHECK(ggml::bits_per_weight(ggml_type::q4_1) == 5.0);
  CHECK(ggml::bits_per_weight(ggml_type::q4_k) == 4.5);
  CHECK(ggml::bits_per_weight(ggml_type::q6_k) == 6.5625);
  CHECK(ggml::block_size(ggml_type::q6_k) == 256);
  CHECK(ggml::type_size(ggml_type::q4_1) == 20);

  CHECK(error_code_of([] { (void)ggml::row_bytes(ggml_type::q4_0, 33); }) == mixprec::errc::invalid_argument);
  CHECK_THROWS_WITH(ggml::row_bytes(ggml_type::q4_0, 33), Catch::Contains("32") && Catch::Contains("33"));
  CHECK_THROWS_WITH(ggml::row_bytes(ggml_type::q6_k, 128), Catch::Contains("256"));
  CHECK(error_code_of([] { (void)ggml::row_bytes(ggml_type::q8_0, 0); }) == mixprec::errc::invalid_argument);
  CHECK(error_code_of([] { (void)ggml::row_bytes(static_cast<ggml_type>(16), 256); }) == mixprec::errc::unsupported);
}

TEST_CASE("Q8_0 by hand: d = amax/127, roundf rounds half away from zero", "[ggml][q8_0]") {
  // amax = 127 makes d = 1 and id = 1 exactly: the codes are roundf(x).
  std::vector<float> x(32, 0.0f);
  x[0] = -127.0f;
  x[1] = 2.5f;    // tie: 3 (half to even would give 2)
  x[2] = -2.5f;   // tie: -3
  x[3] = 0.5f;    // tie: 1
  x[4] = -0.5f;   // tie: -1
  x[5] = 1.4f;
  x[6] = 126.6f;
  const auto b = q_row(ggml_type::q8_0, x);
  REQUIRE(b.size() == 34);
  CHECK(u16(b, 0) == 0x3C00);  // FP16 1.0
  const std::int8_t expect[] = {-127, 3, -3, 1, -1, 1, 127};
  for (int j = 0; j < 7; ++j) CHECK(static_cast<std::int8_t>(u8(b, 2 + j)) == expect[j]);
  for (int j = 7; j < 32; ++j) CHECK(u8(b, 2 + j) == 0);

  // amax = 31.75 = 127/4: d = 0.25, codes are x / 0.25 exactly.
  std::vector<float> y(32);
  for (int j = 0; j < 32; ++j) y[j] = 0.25f * static_cast<float>(4 * j - 127 + (j == 31 ? 3 : 0));
  const auto c = q_row(ggml_type::q8_0, y);
  CHECK(u16(c, 0) == 0x3400);  // FP16 0.25
  for (int j = 0; j < 32; ++j) CHECK(static_cast<std::int8_t>(u8(c, 2 + j)) == 4 * j - 127 + (j == 31 ? 3 : 0));
  CHECK(dq_row(ggml_type::q8_0, c, 32) == y);
}

TEST_CASE("Q8_0 codes use the unrounded d; FP16 rounding of d comes after", "[ggml][q8_0]") {
  // Find blocks where rounding x/d and x/fp16(d) disagree; the stored codes must follow the former.
  int differing = 0;
  for (unsigned seed = 1; seed < 200 && differing < 5; ++seed) {
    const auto x = gaussian(32, 1.0f, seed);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float d = amax / 127.0f;
    const float id = 1.0f / d;
    const float d16 = mixprec::fp16_to_fp32(mixprec::fp32_to_fp16(d));
    const auto b = q_row(ggml_type::q8_0, x);
    CHECK(u16(b, 0) == mixprec::fp32_to_fp16(d));
    for (int j = 0; j < 32; ++j) {
      const auto want = static_cast<int>(std::roundf(x[j] * id));
      CHECK(static_cast<std::int8_t>(u8(b, 2 + j)) == want);
      if (static_cast<int>(std::roundf(x[j] / d16)) != want) ++differing;
    }
  }
  CHECK(differing > 0);  // the test saw the distinction it is about
}

TEST_CASE("Q4_0 by hand: signed max -> -8, half rounds up, nibble order j | j+16", "[ggml][q4_0]") {
  // max = -4 (the largest magnitude, negative): d = 0.5, id = 2, q = trunc(2x + 8.5).
  std::vector<float> x(32);
  for (int j = 0; j < 16; ++j) x[j] = 0.5f * static_cast<float>(j - 8);        // codes j
  for (int j = 0; j < 16; ++j) x[16 + j] = 0.5f * static_cast<float>(7 - j);   // codes 15 - j
  const auto b = q_row(ggml_type::q4_0, x);
  REQUIRE(b.size() == 18);
  CHECK(u16(b, 0) == 0x3800);  // FP16 0.5
  for (int j = 0; j < 16; ++j) CHECK(u8(b, 2 + j) == (j | ((15 - j) << 4)));
  CHECK(dq_row(ggml_type::q4_0, b, 32) == x);

  // Ties: 2x + 8.5 = 9 for x = 0.25 (code 9: half up), 8 for x = -0.25 (code 8, not 7).
  x[1] = 0.25f;
  x[2] = -0.25f;
  x[17] = 0.75f;  // 2x + 8.5 = 10 -> 10
  const auto c = q_row(ggml_type::q4_0, x);
  CHECK((u8(c, 2 + 1) & 0xF) == 9);
  CHECK((u8(c, 2 + 2) & 0xF) == 8);
  CHECK((u8(c, 2 + 1) >> 4) == 10);

  // Positive max: d = max / -8 < 0; the first of two equal magnitudes wins; +max -> code 0 and
  // -max -> 16, clamped to 15.
  std::vector<float> y(32, 0.0f);
  y[0] = 4.0f;
  y[1] = -4.0f;
  y[16] = 3.5f;   // 3.5 * -2 + 8.5 = 1.5 -> 1
  const auto e = q_row(ggml_type::q4_0, y);
  CHECK(u16(e, 0) == 0xB800);  // FP16 -0.5
  CHECK((u8(e, 2) & 0xF) == 0);
  CHECK((u8(e, 3) & 0xF) == 15);
  CHECK((u8(e, 2) >> 4) == 1);
  CHECK((u8(e, 4) & 0xF) == 8);  // zeros -> code 8
  const auto back = dq_row(ggml_type::q4_0, e, 32);
  CHECK(back[0] == 4.0f);
  CHECK(back[1] == -3.5f);  // the clamped side loses one level
  CHECK(back[16] == 3.5f);
}

TEST_CASE("Q4_1 by hand: d = (max-min)/15, m = min, half rounds up", "[ggml][q4_1]") {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 16) - 1.0f;  // min -1, max 14: d = 1
  x[5] = 0.5f;                                                             // (0.5 + 1) + 0.5 = 2 -> 2
  const auto b = q_row(ggml_type::q4_1, x);
  REQUIRE(b.size() == 20);
  CHECK(u16(b, 0) == 0x3C00);  // d = 1
  CHECK(u16(b, 2) == 0xBC00);  // m = -1
  for (int j = 0; j < 16; ++j) {
    const int lo = j == 5 ? 2 : j;
    CHECK(u8(b, 4 + j) == (lo | (j << 4)));
  }
  const auto y = dq_row(ggml_type::q4_1, b, 32);
  CHECK(y[5] == 1.0f);
  CHECK(y[20] == 3.0f);
}

TEST_CASE("float rows: f32 copies, f16 and bf16 round to nearest even", "[ggml]") {
  const std::vector<float> x = {1.0f, -2.5f, 65504.0f, 1e-8f, 3.14159f};
  const auto f32 = q_row(ggml_type::f32, x);
  CHECK(dq_row(ggml_type::f32, f32, 5) == x);
  const auto f16 = q_row(ggml_type::f16, x);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(u16(f16, 2 * i) == mixprec::fp32_to_fp16(x[i]));
  CHECK(u16(f16, 0) == 0x3C00);
  const auto bf = q_row(ggml_type::bf16, x);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(u16(bf, 2 * i) == mixprec::fp32_to_bf16(x[i]));
  CHECK(u16(bf, 2) == 0xC020);  // -2.5
  CHECK(error_code_of([] { (void)q_row(ggml_type::f16, std::vector<float>{70000.0f}); }) ==
        mixprec::errc::not_representable);
  CHECK(dq_row(ggml_type::bf16, q_row(ggml_type::bf16, {1e30f}), 1)[0] == Approx(1e30f).epsilon(0.01));
}

TEST_CASE("round trips stay within each format's bound", "[ggml]") {
  for (std::size_t blocks : {1u, 3u, 7u}) {
    for (unsigned seed : {1u, 2u, 3u}) {
      const auto x = gaussian(32 * blocks, 0.7f, seed + 100 * static_cast<unsigned>(blocks));
      const auto b8 = q_row(ggml_type::q8_0, x);
      const auto y8 = dq_row(ggml_type::q8_0, b8, x.size());
      const auto b4 = q_row(ggml_type::q4_0, x);
      const auto y4 = dq_row(ggml_type::q4_0, b4, x.size());
      const auto b41 = q_row(ggml_type::q4_1, x);
      const auto y41 = dq_row(ggml_type::q4_1, b41, x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::size_t blk = i / 32;
        // Q8_0: half a step, plus the FP16 rounding of d times the code (|q| <= 127).
        const float d8 = std::fabs(mixprec::fp16_to_fp32(u16(b8, blk * 34)));
        CHECK(std::fabs(x[i] - y8[i]) <= 0.5f * d8 + 127.0f * d8 * 0x1p-11f + 1e-7f);
        // Q4_0: a whole step on the clamped side, plus the FP16 rounding of d.
        const float d4 = std::fabs(mixprec::fp16_to_fp32(u16(b4, blk * 18)));
        CHECK(std::fabs(x[i] - y4[i]) <= d4 + 8.0f * d4 * 0x1p-11f + 1e-7f);
        // Q4_1: half a step plus the FP16 roundings of d (times <= 15) and m.
        const float d41 = mixprec::fp16_to_fp32(u16(b41, blk * 20));
        const float m41 = mixprec::fp16_to_fp32(u16(b41, blk * 20 + 2));
        CHECK(std::fabs(x[i] - y41[i]) <= 0.5f * d41 + 15.0f * d41 * 0x1p-11f + std::fabs(m41) * 0x1p-11f + 1e-7f);
      }
    }
  }
  for (std::size_t blocks : {1u, 3u}) {
    const auto x = gaussian(256 * blocks, 0.02f, 7u + static_cast<unsigned>(blocks));
    const auto y6 = dq_row(ggml_type::q6_k, q_row(ggml_type::q6_k, x), x.size());
    const auto y4 = dq_row(ggml_type::q4_k, q_row(ggml_type::q4_k, x), x.size());
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    for (std::size_t i = 0; i < x.size(); ++i) {
      CHECK(std::fabs(x[i] - y6[i]) <= amax / 32.0f);  // about a 64-level grid over [-amax, amax]
      CHECK(std::fabs(x[i] - y4[i]) <= amax / 8.0f);   // a 16-level grid over each sub-block's range
    }
    CHECK(sqnr_db(x, y6) > 30.0);
    CHECK(sqnr_db(x, y4) > 18.0);
  }
}

TEST_CASE("SQNR on Gaussian weights matches ggml's own quantizers", "[ggml][sqnr]") {
  // REFERENCES.md: ggml on a seeded 4096x4096 Gaussian (sigma 0.02): Q8_0 45.43 dB, Q6_K 35.01,
  // Q4_K 22.93, Q4_1 22.13, Q4_0 21.32. A 1M-sample matrix of the same distribution must land close.
  const auto x = gaussian(std::size_t{256} * 4096, 0.02f, 42);
  struct row {
    ggml_type t;
    double ggml_db;
  };
  for (const row r : {row{ggml_type::q8_0, 45.43}, row{ggml_type::q6_k, 35.01}, row{ggml_type::q4_k, 22.93},
                      row{ggml_type::q4_1, 22.13}, row{ggml_type::q4_0, 21.32}}) {
    const double db = sqnr_db(x, dq_row(r.t, q_row(r.t, x), x.size()));
    INFO(mixprec::to_string(r.t) << ": " << db << " dB, ggml " << r.ggml_db);
    CHECK(std::fabs(db - r.ggml_db) < 0.1);
  }
}

TEST_CASE("Q5_0 and Q5_1 gain about 6 dB over Q4_0 and Q4_1 (one more bit)", "[ggml][sqnr]") {
  // Byte equality with ggml is the interop test's (tests/interop); here the formats' round trip: one
  // more bit halves the step, +6.02 dB on Gaussian data, and the decoded fifth bit must be the stored one.
  const auto x = gaussian(std::size_t{64} * 4096, 0.02f, 43);
  auto db = [&](ggml_type t) { return sqnr_db(x, dq_row(t, q_row(t, x), x.size())); };
  const double q40 = db(ggml_type::q4_0), q50 = db(ggml_type::q5_0), q41 = db(ggml_type::q4_1), q51 = db(ggml_type::q5_1);
  INFO("q4_0 " << q40 << ", q5_0 " << q50 << ", q4_1 " << q41 << ", q5_1 " << q51 << " dB");
  CHECK(q50 - q40 > 5.5);
  CHECK(q50 - q40 < 6.5);
  CHECK(q51 - q41 > 5.5);
  CHECK(q51 - q41 < 6.5);
  CHECK(ggml::bits_per_weight(ggml_type::q5_0) == 5.5);
  CHECK(ggml::bits_per_weight(ggml_type::q5_1) == 6.0);
}

TEST_CASE("Q4_0 against mixprec's int4/g32/sym/minmax/s16", "[ggml][q4_0]") {
  // Same grid (largest magnitude -> -8 d), different numerics: mixprec quantizes with the FP16-rounded
  // scale and rounds half to even, Q4_0 uses the unrounded d and rounds half up.
  const index_t rows = 64, cols = 4096;
  const auto v = gaussian(std::size_t(rows * cols), 0.02f, 5);
  const Eigen::Map<const mixprec::row_matrix> w(v.data(), rows, cols);
  const auto bytes = ggml::quantize(ggml_type::q4_0, w);
  const mixprec::row_matrix q4 = ggml::dequantize(ggml_type::q4_0, bytes, rows, cols);
  const mixprec::row_matrix mp = mixprec::dequantize(mixprec::quantize(w, mixprec::parse_spec("int4/g32/sym/minmax/s16")));
  const double s_ggml = 10 * std::log10(w.cast<double>().squaredNorm() / (q4 - w).cast<double>().squaredNorm());
  const double s_mp = 10 * std::log10(w.cast<double>().squaredNorm() / (mp - w).cast<double>().squaredNorm());
  const double agree = double((q4.array() == mp.array()).count()) / double(rows * cols);
  INFO("Q4_0 " << s_ggml << " dB, mixprec int4 g32 s16 " << s_mp << " dB, equal values " << agree);
  CHECK(std::fabs(s_ggml - s_mp) < 0.1);
  CHECK(agree > 0.99);
  CHECK(agree < 1.0);  // the numerics do differ somewhere
}

TEST_CASE("adversarial blocks: zeros, constants, an outlier, denormals", "[ggml]") {
  for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q4_1, ggml_type::q4_k, ggml_type::q6_k}) {
    INFO(mixprec::to_string(t));
    const std::size_t n = 256;
    std::vector<float> zeros(n, 0.0f);
    CHECK(dq_row(t, q_row(t, zeros), n) == zeros);

    std::vector<float> constant(n, -0.75f);
    for (float y : dq_row(t, q_row(t, constant), n)) CHECK(y == Approx(-0.75f).margin(0.75f / 64));

    auto outlier = gaussian(n, 0.01f, 9);
    outlier[77] = 50.0f;
    const auto yo = dq_row(t, q_row(t, outlier), n);
    CHECK(yo[77] == Approx(50.0f).epsilon(0.02));

    std::vector<float> tiny(n, 0.0f);
    tiny[3] = 1e-45f;  // the smallest denormal: 1/d overflows, nothing may be undefined
    tiny[40] = -3e-39f;
    for (float y : dq_row(t, q_row(t, tiny), n)) {
      CHECK(std::isfinite(y));
      CHECK(std::fabs(y) <= 1e-37f);
    }
    // The importance-weighted searches on the same blocks, with some zero weights.
    std::vector<float> w(n, 1.0f);
    for (std::size_t i = 0; i < n; i += 3) w[i] = 0.0f;
    for (const auto* v : {&zeros, &constant, &outlier, &tiny})
      for (float y : dq_row(t, q_row(t, *v, std::span<const float>(w)), n)) CHECK(std::isfinite(y));
    CHECK(dq_row(t, q_row(t, outlier, std::span<const float>(w)), n)[77] == Approx(50.0f).epsilon(0.05));
  }
}

TEST_CASE("bad input: sizes, NaN/Inf, scales beyond FP16", "[ggml]") {
  std::vector<float> x(64, 0.5f);
  std::vector<std::byte> out(36);
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q4_0, std::span<const float>(x).first(33), out); }) ==
        mixprec::errc::invalid_argument);
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q4_0, x, std::span<std::byte>(out).first(35)); }) ==
        mixprec::errc::shape_mismatch);
  x[40] = std::nanf("");
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q4_0, x, out); }) == mixprec::errc::non_finite);
  CHECK_THROWS_WITH(ggml::quantize_row(ggml_type::q4_0, x, out), Catch::Contains("element 40"));
  x[40] = INFINITY;
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::f32, x, std::span<std::byte>(out).first(0)); }) ==
        mixprec::errc::shape_mismatch);
  std::vector<std::byte> f32out(256);
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::f32, x, f32out); }) == mixprec::errc::non_finite);
  x[40] = 0.5f;
  x[0] = 1e6f;  // Q4_0: d = 1e6 / 8 > 65504; Q8_0: d = 1e6 / 127 still fits
  std::vector<std::byte> q8(68);
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q4_0, x, out); }) == mixprec::errc::not_representable);
  CHECK_NOTHROW(ggml::quantize_row(ggml_type::q8_0, x, q8));
  x[0] = 1e7f;  // Q8_0: d = 1e7 / 127 > 65504
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q8_0, x, q8); }) == mixprec::errc::not_representable);
  x[0] = 1e30f;
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q4_1, x, std::span<std::byte>(f32out).first(40)); }) ==
        mixprec::errc::not_representable);
  std::vector<float> big(256, 1.0f);
  big[0] = 1e20f;
  std::vector<std::byte> q6(210);
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q6_k, big, q6); }) == mixprec::errc::not_representable);
  big[0] = 1e8f;  // d = ~1e8 / 4096 fits
  CHECK_NOTHROW(ggml::quantize_row(ggml_type::q6_k, big, q6));
  big[0] = 1e9f;  // finite FP32 sums, but d = ~1e9 / 4096 > 65504
  CHECK(error_code_of([&] { ggml::quantize_row(ggml_type::q6_k, big, q6); }) == mixprec::errc::not_representable);

  std::vector<float> back(64);
  CHECK(error_code_of([&] { ggml::dequantize_row(ggml_type::q4_0, std::span<const std::byte>(out).first(30), back); }) ==
        mixprec::errc::shape_mismatch);
}

TEST_CASE("matrix quantize: rows along ne1, strided input, errors name the tensor", "[ggml]") {
  const auto v = gaussian(5 * 96, 1.0f, 3);
  const Eigen::Map<const mixprec::row_matrix> full(v.data(), 5, 96);
  const auto block = full.block(1, 0, 3, 64);  // outer stride 96
  for (ggml_type t : {ggml_type::q4_0, ggml_type::q8_0, ggml_type::q4_1, ggml_type::f16, ggml_type::bf16}) {
    const auto bytes = ggml::quantize(t, block);
    const std::size_t rb = ggml::row_bytes(t, 64);
    REQUIRE(bytes.size() == 3 * rb);
    for (int r = 0; r < 3; ++r) {
      std::vector<float> row(v.begin() + (r + 1) * 96, v.begin() + (r + 1) * 96 + 64);
      const auto want = q_row(t, row);
      CHECK(std::memcmp(bytes.data() + r * rb, want.data(), rb) == 0);
    }
    const mixprec::row_matrix back = ggml::dequantize(t, bytes, 3, 64);
    CHECK((back - block).cwiseAbs().maxCoeff() < 0.5f);
    CHECK(error_code_of([&] { (void)ggml::dequantize(t, std::span<const std::byte>(bytes).first(bytes.size() - 1), 3, 64); }) ==
          mixprec::errc::shape_mismatch);
  }
  const mixprec::row_matrix odd = mixprec::row_matrix::Ones(2, 33);
  CHECK(error_code_of([&] { (void)ggml::quantize(ggml_type::q4_0, odd, std::nullopt, "blk.0.ffn_down.weight"); }) ==
        mixprec::errc::invalid_argument);
  CHECK_THROWS_WITH(ggml::quantize(ggml_type::q4_0, odd, std::nullopt, "blk.0.ffn_down.weight"),
                    Catch::Contains("blk.0.ffn_down.weight") && Catch::Contains("multiple of 32") &&
                        Catch::Contains("33"));
  mixprec::row_matrix m = mixprec::row_matrix::Ones(3, 64);
  m(2, 5) = std::nanf("");
  CHECK_THROWS_WITH(ggml::quantize(ggml_type::q8_0, m, std::nullopt, "w"), Catch::Contains("row 2"));
  const std::vector<float> imp(63, 1.0f);
  CHECK(error_code_of([&] { (void)ggml::quantize(ggml_type::q4_0, mixprec::row_matrix::Ones(2, 64), imp); }) ==
        mixprec::errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)ggml::quantize(ggml_type::q4_0, mixprec::row_matrix(0, 64)); }) ==
        mixprec::errc::empty_input);
}
