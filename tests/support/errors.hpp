// error_code_of(fn): the errc of the mixprec::error that fn throws, or nullopt when it throws none.
// The one helper for "this input is refused with that code" (CHECK(error_code_of(...) == errc::x)
// fails when nothing is thrown, as an optional without a value equals no code).
#pragma once

#include <optional>

#include "mixprec/error.hpp"

namespace mixprec::test {

template <class Fn>
[[nodiscard]] std::optional<errc> error_code_of(Fn&& fn) {
  try {
    fn();
  } catch (const error& e) {
    return e.code();
  }
  return std::nullopt;
}

}  // namespace mixprec::test
