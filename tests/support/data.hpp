// Test data generators: seeded Gaussian matrices and adversarial cases.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "mixprec/types.hpp"

namespace mixprec::test {

// rows x cols matrix of N(0, sigma^2) values from a seeded generator.
inline row_matrix gaussian(index_t rows, index_t cols, float sigma, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  row_matrix w(rows, cols);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = dist(gen);
  return w;
}

// Finite float values that stress a kernel: zeros, denormals, huge and tiny magnitudes, exact ties.
inline std::vector<float> adversarial_values(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (i % 8) {
      case 0: v[i] = normal(gen); break;
      case 1: v[i] = normal(gen) * 1e-40f; break;                                   // denormal
      case 2: v[i] = normal(gen) * 1e30f; break;                                    // huge
      case 3: v[i] = std::ldexp(static_cast<float>(static_cast<int>(bits(gen) % 64) - 32) + 0.5f, -3); break;  // ties
      case 4: v[i] = 0.0f; break;
      case 5: v[i] = -0.0f; break;
      case 6: {  // any finite bit pattern
        float f;
        do {
          const std::uint32_t u = bits(gen);
          f = std::bit_cast<float>(u);
        } while (!std::isfinite(f));
        v[i] = f;
        break;
      }
      default: v[i] = normal(gen) * 1e-3f; break;
    }
  }
  return v;
}

}  // namespace mixprec::test
