// libFuzzer target: the safetensors parser never crashes or reads out of bounds; bad input is
// mixprec::error. Parsed tensors are read back through both accessors to touch every byte claimed.
#include <cstddef>
#include <cstdint>

#include "mixprec/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = mixprec::safetensors::file::parse(
        mixprec::mapped_file::borrow({reinterpret_cast<const std::byte*>(data), size}, "fuzz"));
    for (const auto& t : f.tensors()) {
      if (t.bytes.size() != t.count() * mixprec::safetensors::element_size(t.type)) __builtin_trap();
      if (t.count() > (1u << 20)) continue;  // the bytes exist, so this is bounded by the input anyway
      const auto m = f.to_float(t.name);
      if (static_cast<std::uint64_t>(m.size()) != t.count()) __builtin_trap();
      try {
        const auto v = f.as_matrix_f32(t.name);
        if (v.size() != m.size()) __builtin_trap();
      } catch (const mixprec::error&) {
      }
    }
  } catch (const mixprec::error&) {
  }
  return 0;
}
