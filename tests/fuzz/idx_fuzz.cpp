// libFuzzer target: the IDX parser never crashes or reads out of bounds; bad input is mixprec::error.
#include <cstddef>
#include <cstdint>

#include "mixprec/io/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto a = mixprec::idx::parse({data, size}, "fuzz");
    std::uint64_t n = 1;
    for (auto d : a.dims) n *= d;
    if (n != a.data.size()) __builtin_trap();  // the parser's own invariant
  } catch (const mixprec::error&) {
  }
  return 0;
}
