// Run-time dispatch: the level chosen is the best this CPU runs (asked independently of mixprec),
// MIXPREC_ISA caps it, each level maps to its own kernels, and every level's products match the scalar
// references.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "mixprec/kernels/dispatch.hpp"
#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "support/data.hpp"
#include "support/isa.hpp"

namespace {

using mixprec::index_t;
using mixprec::isa;

// The best level this CPU offers, asked through GCC's/Clang's CPU model and CPUID directly.
isa expected_best() {
#if MIXPREC_X86_TARGETS
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (avx512 && __builtin_cpu_supports("avx512vnni")) return isa::avx512_vnni;
  if (avx512) return isa::avx512;
  if (avx2) return isa::avx2;
#endif
  return isa::baseline;
}

// Sets MIXPREC_ISA for a scope (restores the previous value).
class env_scope {
 public:
  explicit env_scope(const char* value) {
    if (const char* old = std::getenv("MIXPREC_ISA")) old_ = old, had_ = true;
    ::setenv("MIXPREC_ISA", value, 1);
  }
  ~env_scope() {
    if (had_)
      ::setenv("MIXPREC_ISA", old_.c_str(), 1);
    else
      ::unsetenv("MIXPREC_ISA");
  }

 private:
  std::string old_;
  bool had_ = false;
};

}  // namespace

TEST_CASE("the active level is the best this CPU runs, unless MIXPREC_ISA caps it", "[kernels][dispatch]") {
  const isa best = expected_best();
  const auto supported = mixprec::supported_isas();
  REQUIRE_FALSE(supported.empty());
  CHECK(supported.front() == isa::baseline);
  CHECK(supported.back() == best);
  INFO("CPU best " << mixprec::isa_name(best) << ", active " << mixprec::isa_name(mixprec::active_isa()));
  if (const char* env = std::getenv("MIXPREC_ISA"); env && *env) {
    CHECK(mixprec::active_isa() == std::min(best, mixprec::detail::parse_isa(env)));
  } else {
    CHECK(mixprec::active_isa() == best);
    CHECK(mixprec::kernel_dispatch().name() == mixprec::isa_name(best));
  }
  {
    env_scope cap("avx2");
    CHECK(mixprec::detail::detect_isa() == std::min(best, isa::avx2));
  }
  {
    env_scope cap("sse2");
    CHECK(mixprec::detail::detect_isa() == isa::baseline);
  }
  {
    env_scope cap("avx-512");
    CHECK_THROWS_AS(mixprec::detail::detect_isa(), mixprec::error);
  }
}

TEST_CASE("a level this CPU lacks is refused, never run", "[kernels][dispatch]") {
  bool any_missing = false;
  for (isa i : mixprec::all_isas) {
    if (mixprec::detail::cpu_runs(i)) continue;
    any_missing = true;
    CHECK_THROWS_AS(mixprec::kernel_dispatch(i), mixprec::error);
    CHECK_THROWS_AS(mixprec::isa_scope(i), mixprec::error);
  }
  if (!any_missing) WARN("this CPU runs every level: the refusal is checked on emulated CPUs (qemu) only");
}

TEST_CASE("each level runs its own kernel set", "[kernels][dispatch]") {
  mixprec::test::for_each_isa([&](isa level) {
    const std::string arch = mixprec::with_kernels(level, []<class K>() { return std::string(K::arch::name()); });
    if (level == isa::baseline)
      CHECK(arch == xsimd::default_arch::name());
    else if (level == isa::avx2)
      CHECK(arch == "avx2");
    else
      CHECK(arch == "avx512");
    CHECK(mixprec::kernel_dispatch(level).level() == level);
    CHECK(mixprec::active_isa() == level);  // inside isa_scope
  });
}

TEST_CASE("dispatched kernels match the scalar references on every level", "[kernels][dispatch]") {
  constexpr auto int8 = mixprec::activation_type::int8;
  mixprec::test::for_each_isa([&](isa level) {
    const mixprec::kernel_dispatch k(level);
    for (const char* text : {"int4/g128/sym/minmax/s16", "int4/g32/asym", "int8/channel/sym", "fp16", "bf16"}) {
      INFO(text << " on " << k.name());
      const index_t rows = 37, cols = 1024 + 64;
      const auto q = mixprec::quantize(mixprec::test::gaussian(rows, cols, 0.05f, 21), mixprec::parse_spec(text));
      const auto x = mixprec::test::gaussian(3, cols, 1.0f, 22);
      const auto n = static_cast<std::size_t>(rows);
      std::vector<float> y(n), ref(n);
      std::vector<double> mag(n);
      k.gemv(q, {x.data(), static_cast<std::size_t>(cols)}, y);
      mixprec::ref::gemv(q, x.data(), ref.data());
      mixprec::ref::gemv_magnitude(q, x.data(), mag.data());
      for (std::size_t r = 0; r < n; ++r)
        REQUIRE(std::fabs(static_cast<double>(y[r]) - ref[r]) <= static_cast<double>(cols) * 0x1.0p-23 * mag[r] + 1e-30);
      mixprec::row_matrix ym(3, rows);
      k.gemm(q, x, ym);
      const mixprec::row_matrix eigen = x * mixprec::dequantize(q).transpose();
      REQUIRE(ym.isApprox(eigen, 1e-5f));
      if (q.spec().format == mixprec::format_id::fp16 || q.spec().format == mixprec::format_id::bf16) {
        REQUIRE_THROWS_AS(k.gemv(q, {x.data(), static_cast<std::size_t>(cols)}, y, {.activations = int8}), mixprec::error);
        continue;
      }
      std::vector<float> yq(n), yr(n);
      k.gemv(q, {x.data(), static_cast<std::size_t>(cols)}, yq, {.activations = int8});
      mixprec::ref::gemv_int8(q, x.data(), yr.data());
      REQUIRE(yq == yr);
      mixprec::row_matrix y8(3, rows);
      k.gemm(q, x, y8, {.activations = int8});
      for (mixprec::index_t t = 0; t < 3; ++t) {
        mixprec::ref::gemv_int8(q, x.row(t).data(), yr.data());
        for (mixprec::index_t r = 0; r < rows; ++r) REQUIRE(y8(t, r) == yr[static_cast<std::size_t>(r)]);
      }
    }
  });
}
