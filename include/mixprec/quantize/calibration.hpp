// Scale formulas and calibration: from a segment's values to its stored scale, inverse and zero point.
//
// Scale formulas (b bits, M = 2^b - 1), applied to a clip range chosen by the calibration:
// - symmetric: m = the value of largest magnitude with its sign (the larger of hi and -lo; hi on a
//   tie), times the clip ratio; d = m / -2^(b-1), zero point 2^(b-1). The extreme value lands exactly
//   on code 0 (= -2^(b-1)), and the opposite side gets 2^(b-1)-1 levels: the 16th INT4 level is won by
//   the sign of the largest value, as in ggml's Q4_0.
// - asymmetric: lo' = min(lo, 0) * ratio, d = (max(hi, 0) - min(lo, 0)) * ratio / M,
//   zero point = clamp(nearbyint(-lo' / d), 0, M), so 0.0 is exactly representable.
// - fp8_e4m3: d = max(|lo|, |hi|) * ratio / 448.
// d is then rounded to the scale type; every later step uses that stored value. inv = 1 / d in FP32;
// a zero (or so tiny that 1/d overflows) scale gives d = inv = 0: the segment dequantizes to zeros.
// A scale the scale type cannot hold (FP16 overflow) is an error, never a silent Inf.
//
// Calibration of the clip range:
// - minmax: ratio 1.
// - percentile p: symmetric/fp8 ratio = (p-th percentile of |x|) / max|x|; asymmetric clips lo and hi to
//   the (100-p)-th and p-th percentiles of x (nearest-rank, on the segment's values).
// - mse: the ratio in {1.00, 0.99, ..., 0.50} whose quantize-dequantize round trip has the smallest sum of
//   squared errors over the segment (first minimum wins; ratio 1 is a candidate, so never worse than
//   minmax). The error is summed in double, in element order, from the kernels' own output.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// Stored scale, its FP32 inverse and the zero point of one segment.
struct segment_params {
  float scale = 0.0f;
  float inv = 0.0f;
  int zero = 0;
};

// Scale, inverse and zero point for a segment with range [lo, hi] clipped by ratio (see above).
// what() names the tensor and segment for error messages (called only on error: this runs per group).
// When scale_out is given, the stored scale's bytes are written there.
template <class Describe>
[[nodiscard]] segment_params make_params(const quant_spec& s, float lo, float hi, float ratio, Describe&& what,
                                         std::uint8_t* scale_out = nullptr) {
  float d = 0.0f;
  int zero = 0;
  const int bits = bits_of(s.format);
  if (s.format == format_id::fp8_e4m3) {
    d = std::max(std::fabs(lo), std::fabs(hi)) * ratio / fp8_e4m3_max;
  } else if (s.scheme == scheme_id::symmetric) {
    const float m = (hi >= -lo ? hi : lo) * ratio;
    d = m * (-1.0f / static_cast<float>(1 << (bits - 1)));  // exact: a power of two
    zero = 1 << (bits - 1);
  } else {
    // (hi - lo) * ratio rather than hi * ratio - lo * ratio: a product feeding a subtraction could be
    // fused into an FMA under -ffp-contract=fast, and the scale would then depend on compiler flags.
    const float l = std::min(lo, 0.0f) * ratio;
    d = (std::max(hi, 0.0f) - std::min(lo, 0.0f)) * ratio / static_cast<float>((1 << bits) - 1);
    if (!std::isfinite(d))
      throw error(errc::not_representable, what() + ": range too wide for an FP32 scale");
    const float stored = encode_scale(s.scales, d);
    if (stored != 0.0f && std::isfinite(stored))
      zero = static_cast<int>(std::clamp(std::nearbyint(-l / stored), 0.0f, static_cast<float>((1 << bits) - 1)));
  }
  segment_params p;
  p.scale = encode_scale(s.scales, d, scale_out);
  if (!std::isfinite(p.scale))
    throw error(errc::not_representable, what() + ": scale " + std::to_string(d) +
                                             " does not fit the scale type of " + to_string(s));
  p.inv = p.scale == 0.0f ? 0.0f : 1.0f / p.scale;
  if (!std::isfinite(p.inv)) {
    p.scale = p.inv = 0.0f;
    if (scale_out) encode_scale(s.scales, 0.0f, scale_out);
  }
  if (p.scale == 0.0f && s.scheme == scheme_id::asymmetric) zero = 0;
  p.zero = zero;
  return p;
}

// The value at nearest rank p% of v (v is reordered).
[[nodiscard]] inline float percentile_of(std::vector<float>& v, double p) {
  const auto n = static_cast<double>(v.size());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<std::size_t>(rank, 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rank), v.end());
  return v[rank];
}

}  // namespace mixprec
