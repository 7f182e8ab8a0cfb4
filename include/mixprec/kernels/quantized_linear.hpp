// quantized_linear: a linear layer y = Q(W) x + b run by the fused kernels (gemv.hpp), built from a
// weight and one quantizer spec (what one entry of a mixed-precision plan says). Its gemv_options
// (threads, activations) are set once per layer: by default (activation_type::automatic) llama.cpp's
// block types take their activations quantized as ggml does and every other format FP32; INT4/INT8
// weights can instead take them quantized to INT8 per token with integer dot products (faster, at the
// cost of an activation rounding error).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>

#include "mixprec/kernels/gemv.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace mixprec {

class quantized_linear {
 public:
  quantized_linear() = default;
  // Quantizes w (out x in) by spec; bias, when given, has w.rows() entries.
  quantized_linear(const row_matrix_ref& w, const quant_spec& spec, std::optional<Eigen::VectorXf> bias = std::nullopt,
                   std::string name = "linear")
      : name_(std::move(name)), weight_(quantize(w, spec, name_)), bias_(std::move(bias)) {
    check_bias();
  }
  // Wraps an already quantized weight.
  explicit quantized_linear(quantized_tensor w, std::optional<Eigen::VectorXf> bias = std::nullopt,
                            std::string name = "linear")
      : name_(std::move(name)), weight_(std::move(w)), bias_(std::move(bias)) {
    check_bias();
  }

  [[nodiscard]] index_t in_features() const noexcept { return weight_.cols(); }
  [[nodiscard]] index_t out_features() const noexcept { return weight_.rows(); }
  [[nodiscard]] const quantized_tensor& weight() const noexcept { return weight_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const gemv_options& options() const noexcept { return options_; }
  // Sets the threads and the activation path of every forward; activations int8 needs INT4 or INT8
  // weights (else mixprec::error, unsupported, naming the layer; the options stay as they were).
  quantized_linear& set_options(const gemv_options& o) {
    if (o.activations == activation_type::int8) {
      try {
        (void)make_q8_layout(weight_);  // throws for other formats
      } catch (const error& e) {
        throw e.in_context("quantized_linear '" + name_ + "'");
      }
    }
    options_ = o;
    return *this;
  }
  // Storage of the weight (codes, scales, zero points) plus the FP32 bias.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return weight_.bytes() + (bias_ ? static_cast<std::size_t>(bias_->size()) * sizeof(float) : 0);
  }

  // y = Q(W) x + b for one vector (x: in_features floats, y: out_features; else mixprec::error).
  void forward(std::span<const float> x, std::span<float> y) const {
    gemv(weight_, x, y, options_);
    if (bias_)
      for (index_t r = 0; r < out_features(); ++r) y[r] += (*bias_)[r];
  }
  // Y = X Q(W)^T + b for a batch (one activation row per token).
  [[nodiscard]] row_matrix forward(const Eigen::Ref<const row_matrix>& x) const {
    if (x.cols() != in_features())
      throw error(errc::shape_mismatch, "quantized_linear '" + name_ + "': input has " + std::to_string(x.cols()) +
                                            " features, expected " + std::to_string(in_features()));
    row_matrix y(x.rows(), out_features());
    gemm(weight_, x, y, options_);
    if (bias_) y.rowwise() += bias_->transpose();
    return y;
  }

 private:
  void check_bias() const {
    if (bias_ && bias_->size() != weight_.rows())
      throw error(errc::shape_mismatch, "quantized_linear '" + name_ + "': bias has " + std::to_string(bias_->size()) +
                                            " entries, expected " + std::to_string(weight_.rows()));
  }

  std::string name_;
  quantized_tensor weight_;
  std::optional<Eigen::VectorXf> bias_;
  gemv_options options_;
};

}  // namespace mixprec
