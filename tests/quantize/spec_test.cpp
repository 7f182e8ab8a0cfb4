// quant_spec: text form, validation, exact byte accounting, compile-time quantizer.
#include <catch2/catch.hpp>

#include <algorithm>

#include "mixprec/quantize/quantize.hpp"
#include "mixprec/quantize/spec.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"

using namespace mixprec;

TEST_CASE("spec text form round-trips", "[spec]") {
  for (const char* text : {"int8/channel/sym/minmax/s32", "int4/g32/sym/minmax/s16", "int4/g128/asym/mse/sbf16",
                           "int2/tensor/sym/p99.5/s32", "fp8_e4m3/channel/sym/minmax/s32", "fp16", "bf16", "fp32",
                           "int4/g64/sym/minmax/s16/stochastic"}) {
    const quant_spec s = parse_spec(text);
    CHECK(to_string(s) == text);
    CHECK(parse_spec(to_string(s)) == s);
  }
  CHECK(parse_spec("int4/g32") == parse_spec("int4/g32/sym/minmax/s32"));
  CHECK(parse_spec("int8") == quant_spec{});
}

TEST_CASE("bad spec text is a parse_error naming the token", "[spec][errors]") {
  auto code_of = [](const char* text) { return test::error_code_of([&] { (void)parse_spec(text); }); };
  CHECK(code_of("int5") == errc::parse_error);
  CHECK(code_of("int4/g0") == errc::parse_error);
  CHECK(code_of("int4/gx") == errc::parse_error);
  CHECK(code_of("int4/p101") == errc::parse_error);
  CHECK(code_of("fp16/g32") == errc::parse_error);
  CHECK(code_of("fp8_e4m3/asym") == errc::parse_error);
  CHECK_THROWS_WITH(parse_spec("int4/g32/wat"), Catch::Contains("'wat'"));
}

TEST_CASE("bytes count codes, scales and zero points exactly", "[spec][bytes]") {
  // INT4 g32 with FP16 scales: 16 bytes of codes + 2 bytes of scale per 32 weights = 4.5 bits.
  CHECK(quantized_bytes(parse_spec("int4/g32/sym/minmax/s16"), 4096, 4096) == 4096u * 4096u / 32u * 18u);
  CHECK(bits_per_weight(parse_spec("int4/g32/sym/minmax/s16"), 4096, 4096) == 4.5);
  // Asymmetric adds a zero-point byte per scale.
  CHECK(quantized_bytes(parse_spec("int4/g32/asym/minmax/s16"), 2, 64) == 2u * 32u + 4u * 2u + 4u);
  // A shorter last group still has its own scale; odd rows are padded to a byte.
  CHECK(quantized_bytes(parse_spec("int4/g32"), 3, 33) == 3u * 17u + 6u * 4u);
  CHECK(quantized_bytes(parse_spec("int2/channel"), 2, 5) == 2u * 2u + 2u * 4u);
  CHECK(quantized_bytes(parse_spec("int8/tensor"), 10, 10) == 100u + 4u);
  CHECK(quantized_bytes(parse_spec("fp16"), 3, 3) == 18u);
  CHECK(quantized_bytes(parse_spec("fp32"), 3, 3) == 36u);
}

TEST_CASE("compile-time quantizer describes the same spec as its text", "[spec][quantizer]") {
  STATIC_REQUIRE(Granularity<per_group<32>>);
  STATIC_REQUIRE(Scheme<asymmetric>);
  STATIC_REQUIRE(Calibration<mse_clip>);
  STATIC_REQUIRE(!Granularity<int>);
  CHECK(quantizer<int4, per_group<32>, symmetric, minmax, scale_type::fp16>{}.spec() ==
        parse_spec("int4/g32/sym/minmax/s16"));
  CHECK(quantizer<int8>{}.spec() == parse_spec("int8/channel/sym/minmax/s32"));
  CHECK(quantizer<int2, per_tensor, asymmetric, percentile>{percentile{99.0f}}.spec() ==
        parse_spec("int2/tensor/asym/p99"));
  // The rounding policy, as the run-time spec has it: stochastic with its seed gives the spec's bytes.
  STATIC_REQUIRE(Rounding<stochastic>);
  using sr = quantizer<int4, per_group<32>, symmetric, minmax, scale_type::fp16, stochastic>;
  quant_spec s = parse_spec("int4/g32/sym/minmax/s16/stochastic");
  s.seed = 42;
  CHECK(sr{stochastic{42}}.spec() == s);
  CHECK(quantizer<int4, per_group<32>, symmetric, minmax, scale_type::fp16>{}.spec().rounding == rounding_id::nearest_even);
  const row_matrix w = test::gaussian(8, 64, 0.1f, 5);
  const auto q = sr{stochastic{42}}(w);
  const auto expected = quantize(w, s);
  CHECK(std::equal(q.codes().begin(), q.codes().end(), expected.codes().begin(), expected.codes().end()));
  CHECK_FALSE(std::equal(q.codes().begin(), q.codes().end(), quantize(w, parse_spec("int4/g32/sym/minmax/s16")).codes().begin()));
  using pr = quantizer<int8, per_channel, symmetric, percentile, scale_type::fp32, stochastic>;
  CHECK(pr{percentile{99.0f}, stochastic{7}}.spec().seed == 7);
}
