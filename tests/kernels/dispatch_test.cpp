// Runtime dispatch: one binary holding SSE2, AVX2 and AVX-512 instantiations (dispatch_kernels.*.cpp)
// picks the best one this CPU runs, and its results match the scalar references.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "mixprec/kernels/dispatch.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "support/data.hpp"

MIXPREC_KERNELS_DECLARE(xsimd::avx512bw)
MIXPREC_KERNELS_DECLARE(xsimd::fma3<xsimd::avx2>)
MIXPREC_KERNELS_INSTANTIATE(xsimd::sse2)

namespace {

using mixprec::index_t;
using dispatcher = mixprec::kernel_dispatch<xsimd::sse2, xsimd::avx512bw, xsimd::fma3<xsimd::avx2>>;

// What the CPU offers, asked without xsimd's arch classes (GCC's CPU model).
std::string expected_name() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  const auto os = xsimd::available_architectures();  // the OS must also save the wider registers
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && os.avx512bw)
    return std::string(xsimd::avx512bw::name()) + (__builtin_cpu_supports("avx512vnni") ? "+vnni" : "");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && os.fma3_avx2)
    return xsimd::fma3<xsimd::avx2>::name();
  return xsimd::sse2::name();
#else
  return "";
#endif
}

}  // namespace

TEST_CASE("kernel_dispatch picks the best compiled-in architecture the CPU runs", "[kernels][dispatch]") {
  const dispatcher k;
  INFO("chosen " << k.name());
  const std::string expected = expected_name();
  if (!expected.empty()) CHECK(k.name() == expected);
  // An architecture list this CPU cannot run at all is refused with a typed error... unless it can.
  CHECK(mixprec::kernel_dispatch<xsimd::sse2>().name() == xsimd::sse2::name());
}

TEST_CASE("dispatched kernels match the scalar references", "[kernels][dispatch]") {
  const dispatcher k;
  for (const char* text : {"int4/g128/sym/minmax/s16", "int4/g32/asym", "int8/channel/sym", "fp16", "bf16"}) {
    INFO(text << " on " << k.name());
    const index_t rows = 37, cols = 1024 + 64;
    const auto q = mixprec::quantize(mixprec::test::gaussian(rows, cols, 0.05f, 21), mixprec::parse_spec(text));
    const auto x = mixprec::test::gaussian(3, cols, 1.0f, 22);
    const auto n = static_cast<std::size_t>(rows);
    std::vector<float> y(n), ref(n);
    std::vector<double> mag(n);
    k.gemv(q, x.data(), y.data());
    mixprec::ref::gemv(q, x.data(), ref.data());
    mixprec::ref::gemv_magnitude(q, x.data(), mag.data());
    for (std::size_t r = 0; r < n; ++r)
      REQUIRE(std::fabs(static_cast<double>(y[r]) - ref[r]) <= static_cast<double>(cols) * 0x1.0p-23 * mag[r] + 1e-30);
    mixprec::row_matrix ym(3, rows);
    k.gemm(q, x, ym);
    const mixprec::row_matrix eigen = x * mixprec::dequantize(q).transpose();
    REQUIRE(ym.isApprox(eigen, 1e-5f));
    if (q.spec().format == mixprec::format_id::fp16 || q.spec().format == mixprec::format_id::bf16) {
      REQUIRE_THROWS_AS(k.gemv_int8(q, x.data(), y.data()), mixprec::error);
      continue;
    }
    std::vector<float> yq(n), yr(n);
    k.gemv_int8(q, x.data(), yq.data());
    mixprec::ref::gemv_int8(q, x.data(), yr.data());
    REQUIRE(yq == yr);
    mixprec::row_matrix y8(3, rows);
    k.gemm_int8(q, x, y8);
    for (mixprec::index_t t = 0; t < 3; ++t) {
      mixprec::ref::gemv_int8(q, x.row(t).data(), yr.data());
      for (mixprec::index_t r = 0; r < rows; ++r) REQUIRE(y8(t, r) == yr[static_cast<std::size_t>(r)]);
    }
  }
}
