// SIMD kernels vs the scalar reference, bit for bit, on every instruction-set level the CPU runs (one
// binary, no per-ISA flags: the levels are dispatched at run time).
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "support/data.hpp"
#include "support/isa.hpp"

namespace {

using R = mixprec::reference_kernels;
using mixprec::index_t;

// Lengths around every vector width, and odd ones.
const std::vector<index_t> lengths = {1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 1000};

std::vector<float> values_for(index_t n, std::uint32_t seed, bool adversarial) {
  if (adversarial) return mixprec::test::adversarial_values(static_cast<std::size_t>(n), seed);
  const auto w = mixprec::test::gaussian(1, n, 1.0f, seed);
  return {w.data(), w.data() + n};
}

}  // namespace

TEST_CASE("min_max matches the reference", "[kernels][simd]") {
  mixprec::test::for_each_isa([&](mixprec::isa level) {
    mixprec::with_kernels(level, [&]<class K>() {
      for (bool adv : {false, true})
        for (index_t n : lengths) {
          auto x = values_for(n, static_cast<std::uint32_t>(n), adv);
          const auto a = K::min_max(x.data(), n);
          const auto b = R::min_max(x.data(), n);
          CHECK(a.finite == b.finite);
          CHECK(std::bit_cast<std::uint32_t>(a.lo) == std::bit_cast<std::uint32_t>(b.lo));
          CHECK(std::bit_cast<std::uint32_t>(a.hi) == std::bit_cast<std::uint32_t>(b.hi));
          if (n > 2) {  // a NaN or Inf anywhere must be seen, including the tail
            for (index_t pos : {index_t{0}, n / 2, n - 1}) {
              auto y = x;
              y[static_cast<std::size_t>(pos)] = pos % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
              CHECK_FALSE(K::min_max(y.data(), n).finite);
            }
          }
        }
    });
  });
}

TEST_CASE("quantize_codes and dequantize_codes match the reference", "[kernels][simd]") {
  mixprec::test::for_each_isa([&](mixprec::isa level) {
    mixprec::with_kernels(level, [&]<class K>() {
      for (int max_code : {3, 15, 255})
        for (int z : {0, (max_code + 1) / 2, max_code})
          for (float inv : {0.0f, 1.0f, 8.0f, 1.0f / 3.0f, 1e30f, -4.0f})
            for (index_t n : lengths) {
              const auto x = values_for(n, static_cast<std::uint32_t>(n * 7 + max_code), n % 2 == 1);
              std::vector<std::uint8_t> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
              K::quantize_codes(x.data(), n, inv, z, max_code, a.data());
              R::quantize_codes(x.data(), n, inv, z, max_code, b.data());
              REQUIRE(a == b);
              std::vector<float> ya(static_cast<std::size_t>(n)), yb(static_cast<std::size_t>(n));
              K::dequantize_codes(a.data(), n, 0.37f, z, ya.data());
              R::dequantize_codes(a.data(), n, 0.37f, z, yb.data());
              REQUIRE(std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float)) == 0);
            }
    });
  });
}

TEMPLATE_TEST_CASE_SIG("pack and unpack match the reference", "[kernels][simd]", ((int Bits), Bits), 2, 4, 8) {
  mixprec::test::for_each_isa([&](mixprec::isa level) {
    mixprec::with_kernels(level, [&]<class K>() {
      std::mt19937 gen(Bits);
      for (index_t n : lengths) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
        for (auto& c : codes) c = static_cast<std::uint8_t>(gen() & ((1u << Bits) - 1u));
        const auto bytes = static_cast<std::size_t>((n * Bits + 7) / 8);
        std::vector<std::uint8_t> pa(bytes), pb(bytes);
        K::template pack<Bits>(codes.data(), n, pa.data());
        R::pack<Bits>(codes.data(), n, pb.data());
        REQUIRE(pa == pb);
        std::vector<std::uint8_t> ua(static_cast<std::size_t>(n)), ub(static_cast<std::size_t>(n));
        K::template unpack<Bits>(pa.data(), n, ua.data());
        R::unpack<Bits>(pa.data(), n, ub.data());
        REQUIRE(ua == ub);
        REQUIRE(ua == codes);
      }
    });
  });
}

TEST_CASE("FP16 and BF16 conversions match the reference", "[kernels][simd]") {
  mixprec::test::for_each_isa([&](mixprec::isa level) {
    mixprec::with_kernels(level, [&]<class K>() {
      // Every FP16/BF16 bit pattern back to FP32, and many FP32 patterns (all exponents, NaN, Inf) forward.
      std::vector<std::uint16_t> all(65536);
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
      std::vector<float> fa(all.size()), fb(all.size());
      K::from_fp16(all.data(), 65536, fa.data());
      R::from_fp16(all.data(), 65536, fb.data());
      REQUIRE(std::memcmp(fa.data(), fb.data(), fa.size() * 4) == 0);
      K::from_bf16(all.data(), 65536, fa.data());
      R::from_bf16(all.data(), 65536, fb.data());
      REQUIRE(std::memcmp(fa.data(), fb.data(), fa.size() * 4) == 0);

      std::vector<float> x;
      for (std::uint64_t u = 0; u < (1ull << 32); u += 65521)
        x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(u)));
      for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-45f})
        x.push_back(f);
      x.push_back(std::numeric_limits<float>::infinity());
      x.push_back(-std::numeric_limits<float>::infinity());
      x.push_back(std::nanf(""));
      x.push_back(-std::nanf("0x12345"));
      const auto n = static_cast<index_t>(x.size());
      std::vector<std::uint16_t> ha(x.size()), hb(x.size());
      K::to_fp16(x.data(), n, ha.data());
      R::to_fp16(x.data(), n, hb.data());
      REQUIRE(ha == hb);
      K::to_bf16(x.data(), n, ha.data());
      R::to_bf16(x.data(), n, hb.data());
      REQUIRE(ha == hb);
    });
  });
}

TEST_CASE("quantize/dequantize drivers give identical bytes with SIMD and reference kernels", "[kernels][simd]") {
  mixprec::test::for_each_isa([&](mixprec::isa level) {
    mixprec::with_kernels(level, [&]<class K>() {
      const char* specs[] = {"int8",
                             "int8/channel/asym",
                             "int4/g32/sym/minmax/s16",
                             "int4/g64/asym/mse",
                             "int4/g128",
                             "int4/tensor/sym/mse",
                             "int4/channel/sym/p99",
                             "int2/g32/asym",
                             "int4/g33/asym",
                             "fp8_e4m3/channel",
                             "fp16",
                             "bf16",
                             "fp32",
                             "int8/g32/sym/mse/sbf16",
                             "int4/g32/stochastic"};
      struct shape {
        index_t rows, cols;
      };
      for (shape sh : {shape{1, 1}, shape{3, 7}, shape{5, 33}, shape{17, 100}, shape{4, 257}})
        for (const char* text : specs) {
          const auto spec = mixprec::parse_spec(text);
          mixprec::row_matrix w = mixprec::test::gaussian(sh.rows, sh.cols, 0.02f, static_cast<std::uint32_t>(sh.cols));
          w.row(0).setConstant(0.25f);       // a constant row
          if (sh.rows > 2) w(2, 0) = 40.0f;  // one huge outlier
          INFO(text << " " << sh.rows << "x" << sh.cols);
          const auto a = mixprec::quantize_with<K>(w, spec);
          const auto b = mixprec::quantize_reference(w, spec);
          REQUIRE(std::ranges::equal(a.codes(), b.codes()));
          REQUIRE(std::ranges::equal(a.scale_bytes(), b.scale_bytes()));
          REQUIRE(std::ranges::equal(a.zero_point_bytes(), b.zero_point_bytes()));
          const mixprec::row_matrix da = mixprec::dequantize_with<K>(a);
          const mixprec::row_matrix db = mixprec::dequantize_reference(a);
          REQUIRE(std::memcmp(da.data(), db.data(), static_cast<std::size_t>(da.size()) * sizeof(float)) == 0);
        }
    });
  });
}
