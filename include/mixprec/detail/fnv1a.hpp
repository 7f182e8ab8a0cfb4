// FNV-1a, 64 bit (Fowler, Noll and Vo; the offset basis 0xcbf29ce484222325 and prime 0x100000001b3 of
// the reference): the identity of a model file, of calibration ids, and the seed of a tensor's
// bootstrap. Not a cryptographic hash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace mixprec::detail {

inline constexpr std::uint64_t fnv1a_basis = 0xcbf29ce484222325ull;

// The hash of `bytes` continued from h (chain calls to hash several spans as one).
[[nodiscard]] inline std::uint64_t fnv1a(std::span<const std::byte> bytes, std::uint64_t h = fnv1a_basis) noexcept {
  for (std::byte b : bytes) h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
  return h;
}

// h as 16 lower-case hex digits (how the JSON files record it).
[[nodiscard]] inline std::string hex16(std::uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

}  // namespace mixprec::detail
