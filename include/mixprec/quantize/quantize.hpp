// quantize / dequantize: weight matrix <-> quantized_tensor, for a run-time quant_spec or the
// compile-time quantizer<Format, Granularity, Scheme, Calibration, ScaleType>.
//
// The drivers here are written once over a kernel set (kernels/kernel_set.hpp): quantize() uses the
// SIMD kernels of the best instruction set this CPU has (kernels/isa.hpp), quantize_with<K>() a set
// you name, quantize_reference() the scalar reference. All give identical bytes.
//
// llama.cpp's block types (parse_spec("q4_K")...) go through quantize/ggml.hpp, ggml's reference
// quantizers and importance-weighted searches: the bytes are llama.cpp's. `importance` (optional, one
// non-negative value per column: an imatrix vector, or a layer's diag(X X^T)) steers the search of the
// types whose ggml search takes it (every block type but q8_0); other specs ignore it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/formats.hpp"
#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/kernels/ref/row_codec.hpp"
#include "mixprec/quantize/calibration.hpp"
#include "mixprec/quantize/ggml.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

namespace detail {

// Address of w(r, c): a const Ref's operator() returns by value.
inline const float* at(const row_matrix_ref& w, index_t r, index_t c) noexcept {
  return w.data() + r * w.outerStride() + c;
}

// A rectangle of the weight matrix whose elements share one scale.
struct unit {
  index_t r0, r1, c0, c1;
  [[nodiscard]] index_t cols() const noexcept { return c1 - c0; }
};

[[noreturn]] inline void throw_non_finite(const row_matrix_ref& w, const unit& u, std::string_view name) {
  for (index_t r = u.r0; r < u.r1; ++r)
    for (index_t c = u.c0; c < u.c1; ++c)
      if (!std::isfinite(w(r, c)))
        throw error(errc::non_finite, "quantize '" + std::string(name) + "': " +
                                          (std::isnan(w(r, c)) ? "NaN" : "Inf") + " at row " + std::to_string(r) +
                                          ", column " + std::to_string(c) + " (integer and FP8 formats need finite values)");
  throw error(errc::non_finite, "quantize '" + std::string(name) + "': non-finite value");
}

template <class K>
ref::range_stats unit_stats(const row_matrix_ref& w, const unit& u, std::string_view name) {
  ref::range_stats s{w(u.r0, u.c0), w(u.r0, u.c0), true};
  for (index_t r = u.r0; r < u.r1; ++r) {
    const auto t = K::min_max(detail::at(w, r, u.c0), u.cols());
    s.lo = std::min(s.lo, t.lo);
    s.hi = std::max(s.hi, t.hi);
    s.finite = s.finite && t.finite;
  }
  if (!s.finite) throw_non_finite(w, u, name);
  return s;
}

// Codes of n elements of x with params p (one code per byte).
template <class K>
void quantize_segment(const quant_spec& s, const float* x, index_t n, const segment_params& p, std::uint64_t first,
                      std::uint8_t* out) {
  if (s.format == format_id::fp8_e4m3) {
    ref::to_fp8(x, n, p.inv, out);
  } else if (s.rounding == rounding_id::stochastic) {
    ref::quantize_codes_stochastic(x, n, p.inv, p.zero, (1 << bits_of(s.format)) - 1, s.seed, first, out);
  } else {
    K::quantize_codes(x, n, p.inv, p.zero, (1 << bits_of(s.format)) - 1, out);
  }
}

template <class K>
void dequantize_segment(format_id f, const std::uint8_t* codes, index_t n, const segment_params& p, float* y) {
  if (f == format_id::fp8_e4m3)
    ref::from_fp8(codes, n, p.scale, y);
  else
    K::dequantize_codes(codes, n, p.scale, p.zero, y);
}

// Sum of squared round-trip errors over a unit with params p.
template <class K>
double unit_error(const quant_spec& s, const row_matrix_ref& w, const unit& u, const segment_params& p,
                  std::vector<std::uint8_t>& codes, std::vector<float>& back) {
  double err = 0.0;
  for (index_t r = u.r0; r < u.r1; ++r) {
    const float* x = detail::at(w, r, u.c0);
    quantize_segment<K>(s, x, u.cols(), p, static_cast<std::uint64_t>(r * w.cols() + u.c0), codes.data());
    dequantize_segment<K>(s.format, codes.data(), u.cols(), p, back.data());
    for (index_t i = 0; i < u.cols(); ++i) {
      const double e = static_cast<double>(x[i]) - static_cast<double>(back[static_cast<std::size_t>(i)]);
      err += e * e;
    }
  }
  return err;
}

// Calibrated params for one unit (see quantize/calibration.hpp for the rules).
template <class K>
segment_params calibrate_unit(const quant_spec& s, const row_matrix_ref& w, const unit& u, std::string_view name,
                              std::vector<std::uint8_t>& codes, std::vector<float>& back) {
  const ref::range_stats st = unit_stats<K>(w, u, name);
  auto what = [&] {
    return "quantize '" + std::string(name) + "' rows " + std::to_string(u.r0) + ".." + std::to_string(u.r1 - 1) +
           " columns " + std::to_string(u.c0) + ".." + std::to_string(u.c1 - 1);
  };
  switch (s.calibration) {
    case calibration_id::minmax: return make_params(s, st.lo, st.hi, 1.0f, what);
    case calibration_id::percentile: {
      std::vector<float> v;
      v.reserve(static_cast<std::size_t>((u.r1 - u.r0) * u.cols()));
      for (index_t r = u.r0; r < u.r1; ++r)
        for (index_t c = u.c0; c < u.c1; ++c) v.push_back(w(r, c));
      if (s.scheme == scheme_id::asymmetric && s.format != format_id::fp8_e4m3) {
        const float hi = percentile_of(v, s.percentile);
        const float lo = percentile_of(v, 100.0 - static_cast<double>(s.percentile));
        return make_params(s, lo, hi, 1.0f, what);
      }
      const float amax = std::max(std::fabs(st.lo), std::fabs(st.hi));
      for (float& x : v) x = std::fabs(x);
      const float a = percentile_of(v, s.percentile);
      return make_params(s, st.lo, st.hi, amax > 0.0f ? a / amax : 1.0f, what);
    }
    case calibration_id::mse: {
      segment_params best = make_params(s, st.lo, st.hi, 1.0f, what);
      double best_err = unit_error<K>(s, w, u, best, codes, back);
      for (int k = 1; k <= 50; ++k) {
        const segment_params p = make_params(s, st.lo, st.hi, 1.0f - 0.01f * static_cast<float>(k), what);
        const double e = unit_error<K>(s, w, u, p, codes, back);
        if (e < best_err) {
          best_err = e;
          best = p;
        }
      }
      return best;
    }
  }
  return make_params(s, st.lo, st.hi, 1.0f, what);
}

template <class K>
void pack_row(format_id f, const std::uint8_t* codes, index_t n, std::uint8_t* out) {
  switch (f) {
    case format_id::int2: K::template pack<2>(codes, n, out); break;
    case format_id::int4: K::template pack<4>(codes, n, out); break;
    default: std::copy(codes, codes + n, out); break;
  }
}

}  // namespace detail

// Quantizes w by spec s with kernel set K; `name` appears in error messages.
// Throws mixprec::error: empty_input (no elements), non_finite (NaN/Inf for integer or FP8 formats),
// not_representable (a scale the scale type cannot hold), invalid_argument (a bad spec).
// `reuse`, when given, lends its buffers to the result (no allocation when the sizes fit: a training
// loop re-quantizing the same weight every step, or a benchmark, pays no page faults).
template <class K>
[[nodiscard]] quantized_tensor quantize_with(const row_matrix_ref& w, const quant_spec& s,
                                             std::string_view name = "tensor", quantized_tensor* reuse = nullptr,
                                             std::span<const float> importance = {}) {
  validate(s);
  const index_t rows = w.rows(), cols = w.cols();
  if (rows == 0 || cols == 0)
    throw error(errc::empty_input, "quantize '" + std::string(name) + "': empty tensor (" + std::to_string(rows) +
                                       "x" + std::to_string(cols) + ")");
  std::vector<std::uint8_t> codes, scales, zeros;
  if (reuse) reuse->release_buffers(codes, scales, zeros);
  if (s.format == format_id::ggml_block) {
    if (!fits(s, cols))
      throw error(errc::invalid_argument, "quantize '" + std::string(name) + "' (" + std::to_string(rows) + "x" +
                                              std::to_string(cols) + "): " + to_string(s) + " needs rows whose length is a multiple of " +
                                              std::to_string(ggml::block_size(s.ggml)));
    codes.resize(static_cast<std::size_t>(rows) * row_bytes(s, cols));
    std::optional<std::span<const float>> qw;
    if (!importance.empty() && ggml::traits(s.ggml).takes_weights) qw = importance;
    ggml::quantize_into(s.ggml, w, std::as_writable_bytes(std::span<std::uint8_t>(codes)), qw, name);
    scales.clear();
    zeros.clear();
    return {s, rows, cols, std::move(codes), std::move(scales), std::move(zeros)};
  }
  const std::size_t row_bytes = row_code_bytes(s.format, cols);
  codes.resize(static_cast<std::size_t>(rows) * row_bytes);

  if (!needs_scale(s.format)) {
    for (index_t r = 0; r < rows; ++r) {
      std::uint8_t* out = codes.data() + static_cast<std::size_t>(r) * row_bytes;
      if (s.format == format_id::fp32)
        std::memcpy(out, detail::at(w, r, 0), row_bytes);
      else if (s.format == format_id::fp16)
        K::to_fp16(detail::at(w, r, 0), cols, reinterpret_cast<std::uint16_t*>(out));
      else
        K::to_bf16(detail::at(w, r, 0), cols, reinterpret_cast<std::uint16_t*>(out));
    }
    scales.clear();
    zeros.clear();
    return {s, rows, cols, std::move(codes), std::move(scales), std::move(zeros)};
  }

  const index_t seg = segment_length(s, cols);
  const index_t groups = (cols + seg - 1) / seg;
  const auto n_scales = static_cast<std::size_t>(scale_count(s, rows, cols));
  scales.resize(n_scales * static_cast<std::size_t>(bytes_of(s.scales)));
  zeros.resize(s.scheme == scheme_id::asymmetric && is_integer(s.format) ? n_scales : 0);
  std::vector<segment_params> params(n_scales);
  std::vector<std::uint8_t> tmp(static_cast<std::size_t>(cols));
  std::vector<float> back(static_cast<std::size_t>(cols));

  if (s.calibration == calibration_id::minmax && s.granularity != granularity_id::per_tensor) {
    // The common case, row by row in three tight phases while the row is in L1: ranges of all groups
    // (SIMD), then their scales (independent scalar work the CPU overlaps across groups), then codes.
    // Interleaving the three per group serialises a reduction, a division and the kernel.
    const std::size_t scale_bytes = static_cast<std::size_t>(bytes_of(s.scales));
    std::vector<ref::range_stats> stats(static_cast<std::size_t>(groups));
    std::vector<segment_params> row_params(static_cast<std::size_t>(groups));
    for (index_t r = 0; r < rows; ++r) {
      std::uint8_t* out = codes.data() + static_cast<std::size_t>(r) * row_bytes;
      std::uint8_t* unpacked = bits_of(s.format) == 8 ? out : tmp.data();
      bool finite = true;
      for (index_t g = 0; g < groups; ++g) {
        const index_t c0 = g * seg;
        stats[static_cast<std::size_t>(g)] = K::min_max(detail::at(w, r, c0), std::min(cols, c0 + seg) - c0);
        finite = finite && stats[static_cast<std::size_t>(g)].finite;
      }
      if (!finite) [[unlikely]]
        detail::throw_non_finite(w, {r, r + 1, 0, cols}, name);
      for (index_t g = 0; g < groups; ++g) {
        const auto i = static_cast<std::size_t>(r * groups + g);
        const ref::range_stats& st = stats[static_cast<std::size_t>(g)];
        const segment_params p = make_params(
            s, st.lo, st.hi, 1.0f,
            [&] { return "quantize '" + std::string(name) + "' row " + std::to_string(r) + " group " + std::to_string(g); },
            scales.data() + i * scale_bytes);
        row_params[static_cast<std::size_t>(g)] = p;
        if (!zeros.empty()) zeros[i] = static_cast<std::uint8_t>(p.zero);
      }
      for (index_t g = 0; g < groups; ++g) {
        const index_t c0 = g * seg, n = std::min(cols, c0 + seg) - c0;
        detail::quantize_segment<K>(s, detail::at(w, r, c0), n, row_params[static_cast<std::size_t>(g)],
                                    static_cast<std::uint64_t>(r * cols + c0), unpacked + c0);
      }
      if (unpacked != out) detail::pack_row<K>(s.format, unpacked, cols, out);
    }
    return {s, rows, cols, std::move(codes), std::move(scales), std::move(zeros)};
  }

  if (s.granularity == granularity_id::per_tensor) {
    params[0] = detail::calibrate_unit<K>(s, w, {0, rows, 0, cols}, name, tmp, back);
  } else {
    for (index_t r = 0; r < rows; ++r)
      for (index_t g = 0; g < groups; ++g)
        params[static_cast<std::size_t>(r * groups + g)] =
            detail::calibrate_unit<K>(s, w, {r, r + 1, g * seg, std::min(cols, (g + 1) * seg)}, name, tmp, back);
  }
  for (std::size_t i = 0; i < n_scales; ++i) {
    encode_scale(s.scales, params[i].scale, scales.data() + i * static_cast<std::size_t>(bytes_of(s.scales)));
    if (!zeros.empty()) zeros[i] = static_cast<std::uint8_t>(params[i].zero);
  }

  for (index_t r = 0; r < rows; ++r) {
    std::uint8_t* out = codes.data() + static_cast<std::size_t>(r) * row_bytes;
    // INT8 and FP8 codes go straight to the output row; narrower codes are packed afterwards.
    std::uint8_t* unpacked = bits_of(s.format) == 8 ? out : tmp.data();
    for (index_t g = 0; g < groups; ++g) {
      const index_t c0 = g * seg, n = std::min(cols, c0 + seg) - c0;
      const auto& p = params[s.granularity == granularity_id::per_tensor ? 0 : static_cast<std::size_t>(r * groups + g)];
      detail::quantize_segment<K>(s, detail::at(w, r, c0), n, p, static_cast<std::uint64_t>(r * cols + c0), unpacked + c0);
    }
    if (unpacked != out) detail::pack_row<K>(s.format, unpacked, cols, out);
  }
  return {s, rows, cols, std::move(codes), std::move(scales), std::move(zeros)};
}

// Writes the FP32 values of q into y (q.rows() x q.cols()) with kernel set K.
template <class K>
void dequantize_into_with(const quantized_tensor& q, Eigen::Ref<row_matrix> y) {
  if (y.rows() != q.rows() || y.cols() != q.cols())
    throw error(errc::shape_mismatch, "dequantize: output is " + std::to_string(y.rows()) + "x" +
                                          std::to_string(y.cols()) + ", tensor is " + std::to_string(q.rows()) + "x" +
                                          std::to_string(q.cols()));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(q.cols()));
  for (index_t r = 0; r < q.rows(); ++r) decode_row<K>(q, r, &y(r, 0), codes.data());  // kernels/ref/row_codec.hpp
}

// Back to FP32 with kernel set K.
template <class K>
[[nodiscard]] row_matrix dequantize_with(const quantized_tensor& q) {
  row_matrix y(q.rows(), q.cols());
  dequantize_into_with<K>(q, y);
  return y;
}

// Quantizes with the SIMD kernels of the level in use (active_isa()); importance: see the banner.
[[nodiscard]] inline quantized_tensor quantize(const row_matrix_ref& w, const quant_spec& s,
                                               std::string_view name = "tensor", std::span<const float> importance = {}) {
  if (!importance.empty() && static_cast<index_t>(importance.size()) != w.cols())
    throw error(errc::shape_mismatch, "quantize '" + std::string(name) + "': importance has " +
                                          std::to_string(importance.size()) + " values, expected one per column (" +
                                          std::to_string(w.cols()) + ")");
  return with_kernels(active_isa(), [&]<class K>() { return quantize_with<K>(w, s, name, nullptr, importance); });
}
// Quantizes a stack of n_mat matrices (w: n_mat * r rows of cols, matrix m's rows from m * r: a
// mixture-of-experts layer's 3-D expert tensor, GGUF's ne2 outermost) matrix by matrix, each searched
// with its own slice of importance (n_mat * cols values, matrix m's at [m * cols, (m + 1) * cols), or
// none), as llama-quantize quantizes a 3-D tensor with an imatrix of its experts. One tensor of the
// stack's rows: its formats keep every scale inside its row (llama.cpp's block types, FP16, BF16, FP8
// without scales); a spec that stores scales apart is errc::unsupported. errc::shape_mismatch when the
// rows do not split into n_mat matrices or importance has another size; then what quantize() throws.
[[nodiscard]] inline quantized_tensor quantize_experts(const row_matrix_ref& w, index_t n_mat, const quant_spec& s,
                                                       std::string_view name = "tensor", std::span<const float> importance = {}) {
  const std::string what = "quantize '" + std::string(name) + "'";
  if (n_mat < 1 || w.rows() % n_mat != 0)
    throw error(errc::shape_mismatch, what + ": " + std::to_string(w.rows()) + " rows do not split into " + std::to_string(n_mat) + " matrices");
  if (!importance.empty() && static_cast<index_t>(importance.size()) != n_mat * w.cols())
    throw error(errc::shape_mismatch, what + ": importance has " + std::to_string(importance.size()) + " values, expected " +
                                          std::to_string(n_mat) + " x " + std::to_string(w.cols()));
  const index_t r = w.rows() / n_mat;
  std::vector<std::uint8_t> codes;
  for (index_t m = 0; m < n_mat; ++m) {
    const auto slice = importance.empty() ? importance : importance.subspan(static_cast<std::size_t>(m * w.cols()), static_cast<std::size_t>(w.cols()));
    const quantized_tensor q = quantize(w.middleRows(m * r, r), s, name, slice);
    if (!q.scale_bytes().empty() || !q.zero_point_bytes().empty())
      throw error(errc::unsupported, what + ": " + to_string(s) + " stores scales apart from the rows; a stack of matrices takes llama.cpp's block types, F16, BF16 or F32");
    if (codes.empty()) codes.reserve(q.codes().size() * static_cast<std::size_t>(n_mat));
    codes.insert(codes.end(), q.codes().begin(), q.codes().end());
  }
  return quantized_tensor(s, w.rows(), w.cols(), std::move(codes), {}, {});
}
// Quantizes w into out, reusing out's buffers (see quantize_with).
inline void quantize_into(const row_matrix_ref& w, const quant_spec& s, quantized_tensor& out,
                          std::string_view name = "tensor") {
  with_kernels(active_isa(), [&]<class K>() { out = quantize_with<K>(w, s, name, &out); });
}
// Quantizes with the scalar reference kernels (same bytes as quantize()).
[[nodiscard]] inline quantized_tensor quantize_reference(const row_matrix_ref& w, const quant_spec& s,
                                                         std::string_view name = "tensor") {
  return quantize_with<reference_kernels>(w, s, name);
}
// Writes the FP32 values of q into y, which must be q.rows() x q.cols() (SIMD kernels).
inline void dequantize_into(const quantized_tensor& q, Eigen::Ref<row_matrix> y) {
  with_kernels(active_isa(), [&]<class K>() { dequantize_into_with<K>(q, y); });
}
// FP32 values of q (SIMD kernels).
[[nodiscard]] inline row_matrix dequantize(const quantized_tensor& q) {
  row_matrix y(q.rows(), q.cols());
  dequantize_into(q, y);
  return y;
}
// FP32 values of q (scalar reference; same values as dequantize()).
[[nodiscard]] inline row_matrix dequantize_reference(const quantized_tensor& q) {
  return dequantize_with<reference_kernels>(q);
}

// ---------------------------------------------------------------------------------------------
// The compile-time form: quantizer<int4, per_group<32>, symmetric, mse_clip, scale_type::fp16>.
//
// It is a typed builder of a quant_spec, not a second implementation: the parameters are checked when
// the program compiles (a group of 0, a scheme or format that is not one, fails there) and the call
// runs the same run-time quantize() as the spec, so both give the same bytes (tests/quantize/spec_test).
// It has no body specialised per format: the run-time path chooses format and rounding once per
// segment (a group's slice of a row) and then runs the SIMD element loops, and INT8 per-channel quantize
// already runs at 1.5x the memcpy rate of its input (README, speed table), so such a body would have
// little to win.

// Schemes. Use symmetric for weights centred on zero (no zero point stored); asymmetric when the
// range is lopsided (post-ReLU activations), at one extra byte per scale.
struct symmetric {
  static constexpr scheme_id id = scheme_id::symmetric;
};
struct asymmetric {
  static constexpr scheme_id id = scheme_id::asymmetric;
};
template <class S>
concept Scheme = requires {
  { S::id } -> std::convertible_to<scheme_id>;
};

// Granularities. per_tensor: one scale (cheapest, worst with outlier channels); per_channel: one per
// output row (the usual INT8 choice); per_group<N>: one per N consecutive weights of a row (the usual
// INT4 choice: N = 32..128; a shorter last group covers the rest of a row).
struct per_tensor {
  static constexpr granularity_id id = granularity_id::per_tensor;
  static constexpr index_t group_size = 0;
};
struct per_channel {
  static constexpr granularity_id id = granularity_id::per_channel;
  static constexpr index_t group_size = 0;
};
template <index_t N>
struct per_group {
  static_assert(N > 0, "a group holds at least one element");
  static constexpr granularity_id id = granularity_id::per_group;
  static constexpr index_t group_size = N;
};
template <class G>
concept Granularity = requires {
  { G::id } -> std::convertible_to<granularity_id>;
  { G::group_size } -> std::convertible_to<index_t>;
};

// Calibrations. minmax: fastest, exact range; percentile: clips rare outliers (activations);
// mse_clip: searches the clip ratio with the smallest reconstruction error (best for INT4 weights).
struct minmax {
  static constexpr calibration_id id = calibration_id::minmax;
};
struct mse_clip {
  static constexpr calibration_id id = calibration_id::mse;
};
struct percentile {
  static constexpr calibration_id id = calibration_id::percentile;
  float p = 99.9f;
};
template <class C>
concept Calibration = requires {
  { C::id } -> std::convertible_to<calibration_id>;
};

// Roundings. nearest_even: round half to even (the default, deterministic); stochastic: round up with
// probability equal to the fraction, from a counter-based generator seeded by `seed` (the same seed
// gives the same bytes; used for QAT-style unbiased rounding).
struct nearest_even {
  static constexpr rounding_id id = rounding_id::nearest_even;
};
struct stochastic {
  static constexpr rounding_id id = rounding_id::stochastic;
  std::uint64_t seed = 0;
};
template <class R>
concept Rounding = requires {
  { R::id } -> std::convertible_to<rounding_id>;
};

template <Format F, Granularity G = per_channel, Scheme S = symmetric, Calibration C = minmax,
          scale_type ScaleType = scale_type::fp32, Rounding R = nearest_even>
class quantizer {
 public:
  constexpr quantizer() = default;
  constexpr explicit quantizer(C calibration, R rounding = {}) : calibration_(calibration), rounding_(rounding) {}
  constexpr explicit quantizer(R rounding)
    requires(!std::is_same_v<C, R>)
      : rounding_(rounding) {}

  // The run-time description of this quantizer.
  [[nodiscard]] quant_spec spec() const {
    quant_spec s;
    s.format = F::id;
    s.granularity = G::id;
    s.group_size = G::group_size;
    s.scheme = S::id;
    s.calibration = C::id;
    if constexpr (std::is_same_v<C, percentile>) s.percentile = calibration_.p;
    s.scales = ScaleType;
    s.rounding = R::id;
    if constexpr (std::is_same_v<R, stochastic>) s.seed = rounding_.seed;
    return s;
  }
  // Quantizes w (see mixprec::quantize).
  [[nodiscard]] quantized_tensor operator()(const row_matrix_ref& w, std::string_view name = "tensor") const {
    return quantize(w, spec(), name);
  }

 private:
  C calibration_{};
  R rounding_{};
};

}  // namespace mixprec
