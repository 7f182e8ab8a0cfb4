// The sums of one comparison of two tensors, from which every tensor metric of sensitivity/metrics.hpp
// follows (its own header so that the SIMD kernels that fill it need nothing else of sensitivity/).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "mixprec/types.hpp"

namespace mixprec {

// Sums of one comparison of ref (a) and test (b), from which every tensor metric follows.
struct error_stats {
  double signal = 0.0;      // sum a^2
  double test_energy = 0.0; // sum b^2
  double noise = 0.0;       // sum (a - b)^2
  double dot = 0.0;         // sum a b
  double max_abs = 0.0;     // max |a - b|
  index_t count = 0;        // elements compared

  // Adds another part of the same comparison (e.g. another row block).
  error_stats& operator+=(const error_stats& o) noexcept {
    signal += o.signal;
    test_energy += o.test_energy;
    noise += o.noise;
    dot += o.dot;
    max_abs = std::max(max_abs, o.max_abs);
    count += o.count;
    return *this;
  }
  // Mean squared error (0 for no elements).
  [[nodiscard]] double mse() const noexcept { return count ? noise / static_cast<double>(count) : 0.0; }
  // 10 log10(signal / noise) in dB: +inf when noise is 0, -inf when only the signal is 0.
  [[nodiscard]] double sqnr_db() const noexcept {
    if (noise == 0.0) return std::numeric_limits<double>::infinity();
    if (signal == 0.0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(signal / noise);
  }
  // dot / (|a| |b|) clamped to [-1, 1]; 1 when both are zero, 0 when exactly one is.
  [[nodiscard]] double cosine() const noexcept {
    if (signal == 0.0 || test_energy == 0.0) return signal == test_energy ? 1.0 : 0.0;
    return std::clamp(dot / (std::sqrt(signal) * std::sqrt(test_energy)), -1.0, 1.0);
  }
};

}  // namespace mixprec
