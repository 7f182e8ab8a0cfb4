// llama2.c checkpoint headers whose sizes overflow: a typed error, never a read past the end.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "mixprec/detail/checked.hpp"
#include "mixprec/io/llama2c.hpp"
#include "support/errors.hpp"

namespace {

std::vector<std::uint8_t> header(std::vector<std::int32_t> fields, std::size_t extra_bytes = 0) {
  std::vector<std::uint8_t> b(28 + extra_bytes, 0);
  std::memcpy(b.data(), fields.data(), 28);
  return b;
}

std::optional<mixprec::errc> code_of(const std::vector<std::uint8_t>& b) {
  return mixprec::test::error_code_of([&] { (void)mixprec::llama2c::parse_checkpoint(b.data(), b.size(), "t.bin"); });
}

}  // namespace

TEST_CASE("checked_u64 remembers any overflow of a size formula", "[io][checked]") {
  using mixprec::detail::checked_u64;
  const std::uint64_t big = std::uint64_t{1} << 62;
  CHECK((checked_u64(3) * 4 + 5).ok());
  CHECK((checked_u64(3) * 4 + 5).value() == 17);
  CHECK_FALSE((checked_u64(big) * 4).ok());                            // 2^64
  CHECK_FALSE((checked_u64(big) * 4 + 28).ok());                       // stays failed
  CHECK_FALSE((checked_u64(std::numeric_limits<std::uint64_t>::max()) + 1).ok());
  CHECK((checked_u64(big) * 3).ok());                                  // 3 * 2^62 fits
  CHECK_FALSE((checked_u64(big) * 3 + big).ok());                      // 2^64 does not
}

TEST_CASE("a llama2.c header whose weight count wraps 64 bits is a parse error", "[io][llama2c]") {
  // Each field passes its range check (<= 2^20); the weight count is about 2^62 floats, so the byte
  // count 28 + 4 * floats wraps to a small number in 64-bit arithmetic.
  const auto b = header({1048576, 2, 1048574, 1, 1, 1, 14});
  REQUIRE(code_of(b) == mixprec::errc::parse_error);
  CHECK_THROWS_WITH(mixprec::llama2c::parse_checkpoint(b.data(), b.size(), "t.bin"), Catch::Contains("2^64"));
  // The same kind with other fields at their limits.
  for (std::int32_t layers : {1 << 20, (1 << 20) - 1, 4096})
    CHECK(code_of(header({1 << 20, 1 << 20, layers, 1 << 10, 1 << 10, 1 << 20, 1 << 20})) ==
          mixprec::errc::parse_error);
  // A small honest header whose file is short: the size check, not a read past the end.
  CHECK(code_of(header({8, 16, 1, 2, 2, 4, 4}, 100)) == mixprec::errc::parse_error);
}
