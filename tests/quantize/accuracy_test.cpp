// SQNR of every format on a seeded Gaussian matrix (sigma 0.02), with floors. Prints the table
// (run `test_quantize "[sqnr]" -s` or see README.md).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "mixprec/quantize/quantize.hpp"
#include "support/data.hpp"

using namespace mixprec;

namespace {
// Sanitizers and CPU emulation (tests/isa/run_emulated.sh sets MIXPREC_EMULATED) are 10-20x slower: they
// use a 1024x1024 sample, on which the floors hold too.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
const index_t side = 1024;
#else
const index_t side = std::getenv("MIXPREC_EMULATED") ? 1024 : 4096;
#endif

double sqnr_db(const row_matrix& w, const row_matrix& y) {
  return 10.0 * std::log10(w.cast<double>().squaredNorm() / (w - y).cast<double>().squaredNorm());
}
}  // namespace

TEST_CASE("SQNR per format on a seeded Gaussian matrix", "[quantize][sqnr]") {
  const row_matrix w = test::gaussian(side, side, 0.02f, 2024);
  const char* specs[] = {
      "int8/channel/sym/minmax/s32", "int8/channel/sym/minmax/s16", "int8/g32/sym/minmax/s16",
      "fp8_e4m3/channel/sym/minmax/s32", "int4/tensor/sym/minmax/s32", "int4/tensor/sym/mse/s32",
      "int4/channel/sym/minmax/s32", "int4/channel/sym/mse/s32", "int4/g32/sym/minmax/s16", "int4/g32/sym/mse/s16",
      "int4/g32/asym/minmax/s16", "int4/g64/sym/minmax/s16", "int4/g64/sym/mse/s16", "int4/g128/sym/minmax/s16",
      "int4/g128/sym/mse/s16", "int4/g128/asym/mse/s16", "int2/g32/sym/mse/s16", "int2/g32/asym/mse/s16",
      "fp16", "bf16"};
  std::map<std::string, double> db;
  std::printf("\n| format | bits/weight | SQNR (dB) |\n|---|---:|---:|\n");
  for (const char* text : specs) {
    const quant_spec s = parse_spec(text);
    const quantized_tensor q = quantize(w, s);
    REQUIRE(q.bytes() == quantized_bytes(s, side, side));
    db[text] = sqnr_db(w, dequantize(q));
    std::printf("| %s | %.3f | %.2f |\n", text, q.bits_per_weight(), db[text]);
  }
  std::fflush(stdout);
  CHECK(db["int8/channel/sym/minmax/s32"] >= 40.0);
  // ggml's Q4_0 (same 4.5 bits/weight layout) reaches 21.32 dB on this kind of matrix.
  CHECK(db["int4/g32/sym/minmax/s16"] >= 21.3);
  // MSE-optimal clipping strictly beats plain absmax at every INT4 granularity.
  for (const char* g : {"tensor", "channel", "g32", "g64", "g128"}) {
    const std::string base = std::string("int4/") + g + "/sym/";
    const std::string scales = g[0] == 'g' ? "/s16" : "/s32";
    INFO(base);
    CHECK(db[base + "mse" + scales] > db[base + "minmax" + scales]);
  }
  // More bits, more signal.
  CHECK(db["fp16"] > db["bf16"]);
  CHECK(db["bf16"] > db["int8/channel/sym/minmax/s32"]);
  CHECK(db["int4/g32/sym/mse/s16"] > db["int2/g32/sym/mse/s16"]);
}
