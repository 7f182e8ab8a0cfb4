// Scalar reference for y = Q(W) x with dynamically INT8-quantized activations (ground truth of
// kernels/simd/gemv_q8.inl, which must match it bit for bit on every architecture).
//
// Numerics, all spelled out:
// - activations: sx = max_j |x_j| / 127 (FP32 division), inv = 1 / sx (0 when sx == 0), q_j =
//   nearbyint(x_j * inv) (round half to even), |q_j| <= 127; a non-finite x throws errc::non_finite.
// - lanes: 16 virtual lanes; a block is 16 * P columns (P = 8 for INT4, 4 for INT8 weights), lane i of
//   block b covering columns b*16P + P*i .. + P-1. The "main" columns are the whole blocks, when the
//   group length g satisfies g % (16P) == 0, or (16P) % g == 0 with g % P == 0, or one group per row;
//   otherwise (and for the columns after the last whole block) columns are "tail" columns.
// - units: with one group per row or g >= 16P a unit is a group (its blocks), else a block.
//   D[unit][i] = sum over the lane's main columns of (u_j - z_g) * q_j, exactly, in 32-bit integers.
// - FP32: acc[16] = 0; for each unit in order, for each lane: acc[i] = acc[i] + s * float(D[unit][i])
//   (s the scale of the lane's group; one product and one sum, each rounded, no FMA); then for each
//   group with tail columns, in order: acc[0] = acc[0] + s_g * float(Dtail_g); then the tree
//   acc[i] += acc[i + h] for h = 8, 4, 2, 1 (i < h); y = acc[0] * sx.
// Integer range: |sum of u*q over one lane and unit| must stay below 2^31 (checked: throws
// errc::unsupported past 2^31 / (255 * 127) weights per lane and unit).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"

namespace mixprec {

// The INT8-activation layout of one weight (shared by the reference and the SIMD kernels).
struct q8_layout {
  static constexpr index_t lanes = 16;
  int per_lane = 8;          // P: columns per lane (8 for INT4, 4 for INT8)
  index_t block = 128;       // 16 * P
  index_t blocks = 0;        // whole blocks in the main columns (0: every column is a tail column)
  index_t main = 0;          // blocks * block
  index_t group = 0, groups = 0;
  bool per_block = false;    // units are blocks (groups shorter than a block)
  index_t units = 0;
  index_t blocks_per_unit = 0;

  // Group of lane i of unit t.
  [[nodiscard]] index_t lane_group(index_t t, index_t i) const noexcept {
    if (groups == 1) return 0;
    return per_block ? (t * block + per_lane * i) / group : t;
  }
};

// The layout of w for the INT8-activation products; throws mixprec::error for formats other than INT4/INT8 and for
// units whose 32-bit lane sums could overflow.
inline q8_layout make_q8_layout(const quantized_tensor& w) {
  const quant_spec& s = w.spec();
  if (s.format != format_id::int8 && s.format != format_id::int4)
    throw error(errc::unsupported, "INT8 activations: weights must be int8 or int4, not " + to_string(s));
  q8_layout l;
  l.per_lane = s.format == format_id::int4 ? 8 : 4;
  l.block = q8_layout::lanes * l.per_lane;
  l.group = w.group_length();
  l.groups = w.groups_per_row();
  const index_t blocks = w.cols() / l.block;
  if (l.groups == 1) {
    l.blocks_per_unit = blocks;
    l.units = blocks > 0 ? 1 : 0;
  } else if (l.group % l.block == 0) {
    l.blocks_per_unit = l.group / l.block;
    l.units = (blocks + l.blocks_per_unit - 1) / l.blocks_per_unit;
  } else if (l.block % l.group == 0 && l.group % l.per_lane == 0) {
    l.per_block = true;
    l.blocks_per_unit = 1;
    l.units = blocks;
  } else {
    if (static_cast<double>(l.group) * 255.0 * 127.0 >= 2147483647.0)
      throw error(errc::unsupported, "INT8 activations: groups of " + std::to_string(l.group) + " could overflow 32-bit sums");
    return l;  // every column is a tail column
  }
  l.blocks = blocks;
  l.main = blocks * l.block;
  if (static_cast<double>(l.blocks_per_unit) * l.per_lane * 255.0 * 127.0 >= 2147483647.0)
    throw error(errc::unsupported, "INT8 activations: " + std::to_string(w.cols()) + " columns per group could overflow "
                                   "32-bit lane sums");
  return l;
}

namespace ref {

// Dynamic INT8 quantization of one activation vector (see the top of this file); returns sx.
inline float quantize_activations(const float* x, index_t n, std::int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (index_t j = 0; j < n; ++j) {
    finite = finite && std::isfinite(x[j]);
    amax = std::max(amax, std::fabs(x[j]));
  }
  if (!finite) throw error(errc::non_finite, "INT8 activations: non-finite activation");
  const float sx = amax / 127.0f, inv = sx > 0.0f ? 1.0f / sx : 0.0f;
  for (index_t j = 0; j < n; ++j) q[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * inv));
  return sx;
}

// y = Q(W) x with INT8 activations, exactly as the top of this file says.
inline void gemv_int8(const quantized_tensor& w, const float* x, float* y) {
  const q8_layout l = make_q8_layout(w);
  const index_t cols = w.cols();
  std::vector<std::int8_t> q(static_cast<std::size_t>(cols));
  const float sx = quantize_activations(x, cols, q.data());
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
  for (index_t r = 0; r < w.rows(); ++r) {
    if (w.spec().format == format_id::int4)
      unpack<4>(w.row_codes(r), cols, codes.data());
    else
      std::copy(w.row_codes(r), w.row_codes(r) + cols, codes.begin());
    float acc[q8_layout::lanes] = {};
    for (index_t t = 0; t < l.units; ++t) {
      const index_t b0 = t * l.blocks_per_unit, b1 = std::min(l.blocks, b0 + l.blocks_per_unit);
      for (index_t i = 0; i < q8_layout::lanes; ++i) {
        const index_t g = l.lane_group(t, i);
        const int z = w.zero_point(r, g);
        std::int32_t d = 0;
        for (index_t b = b0; b < b1; ++b)
          for (index_t k = 0; k < l.per_lane; ++k) {
            const auto j = static_cast<std::size_t>(b * l.block + l.per_lane * i + k);
            d += (static_cast<std::int32_t>(codes[j]) - z) * q[j];
          }
        acc[i] = acc[i] + w.scale(r, g) * static_cast<float>(d);
      }
    }
    for (index_t g = l.main / l.group; g < w.groups_per_row(); ++g) {
      const index_t c0 = std::max(l.main, g * l.group), c1 = std::min(cols, (g + 1) * l.group);
      if (c0 >= c1) continue;
      const int z = w.zero_point(r, g);
      std::int32_t d = 0;
      for (index_t j = c0; j < c1; ++j)
        d += (static_cast<std::int32_t>(codes[static_cast<std::size_t>(j)]) - z) * q[static_cast<std::size_t>(j)];
      acc[0] = acc[0] + w.scale(r, g) * static_cast<float>(d);
    }
    for (index_t h = q8_layout::lanes / 2; h >= 1; h /= 2)
      for (index_t i = 0; i < h; ++i) acc[i] = acc[i] + acc[i + h];
    y[r] = acc[0] * sx;
  }
}

}  // namespace ref
}  // namespace mixprec
