// Size arithmetic that cannot wrap: every reader computes element counts, byte sizes and offsets from
// numbers a file gives it, and a product that wraps modulo 2^64 turns a huge claim into a small one
// that passes the size check (a llama2.c header with dim 2^20 and 2^20 layers claims 2^62 floats;
// 28 + 2^62 * 4 wraps to 28). Readers use these instead of plain * and +.
#pragma once

#include <cstdint>

namespace mixprec::detail {

// out = a * b; false (out unspecified) when the product does not fit 64 bits.
[[nodiscard]] inline bool mul_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}
// out = a + b; false (out unspecified) when the sum does not fit 64 bits.
[[nodiscard]] inline bool add_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_add_overflow(a, b, &out);
}

// An unsigned 64-bit value that remembers whether any step computing it overflowed, so a whole size
// formula can be written as one expression and checked once:
//   const checked_u64 floats = checked_u64(V) * d + checked_u64(L) * d * d;   if (!floats.ok()) ...
class checked_u64 {
 public:
  constexpr checked_u64(std::uint64_t v = 0) noexcept : v_(v) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] constexpr bool ok() const noexcept { return ok_; }
  // The value; meaningful only when ok().
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return v_; }

  friend checked_u64 operator*(checked_u64 a, checked_u64 b) noexcept {
    checked_u64 r;
    r.ok_ = a.ok_ && b.ok_ && mul_ok(a.v_, b.v_, r.v_);
    return r;
  }
  friend checked_u64 operator+(checked_u64 a, checked_u64 b) noexcept {
    checked_u64 r;
    r.ok_ = a.ok_ && b.ok_ && add_ok(a.v_, b.v_, r.v_);
    return r;
  }

 private:
  std::uint64_t v_ = 0;
  bool ok_ = true;
};

}  // namespace mixprec::detail
