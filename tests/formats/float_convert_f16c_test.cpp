// FP32 -> FP16 against an independent oracle: the CPU's own F16C conversion (round to nearest even).
// The F16C instruction is compiled for that one function and run only after a CPU check.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>

#include "mixprec/formats/float_convert.hpp"
#include "mixprec/kernels/isa.hpp"

#if MIXPREC_X86_TARGETS
// Region code (detail/simd/target.hpp): its own ISA-named namespace, called only after the CPU check.
namespace isa_avx2 {

__attribute__((target("f16c"))) std::uint16_t f16c_convert(float f) {
  return static_cast<std::uint16_t>(_mm_cvtsi128_si32(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT)));
}

}  // namespace isa_avx2

TEST_CASE("FP16 conversion agrees with F16C hardware on a sweep of FP32 bit patterns", "[formats][fp16][f16c]") {
  if (!mixprec::detail::cpu_has_f16c()) {
    WARN("skipped: this CPU lacks F16C");
    return;
  }
  std::uint64_t checked = 0;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 4099) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(u));
    const std::uint16_t hw = isa_avx2::f16c_convert(f);
    const std::uint16_t sw = mixprec::fp32_to_fp16(f);
    if (std::isnan(f)) {
      REQUIRE((sw & 0x7C00u) == 0x7C00u);  // NaN payloads differ by design; NaN-ness must not
      REQUIRE((sw & 0x03FFu) != 0);
      continue;
    }
    REQUIRE(sw == hw);
    ++checked;
  }
  CHECK(checked > 1000000);
}
#endif
