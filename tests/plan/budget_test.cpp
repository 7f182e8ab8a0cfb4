#include <catch2/catch.hpp>

#include <mixprec/plan/constraints.hpp>

#include "support/errors.hpp"

TEST_CASE("parse_byte_budget: bits per weight, bytes, decimal units; typed errors", "[plan][budget]") {
  using mixprec::parse_byte_budget;
  CHECK(parse_byte_budget("4.5", 1000.0) == Approx(562.5));     // a bare number up to 32: bits per weight
  CHECK(parse_byte_budget("4.5bpw", 1000.0) == Approx(562.5));
  CHECK(parse_byte_budget("32", 1000.0) == Approx(4000.0));
  CHECK(parse_byte_budget("33", 1000.0) == Approx(33.0));       // above 32: bytes
  CHECK(parse_byte_budget("600B", 1000.0) == Approx(600.0));
  CHECK(parse_byte_budget("512KB", 1.0) == Approx(512e3));
  CHECK(parse_byte_budget("3.9GB", 1.0) == Approx(3.9e9));
  auto code = [](const char* text, double weights) {
    return mixprec::test::error_code_of([&] { (void)parse_byte_budget(text, weights); });
  };
  CHECK(code("lots", 1000.0) == mixprec::errc::parse_error);
  CHECK(code("4x", 1000.0) == mixprec::errc::parse_error);
  CHECK(code("4.5 GB", 1000.0) == mixprec::errc::parse_error);
  CHECK(code("-3", 1000.0) == mixprec::errc::invalid_argument);
  CHECK(code("0", 1000.0) == mixprec::errc::invalid_argument);
  CHECK(code("inf", 1000.0) == mixprec::errc::invalid_argument);
  CHECK(code("4.5", 0.0) == mixprec::errc::invalid_argument);
}
