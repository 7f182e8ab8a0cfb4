// libFuzzer target: the llama.cpp importance-matrix reader (legacy .dat) never crashes; what it accepts
// serialises back to the same entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "mixprec/io/imatrix.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mixprec::imatrix::file f;
  try {
    f = mixprec::imatrix::parse(std::span<const std::uint8_t>(data, size), "fuzz");
  } catch (const mixprec::error&) {
    return 0;
  }
  const auto bytes = mixprec::imatrix::serialize(f);
  const auto again = mixprec::imatrix::parse(bytes, "round trip");
  if (again.entries.size() != f.entries.size()) std::abort();
  return 0;
}
