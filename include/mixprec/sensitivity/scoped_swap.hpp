// A one-tensor swap guard over any weight slot: puts a replacement (a quantized tensor, a perturbed
// copy) where a model keeps a weight for the guard's lifetime and puts the original back after it, also
// when the work in between throws. The slot's type only needs to be swappable; probe.hpp's
// scoped_quantization is the same guard for a mixprec::layer's float view, written back by memcpy.
#pragma once

#include <type_traits>
#include <utility>

namespace mixprec {

template <class T>
class [[nodiscard]] scoped_swap {
  static_assert(std::is_nothrow_swappable_v<T> && std::is_nothrow_move_constructible_v<T>,
                "scoped_swap: the restore in the destructor must not throw");

 public:
  // Swaps `replacement` into `slot` (noexcept swaps: the guard cannot fail half way).
  scoped_swap(T& slot, T replacement) : slot_(slot), held_(std::move(replacement)) {
    using std::swap;
    swap(slot_, held_);
  }
  scoped_swap(const scoped_swap&) = delete;
  scoped_swap& operator=(const scoped_swap&) = delete;
  ~scoped_swap() {
    using std::swap;
    swap(slot_, held_);
  }

  // The original, while it is out of its slot.
  [[nodiscard]] const T& original() const noexcept { return held_; }

 private:
  T& slot_;
  T held_;
};

}  // namespace mixprec
