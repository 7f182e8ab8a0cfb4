// Precision-aware training: fake quantization for any training loop that holds Eigen matrices.
//
// - fake_quant (straight-through estimator, Bengio et al. 2013): forward W_hat = dequantize(quantize(W))
//   with any quant_spec (scales re-calibrated from W each call); backward passes dL/dW_hat through
//   unchanged where W was inside the clipping range and zeroes it where it was clipped.
// - lsq_quantizer (learned step size, Esser et al. 2020, "Learned Step Size Quantization"): symmetric
//   signed levels Qn = -2^(b-1) .. Qp = 2^(b-1) - 1 with a trained step s per channel or group:
//     W_hat = s * clamp(round(W / s), Qn, Qp)
//     dW_hat/dW = 1 inside [Qn s, Qp s], else 0                       (straight-through)
//     dW_hat/ds = round(W/s) - W/s inside, Qn below, Qp above          (scaled by 1/sqrt(n Qp))
//   and exports the trained steps as the scales of a quantized_tensor (zero point 2^(b-1)).
#pragma once

#include <cmath>
#include <string>
#include <utility>

#include "mixprec/error.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace mixprec {

// Straight-through fake quantization with a fixed spec.
class fake_quant {
 public:
  explicit fake_quant(quant_spec spec) : spec_(spec) { validate(spec_); }

  [[nodiscard]] const quant_spec& spec() const noexcept { return spec_; }

  // W_hat = dequantize(quantize(W)); remembers which elements were inside the clipping range.
  [[nodiscard]] row_matrix forward(const row_matrix_ref& w) {
    quantize_into(w, spec_, q_, "fake_quant");
    row_matrix out = dequantize(q_);
    pass_.resize(w.rows(), w.cols());
    if (!is_integer(spec_.format)) {
      pass_.setOnes();  // float formats: no clipping range (FP8 saturation is not modelled)
      return out;
    }
    const int max_code = (1 << bits_of(spec_.format)) - 1;
    const index_t seg = q_.group_length();
    for (index_t r = 0; r < w.rows(); ++r)
      for (index_t c = 0; c < w.cols(); ++c) {
        const index_t g = c / seg;
        const float d = q_.scale(r, g);
        const int z = q_.zero_point(r, g);
        const float t = d == 0.0f ? 0.0f : w(r, c) * (1.0f / d);
        pass_(r, c) = (t >= static_cast<float>(-z) && t <= static_cast<float>(max_code - z)) ? 1.0f : 0.0f;
      }
    return out;
  }
  // dL/dW from dL/dW_hat (straight-through inside the clipping range, zero outside).
  [[nodiscard]] row_matrix backward(const row_matrix_ref& grad_out) const {
    if (grad_out.rows() != pass_.rows() || grad_out.cols() != pass_.cols())
      throw error(errc::shape_mismatch, "fake_quant::backward: gradient shape differs from the last forward");
    return grad_out.cwiseProduct(pass_);
  }
  // The quantized tensor of the last forward.
  [[nodiscard]] const quantized_tensor& quantized() const noexcept { return q_; }

 private:
  quant_spec spec_;
  quantized_tensor q_;
  row_matrix pass_;
};

// Learned-step-size quantizer for one weight matrix (see the banner).
class lsq_quantizer {
 public:
  // bits in {2, 4, 8}; group: elements per step along a row (0: one step per row). Steps start at
  // 2 mean|W| / sqrt(Qp) over each group, the paper's initialisation.
  lsq_quantizer(const row_matrix_ref& w, int bits, index_t group = 0) : bits_(bits) {
    if (bits != 2 && bits != 4 && bits != 8) throw error(errc::invalid_argument, "lsq_quantizer: bits must be 2, 4 or 8");
    if (w.size() == 0) throw error(errc::empty_input, "lsq_quantizer: empty weight");
    if (group < 0) throw error(errc::invalid_argument, "lsq_quantizer: negative group size");
    if (!w.allFinite()) throw error(errc::non_finite, "lsq_quantizer: non-finite weight");
    group_ = group == 0 ? w.cols() : group;
    rows_ = w.rows();
    cols_ = w.cols();
    const index_t groups = (cols_ + group_ - 1) / group_;
    steps_.resize(rows_, groups);
    for (index_t r = 0; r < rows_; ++r)
      for (index_t g = 0; g < groups; ++g) {
        const index_t c0 = g * group_, n = std::min(cols_, c0 + group_) - c0;
        const float mean_abs = w.row(r).segment(c0, n).cwiseAbs().mean();
        steps_(r, g) = mean_abs > 0.0f ? 2.0f * mean_abs / std::sqrt(static_cast<float>(qp())) : 1e-8f;
      }
  }

  [[nodiscard]] int qn() const noexcept { return -(1 << (bits_ - 1)); }
  [[nodiscard]] int qp() const noexcept { return (1 << (bits_ - 1)) - 1; }
  [[nodiscard]] index_t group() const noexcept { return group_; }
  // The trained step sizes (rows x groups); update them with your optimiser.
  [[nodiscard]] row_matrix& steps() noexcept { return steps_; }
  [[nodiscard]] const row_matrix& steps() const noexcept { return steps_; }

  // W_hat = s * clamp(round(W / s), Qn, Qp) (round half to even).
  [[nodiscard]] row_matrix forward(const row_matrix_ref& w) const {
    check_shape(w, "forward");
    row_matrix out(rows_, cols_);
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c) {
        const float s = steps_(r, c / group_);
        out(r, c) = s * std::clamp(std::nearbyint(w(r, c) / s), static_cast<float>(qn()), static_cast<float>(qp()));
      }
    return out;
  }

  struct gradients {
    row_matrix weight;  // dL/dW
    row_matrix steps;   // dL/ds, with LSQ's gradient scale 1/sqrt(n * Qp)
  };
  // Gradients of L given dL/dW_hat at W (see the banner).
  [[nodiscard]] gradients backward(const row_matrix_ref& w, const row_matrix_ref& grad_out) const {
    check_shape(w, "backward");
    check_shape(grad_out, "backward");
    gradients g{row_matrix::Zero(rows_, cols_), row_matrix::Zero(steps_.rows(), steps_.cols())};
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c) {
        const index_t k = c / group_;
        const float s = steps_(r, k);
        const float v = w(r, c) / s;
        float ds = 0.0f;
        if (v < static_cast<float>(qn())) {
          ds = static_cast<float>(qn());
        } else if (v > static_cast<float>(qp())) {
          ds = static_cast<float>(qp());
        } else {
          ds = std::nearbyint(v) - v;
          g.weight(r, c) = grad_out(r, c);
        }
        g.steps(r, k) += grad_out(r, c) * ds;
      }
    for (index_t r = 0; r < rows_; ++r)
      for (index_t k = 0; k < steps_.cols(); ++k) {
        const index_t n = std::min(cols_, (k + 1) * group_) - k * group_;
        g.steps(r, k) /= std::sqrt(static_cast<float>(n * qp()));
      }
    return g;
  }

  // The trained quantization as a quantized_tensor (symmetric, zero point 2^(bits-1), the steps as
  // scales in `scales`): dequantizes to forward(w) exactly when scales is FP32.
  [[nodiscard]] quantized_tensor to_quantized(const row_matrix_ref& w, scale_type scales = scale_type::fp32) const {
    check_shape(w, "to_quantized");
    quant_spec spec;
    spec.format = bits_ == 2 ? format_id::int2 : bits_ == 4 ? format_id::int4 : format_id::int8;
    spec.scheme = scheme_id::symmetric;
    spec.scales = scales;
    if (group_ == cols_) {
      spec.granularity = granularity_id::per_channel;
    } else {
      spec.granularity = granularity_id::per_group;
      spec.group_size = group_;
    }
    const int z = 1 << (bits_ - 1);
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows_) * row_code_bytes(spec.format, cols_));
    std::vector<std::uint8_t> unpacked(static_cast<std::size_t>(cols_));
    std::vector<std::uint8_t> scale_bytes(static_cast<std::size_t>(steps_.size()) * static_cast<std::size_t>(bytes_of(scales)));
    for (index_t r = 0; r < rows_; ++r) {
      for (index_t k = 0; k < steps_.cols(); ++k) {
        const float s = encode_scale(scales, steps_(r, k),
                                     scale_bytes.data() + static_cast<std::size_t>(r * steps_.cols() + k) * static_cast<std::size_t>(bytes_of(scales)));
        if (!(s > 0.0f) || !std::isfinite(s))
          throw error(errc::not_representable, "lsq_quantizer: step " + std::to_string(steps_(r, k)) + " of row " +
                                                   std::to_string(r) + " is not a positive finite scale");
        const index_t c0 = k * group_, n = std::min(cols_, c0 + group_) - c0;
        for (index_t c = c0; c < c0 + n; ++c)
          unpacked[static_cast<std::size_t>(c)] = static_cast<std::uint8_t>(
              std::clamp(std::nearbyint(w(r, c) / s), static_cast<float>(qn()), static_cast<float>(qp())) + static_cast<float>(z));
      }
      std::uint8_t* out = codes.data() + static_cast<std::size_t>(r) * row_code_bytes(spec.format, cols_);
      if (bits_ == 4)
        ref::pack<4>(unpacked.data(), cols_, out);
      else if (bits_ == 2)
        ref::pack<2>(unpacked.data(), cols_, out);
      else
        std::copy(unpacked.begin(), unpacked.end(), out);
    }
    return {spec, rows_, cols_, std::move(codes), std::move(scale_bytes), {}};
  }

 private:
  void check_shape(const row_matrix_ref& m, const char* what) const {
    if (m.rows() != rows_ || m.cols() != cols_)
      throw error(errc::shape_mismatch, std::string("lsq_quantizer::") + what + ": expected " + std::to_string(rows_) +
                                            "x" + std::to_string(cols_) + ", got " + std::to_string(m.rows()) + "x" +
                                            std::to_string(m.cols()));
  }

  int bits_;
  index_t group_ = 0, rows_ = 0, cols_ = 0;
  row_matrix steps_;
};

}  // namespace mixprec
