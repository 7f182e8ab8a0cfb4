// The one pair of helpers for "this call is refused": no hand-written try/catch in the tests.
//   error_code_of(fn): the errc of the mixprec::error that fn throws, or nullopt when it throws none.
//     CHECK(error_code_of(...) == errc::x) fails when nothing is thrown, as an optional without a
//     value equals no code.
//   error_of(fn): the mixprec::error itself (code(), what(), message()), or nullopt; for checking the
//     message too: const auto e = error_of(...); REQUIRE(e); CHECK(e->code() == errc::x);
//     CHECK_THAT(e->what(), ...).
// Any other exception passes through, to fail the test as an unexpected one.
#pragma once

#include <optional>

#include "mixprec/error.hpp"

namespace mixprec::test {

template <class Fn>
[[nodiscard]] std::optional<error> error_of(Fn&& fn) {
  try {
    fn();
  } catch (const error& e) {
    return e;
  }
  return std::nullopt;
}

template <class Fn>
[[nodiscard]] std::optional<errc> error_code_of(Fn&& fn) {
  if (const std::optional<error> e = error_of(fn)) return e->code();
  return std::nullopt;
}

}  // namespace mixprec::test
