// Fused quantized GEMV/GEMM against the scalar references, on every instruction-set level the CPU runs.
#include "mixprec/kernels/gemv.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "mixprec/kernels/dispatch.hpp"
#include "mixprec/kernels/quantized_linear.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"
#include "support/data.hpp"
#include "support/errors.hpp"
#include "support/isa.hpp"

namespace {

using mixprec::index_t;

// The floats of a dense Eigen row (or one-row matrix) as the span the products take.
template <class M>
std::span<const float> floats(const M& m) {
  return {m.data(), static_cast<std::size_t>(m.size())};
}

// |y - reference| <= cols * 2^-23 * ref::gemv_magnitude (the stated bound of kernels/gemv.hpp), per output.
void check_close(const mixprec::quantized_tensor& q, const float* x, const float* y) {
  std::vector<float> ref(static_cast<std::size_t>(q.rows()));
  std::vector<double> mag(static_cast<std::size_t>(q.rows()));
  mixprec::ref::gemv(q, x, ref.data());
  mixprec::ref::gemv_magnitude(q, x, mag.data());
  for (index_t r = 0; r < q.rows(); ++r) {
    const double bound = static_cast<double>(q.cols()) * 0x1.0p-23 * mag[static_cast<std::size_t>(r)] + 1e-30;
    INFO("row " << r << " y " << y[r] << " ref " << ref[static_cast<std::size_t>(r)] << " bound " << bound);
    REQUIRE(std::fabs(static_cast<double>(y[r]) - ref[static_cast<std::size_t>(r)]) <= bound);
  }
}

constexpr auto int8 = mixprec::activation_type::int8;

const char* gemv_specs[] = {"int4/g32/sym/minmax/s16",
                            "int4/g64/asym/minmax/s16",
                            "int4/g128/sym/mse/s16",
                            "int4/channel/sym",
                            "int8/channel/sym",
                            "int8/channel/asym",
                            "int8/g32/sym",
                            "int2/g32/asym",
                            "fp16",
                            "bf16",
                            "fp8_e4m3/channel",
                            "fp32",
                            "int4/tensor/asym",
                            "int8/tensor/sym",
                            "int4/g16/asym",
                            "int8/g128/asym",
                            "int4/g256/sym",
                            "int4/g48/sym"};

}  // namespace

TEST_CASE("gemv matches the reference within the stated bound", "[kernels][gemv]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    struct shape {
      index_t rows, cols;
    };
    // 129 rows: every row tile and a remainder; emulated, 33 rows still give both.
    const index_t big = mixprec::test::emulated() ? 33 : 129;
    for (shape sh : {shape{1, 128}, shape{3, 256}, shape{17, 100}, shape{big, 4096 + 32}, shape{5, 33}, shape{6, 1},
                     shape{7, 768}})
      for (const char* text : gemv_specs) {
        INFO(text << " " << sh.rows << "x" << sh.cols);
        const auto w = mixprec::test::gaussian(sh.rows, sh.cols, 0.05f, static_cast<std::uint32_t>(sh.cols));
        const auto x = mixprec::test::gaussian(1, sh.cols, 1.0f, 77);
        const auto q = mixprec::quantize(w, mixprec::parse_spec(text));
        std::vector<float> y(static_cast<std::size_t>(sh.rows));
        mixprec::gemv(q, floats(x), y);
        check_close(q, x.data(), y.data());
        // Threads split rows; the result is the same.
        std::vector<float> y2(y.size());
        mixprec::gemv(q, floats(x), y2, {.threads = 2});
        REQUIRE(y == y2);
      }
  });
}

TEST_CASE("gemm over batches matches gemv and dequantize + Eigen", "[kernels][gemm]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    for (index_t batch : {1, 3, 8, 33})
      for (const char* text : {"int4/g32/sym/minmax/s16", "int8/channel/sym", "fp16", "int4/g64/asym"}) {
        INFO(text << " batch " << batch);
        const auto w = mixprec::test::gaussian(40, 192, 0.05f, 3);
        const auto x = mixprec::test::gaussian(batch, 192, 1.0f, static_cast<std::uint32_t>(batch));
        const auto q = mixprec::quantize(w, mixprec::parse_spec(text));
        mixprec::row_matrix y(batch, 40);
        mixprec::gemm(q, x, y, {2});
        const mixprec::row_matrix eigen = x * mixprec::dequantize(q).transpose();
        for (index_t b = 0; b < batch; ++b) check_close(q, x.row(b).data(), y.row(b).data());
        REQUIRE(y.isApprox(eigen, 1e-5f));
        mixprec::row_matrix bad(batch, 39);
        REQUIRE_THROWS_AS(mixprec::gemm(q, x, bad), mixprec::error);
      }
  });
}

TEST_CASE("fused gemm columns equal gemv bit for bit (integer weights); outliers stay within the bound",
          "[kernels][gemm]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    for (const char* text : {"int4/g32/sym/minmax/s16", "int4/g128/asym", "int8/channel/sym", "int8/g64/asym",
                             "int4/channel/asym", "fp16"}) {
      for (index_t batch : {2, 5, 9, 17}) {
        INFO(text << " batch " << batch);
        const index_t rows = 13, cols = 512 + 96;
        auto x = mixprec::test::gaussian(batch, cols, 1.0f, static_cast<std::uint32_t>(batch + 40));
        x(0, 7) = 1.0e4f;  // one huge activation
        x(batch - 1, cols - 1) = -3.0e3f;
        const auto q = mixprec::quantize(mixprec::test::gaussian(rows, cols, 0.05f, 8), mixprec::parse_spec(text));
        mixprec::row_matrix y(batch, rows);
        mixprec::gemm(q, x, y);
        for (index_t b = 0; b < batch; ++b) {
          std::vector<float> yv(static_cast<std::size_t>(rows));
          mixprec::gemv(q, floats(x.row(b)), yv);
          // The fused integer kernels sum each column in the same order whatever the batch.
          if (q.spec().format != mixprec::format_id::fp16)
            for (index_t r = 0; r < rows; ++r) REQUIRE(y(b, r) == yv[static_cast<std::size_t>(r)]);
          check_close(q, x.row(b).data(), yv.data());
          check_close(q, x.row(b).data(), y.row(b).data());
        }
      }
    }
  });
}

TEST_CASE("INT8-activation gemv: bit-identical to its reference, close to the FP32 product", "[kernels][gemv]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    struct shape {
      index_t rows, cols;
    };
    for (shape sh : {shape{33, 4096}, shape{5, 4096 + 96}, shape{3, 100}, shape{4, 1}, shape{9, 11008}})
      for (const char* text :
           {"int4/g32/sym/minmax/s16", "int8/channel/asym", "int4/g128/asym", "int8/channel/sym", "int4/g64/sym",
            "int8/g32/asym", "int4/g48/asym", "int4/tensor/asym", "int8/g256/sym", "int4/channel/sym"}) {
        INFO(text << " " << sh.rows << "x" << sh.cols);
        const auto w = mixprec::test::gaussian(sh.rows, sh.cols, 0.05f, 5);
        auto x = mixprec::test::gaussian(1, sh.cols, 1.0f, 6);
        const auto q = mixprec::quantize(w, mixprec::parse_spec(text));
        const auto n = static_cast<std::size_t>(sh.rows);
        std::vector<float> y(n), yr(n), yf(n), yn(n);
        mixprec::gemv(q, floats(x), y, {.activations = int8});
        mixprec::ref::gemv_int8(q, x.data(), yr.data());
        REQUIRE(y == yr);  // integer dots are exact and the float steps run in the same order
        mixprec::gemv(q, floats(x), yn, {.threads = 2, .activations = int8});  // rows over 2 threads
        REQUIRE(yn == yr);
        mixprec::ref::gemv(q, x.data(), yf.data());
        // Activation rounding adds at most half an INT8 step per element: |dy| <= sum |w| * step / 2.
        const double step = x.cwiseAbs().maxCoeff() / 127.0;
        const mixprec::row_matrix dq = mixprec::dequantize(q);
        for (index_t r = 0; r < sh.rows; ++r)
          REQUIRE(std::fabs(y[static_cast<std::size_t>(r)] - yf[static_cast<std::size_t>(r)]) <=
                  0.5 * step * dq.row(r).cwiseAbs().sum() * 1.001 + 1e-4);
      }
    const auto q = mixprec::quantize(mixprec::test::gaussian(2, 8, 1.0f, 1), mixprec::parse_spec("fp16"));
    std::vector<float> x(8, 1.0f), y(2);
    REQUIRE_THROWS_AS(mixprec::gemv(q, x, y, {.activations = int8}), mixprec::error);
    const auto q4 = mixprec::quantize(mixprec::test::gaussian(2, 8, 1.0f, 1), mixprec::parse_spec("int4/channel/sym"));
    x[3] = std::nanf("");
    REQUIRE_THROWS_AS(mixprec::gemv(q4, x, y, {.activations = int8}), mixprec::error);
    std::fill(x.begin(), x.end(), 0.0f);  // all-zero activations: scale 0, exact zeros
    mixprec::gemv(q4, x, y, {.activations = int8});
    REQUIRE(y == std::vector<float>(2, 0.0f));
  });
}

TEST_CASE("INT8-activation gemm: each token bit-identical to gemv_int8 of that token", "[kernels][gemm][int8]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    for (index_t batch : {1, 2, 3, 4, 5, 8, 11})
      for (const char* text : {"int4/g32/sym/minmax/s16", "int4/g128/asym", "int8/channel/sym", "int8/g64/asym",
                               "int4/g48/asym", "int4/tensor/sym"}) {
        INFO(text << " batch " << batch);
        const index_t rows = 13, cols = 4096 + 160;
        const auto q = mixprec::quantize(mixprec::test::gaussian(rows, cols, 0.05f, 21), mixprec::parse_spec(text));
        mixprec::row_matrix x = mixprec::test::gaussian(batch, cols, 1.0f, 22);
        x.row(batch - 1) *= 1e-3f;  // tokens of different ranges get scales of their own
        mixprec::row_matrix y(batch, rows), yn(batch, rows);
        mixprec::gemm(q, x, y, {.threads = 2, .activations = int8});
        mixprec::gemm(q, x, yn, {.activations = int8});  // one thread
        for (index_t k = 0; k < batch; ++k) {
          std::vector<float> yr(static_cast<std::size_t>(rows));
          mixprec::ref::gemv_int8(q, x.row(k).data(), yr.data());
          for (index_t r = 0; r < rows; ++r) {
            REQUIRE(y(k, r) == yr[static_cast<std::size_t>(r)]);
            REQUIRE(yn(k, r) == yr[static_cast<std::size_t>(r)]);
          }
        }
      }
    const auto q = mixprec::quantize(mixprec::test::gaussian(4, 64, 1.0f, 1), mixprec::parse_spec("int4/g32/sym"));
    mixprec::row_matrix x = mixprec::row_matrix::Ones(3, 64), y(3, 4), bad(3, 5);
    REQUIRE_THROWS_AS(mixprec::gemm(q, x, bad, {.activations = int8}), mixprec::error);
    x(1, 7) = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_AS(mixprec::gemm(q, x, y, {.activations = int8}), mixprec::error);
  });
}

TEST_CASE("quantized_linear runs a plan entry with bias", "[kernels][linear]") {
  mixprec::test::for_each_isa([&](mixprec::isa) {
    const auto w = mixprec::test::gaussian(24, 64, 0.1f, 9);
    Eigen::VectorXf bias = Eigen::VectorXf::LinSpaced(24, -1.0f, 1.0f);
    const mixprec::quantized_linear layer(w, mixprec::parse_spec("int4/g32/sym/minmax/s16"), bias, "fc");
    CHECK(layer.in_features() == 64);
    CHECK(layer.bytes() == mixprec::quantized_bytes(mixprec::parse_spec("int4/g32/sym/minmax/s16"), 24, 64) + 24 * 4);
    const auto x = mixprec::test::gaussian(4, 64, 1.0f, 10);
    const mixprec::row_matrix y = layer.forward(x);
    const mixprec::row_matrix expect =
        (x * mixprec::dequantize(layer.weight()).transpose()).rowwise() + bias.transpose();
    CHECK(y.isApprox(expect, 1e-5f));
    std::vector<float> y1(24);
    layer.forward(floats(x.row(2)), y1);
    for (index_t r = 0; r < 24; ++r)
      CHECK(y1[static_cast<std::size_t>(r)] == Approx(expect(2, r)).epsilon(1e-5).margin(1e-5));
    CHECK_THROWS_AS(mixprec::quantized_linear(w, mixprec::parse_spec("int8"), Eigen::VectorXf::Zero(3)),
                    mixprec::error);
    CHECK_THROWS_AS(layer.forward(mixprec::row_matrix(2, 63)), mixprec::error);
    CHECK(layer.options().activations == mixprec::activation_type::automatic);

    // INT8 activations: each token as gemv_int8 computes it, plus the bias.
    mixprec::quantized_linear layer8(w, mixprec::parse_spec("int4/g32/sym/minmax/s16"), bias, "fc8");
    layer8.set_options({.threads = 2, .activations = int8});
    const mixprec::row_matrix y8 = layer8.forward(x);
    for (index_t k = 0; k < 4; ++k) {
      std::vector<float> yr(24);
      mixprec::ref::gemv_int8(layer8.weight(), x.row(k).data(), yr.data());
      for (index_t r = 0; r < 24; ++r) CHECK(y8(k, r) == yr[static_cast<std::size_t>(r)] + bias[r]);
    }
    layer8.forward(floats(x.row(2)), y1);
    for (index_t r = 0; r < 24; ++r) CHECK(y1[static_cast<std::size_t>(r)] == y8(2, r));
    CHECK(y8.isApprox(expect, 0.02f));  // the activation rounding error is small but not zero
    CHECK(y8 != y);
    mixprec::quantized_linear half(w, mixprec::parse_spec("fp16"));
    CHECK_THROWS_AS(half.set_options({.activations = int8}), mixprec::error);
    CHECK(half.options().activations == mixprec::activation_type::automatic);
  });
}

TEST_CASE("gemv checks its sizes on every path, as gemm does", "[kernels][gemv]") {
  const auto q = mixprec::quantize(mixprec::test::gaussian(6, 64, 0.1f, 3), mixprec::parse_spec("int4/g32/sym"));
  std::vector<float> x(64, 1.0f), y(6), short_x(63), long_y(7);
  for (const mixprec::gemv_options o : {mixprec::gemv_options{}, mixprec::gemv_options{.activations = int8}}) {
    CHECK(mixprec::test::error_code_of([&] { mixprec::gemv(q, short_x, y, o); }) == mixprec::errc::shape_mismatch);
    CHECK(mixprec::test::error_code_of([&] { mixprec::gemv(q, x, long_y, o); }) == mixprec::errc::shape_mismatch);
    CHECK(mixprec::test::error_code_of([&] { mixprec::gemv(q, x, {}, o); }) == mixprec::errc::shape_mismatch);
    CHECK(long_y == std::vector<float>(7, 0.0f));  // nothing was written
    mixprec::gemv(q, x, y, o);
    const mixprec::quantized_linear fc(q);
    CHECK(mixprec::test::error_code_of([&] { fc.forward(short_x, y); }) == mixprec::errc::shape_mismatch);
    CHECK(mixprec::test::error_code_of([&] { fc.forward(x, long_y); }) == mixprec::errc::shape_mismatch);
  }
  CHECK(mixprec::test::error_code_of([&] { mixprec::kernel_dispatch{}.gemv(q, x, long_y); }) ==
        mixprec::errc::shape_mismatch);
}
