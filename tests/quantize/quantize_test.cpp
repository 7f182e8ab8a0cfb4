// Properties of quantize/dequantize: error bounds, idempotence, packing, constant rows, bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "mixprec/quantize/quantize.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

namespace {
const char* integer_specs[] = {"int8/channel/sym",     "int8/tensor/asym",   "int4/g32/sym/minmax/s16",
                               "int4/g64/asym/minmax", "int4/g128/sym",      "int4/channel/asym/minmax/sbf16",
                               "int2/g32/sym",         "int2/g16/asym",      "int4/g32/sym/mse/s16",
                               "int4/g7/asym/mse"};
}  // namespace

TEST_CASE("round-trip error is at most half a step inside the clipping range", "[quantize][bounds]") {
  const row_matrix w = test::gaussian(13, 97, 0.5f, 3);
  for (const char* text : integer_specs) {
    INFO(text);
    const quant_spec s = parse_spec(text);
    const quantized_tensor q = quantize(w, s);
    const row_matrix y = dequantize(q);
    const int max_code = (1 << bits_of(s.format)) - 1;
    for (index_t r = 0; r < w.rows(); ++r)
      for (index_t c = 0; c < w.cols(); ++c) {
        const index_t g = c / q.group_length();
        const float d = q.scale(r, g);
        const int z = q.zero_point(r, g);
        const double t = static_cast<double>(w(r, c)) / static_cast<double>(d);
        const double err = std::fabs(static_cast<double>(w(r, c)) - static_cast<double>(y(r, c)));
        // Inside the range the codes cover: within half a step (plus FP32 rounding of x * inv).
        if (t >= -z && t <= max_code - z) {
          REQUIRE(err <= 0.5 * std::fabs(d) * (1.0 + 1e-5) + 1e-12);
        }
      }
  }
}

TEST_CASE("quantize(dequantize(q)) reproduces q (minmax calibration)", "[quantize][idempotence]") {
  const row_matrix w = test::gaussian(9, 200, 1.0f, 5);
  for (const char* text : {"int8/channel/sym", "int4/g32/sym/minmax/s16", "int4/g64/asym", "int2/g32/sym",
                           "int8/tensor/sym", "fp16", "bf16", "fp8_e4m3/channel"}) {
    INFO(text);
    const quant_spec s = parse_spec(text);
    const quantized_tensor q = quantize(w, s);
    const quantized_tensor q2 = quantize(dequantize(q), s);
    CHECK(std::ranges::equal(q.codes(), q2.codes()));
    CHECK(std::ranges::equal(q.zero_point_bytes(), q2.zero_point_bytes()));
    if (s.scheme == scheme_id::symmetric) {
      // The extreme lands on code 0, so d * -2^(b-1) gives back the same scale exactly.
      CHECK(std::ranges::equal(q.scale_bytes(), q2.scale_bytes()));
    } else {
      // (max - min) / M of the dequantized range may differ from d in the last bit.
      for (index_t r = 0; r < w.rows(); ++r)
        for (index_t g = 0; g < q.groups_per_row(); ++g) CHECK(q2.scale(r, g) == Approx(q.scale(r, g)).epsilon(1e-6));
      CHECK(dequantize(q2).isApprox(dequantize(q), 1e-6f));
    }
  }
}

TEST_CASE("INT4 nibble order and pack/unpack round trip", "[quantize][pack]") {
  // Codes 0..15 in order: byte i holds element 2i low, 2i+1 high.
  std::uint8_t codes[16], packed[8], back[16];
  for (int i = 0; i < 16; ++i) codes[i] = static_cast<std::uint8_t>(i);
  ref::pack<4>(codes, 16, packed);
  CHECK(packed[0] == 0x10);
  CHECK(packed[7] == 0xFE);
  ref::unpack<4>(packed, 16, back);
  CHECK(std::equal(codes, codes + 16, back));
  // An odd row: the last high nibble is zero padding.
  ref::pack<4>(codes, 3, packed);
  CHECK(packed[1] == 0x02);
  // The extreme value lands exactly on code 0 (its sign wins the 16th level).
  row_matrix w(1, 4);
  w << -0.8f, 0.1f, 0.7f, 0.0f;
  const quantized_tensor q = quantize(w, parse_spec("int4/channel/sym"));
  CHECK((q.codes()[0] & 0x0F) == 0);
  CHECK(dequantize(q)(0, 0) == -0.8f);
  CHECK(q.scale(0, 0) == Approx(0.1f));
  CHECK(q.zero_point(0, 0) == 8);
}

TEST_CASE("constant and zero rows get a valid scale", "[quantize][constant]") {
  row_matrix w(4, 40);
  w.row(0).setZero();
  w.row(1).setConstant(3.0f);
  w.row(2).setConstant(-1e-30f);
  w.row(3).setConstant(1e-44f);  // denormal: its FP16 scale underflows to zero
  for (const char* text : integer_specs) {
    INFO(text);
    const row_matrix y = dequantize(quantize(w, parse_spec(text)));
    REQUIRE(y.allFinite());
    CHECK(y.row(0).isZero());
    CHECK(y.row(1).isConstant(3.0f, 4e-3f));  // BF16 scales carry 8 significant bits
    CHECK((y.row(3).array().abs() <= 1e-40f).all());
  }
}

TEST_CASE("a shorter last group is quantized by its own scale", "[quantize][groups]") {
  row_matrix w = test::gaussian(2, 40, 1.0f, 9);
  w.block(0, 32, 2, 8) *= 1e-3f;  // the tail group is tiny: its own scale keeps it accurate
  const quantized_tensor q = quantize(w, parse_spec("int4/g32/sym"));
  CHECK(q.groups_per_row() == 2);
  const row_matrix y = dequantize(q);
  CHECK((y.block(0, 32, 2, 8) - w.block(0, 32, 2, 8)).cwiseAbs().maxCoeff() < 2e-4f);
  CHECK(q.bytes() == quantized_bytes(q.spec(), 2, 40));
}

TEST_CASE("bad input gets a typed error", "[quantize][errors]") {
  auto code_of = [](const row_matrix& w, const char* spec) {
    return test::error_code_of([&] { (void)quantize(w, parse_spec(spec), "layers.0.wq"); });
  };
  row_matrix w = test::gaussian(3, 8, 1.0f, 1);
  w(1, 5) = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of(w, "int8") == errc::non_finite);
  CHECK(code_of(w, "fp8_e4m3") == errc::non_finite);
  CHECK(code_of(w, "int4/g32/sym/mse") == errc::non_finite);
  CHECK_THROWS_WITH(quantize(w, parse_spec("int4/g4"), "layers.0.wq"),
                    Catch::Contains("layers.0.wq") && Catch::Contains("row 1, column 5"));
  w(1, 5) = std::numeric_limits<float>::infinity();
  CHECK(code_of(w, "int4/tensor") == errc::non_finite);
  // FP16/BF16 carry NaN and Inf through.
  const row_matrix y = dequantize(quantize(w, parse_spec("fp16")));
  CHECK(std::isinf(y(1, 5)));
  CHECK(code_of(row_matrix(0, 5), "int8") == errc::empty_input);
  CHECK(code_of(row_matrix(3, 0), "fp16") == errc::empty_input);
  quant_spec zero_group = parse_spec("int4/g32");
  zero_group.group_size = 0;
  CHECK_THROWS_AS(quantize(test::gaussian(2, 2, 1.0f, 1), zero_group), error);
  // A scale that FP16 cannot hold.
  CHECK(code_of(test::gaussian(2, 4, 1e9f, 1), "int4/g4/sym/minmax/s16") == errc::not_representable);
  // Buffers that do not match the shape.
  CHECK_THROWS_AS(quantized_tensor(parse_spec("int8"), 2, 2, std::vector<std::uint8_t>(3), {}, {}), error);
}

TEST_CASE("MSE clipping is never worse than minmax and percentile clips outliers", "[quantize][calibration]") {
  const row_matrix w = test::gaussian(8, 256, 1.0f, 21);
  for (const char* base : {"int4/g32/sym", "int4/channel/asym", "int4/tensor/sym", "int2/g64/sym"}) {
    const quant_spec a = parse_spec(base);
    quant_spec b = a;
    b.calibration = calibration_id::mse;
    const double ea = (dequantize(quantize(w, a)) - w).squaredNorm();
    const double eb = (dequantize(quantize(w, b)) - w).squaredNorm();
    INFO(base << " minmax " << ea << " mse " << eb);
    CHECK(eb <= ea);
  }
  row_matrix o = test::gaussian(1, 1000, 1.0f, 2);
  o(0, 17) = 1000.0f;  // one outlier wrecks a minmax scale; the 99th percentile ignores it
  const double e_minmax = (dequantize(quantize(o, parse_spec("int8/channel"))) - o).rightCols(900).squaredNorm();
  const double e_pct = (dequantize(quantize(o, parse_spec("int8/channel/sym/p99"))) - o).rightCols(900).squaredNorm();
  CHECK(e_pct < e_minmax / 100.0);
}

TEST_CASE("stochastic rounding is seeded, unbiased and stays on the grid", "[quantize][stochastic]") {
  row_matrix w = row_matrix::Constant(1, 20000, 0.3f);
  w(0, 0) = 1.0f;  // scale: 1/8 per step (symmetric INT4: -8 * d = 1)
  quant_spec s = parse_spec("int4/channel/sym/minmax/s32/stochastic");
  s.seed = 42;
  const row_matrix y = dequantize(quantize(w, s));
  const row_matrix y2 = dequantize(quantize(w, s));
  CHECK(y == y2);
  s.seed = 43;
  CHECK(dequantize(quantize(w, s)) != y);
  // 0.3 sits between the levels 0.25 and 0.375 of a step of 0.125: each is hit in proportion.
  const double mean = y.rightCols(19999).mean();
  CHECK(std::fabs(mean - 0.3) < 0.002);
  CHECK(((y.rightCols(19999).array() == 0.25f) || (y.rightCols(19999).array() == 0.375f)).all());
}
