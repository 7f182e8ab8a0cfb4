// The blocks transformer graphs share, forward and backward side by side, for the engines in models/
// (llama/engine.hpp runs them, llama/backward.hpp differentiates them): RMSNorm (of the rows of a
// matrix, of each head), RoPE with llama.cpp's rope cache, and a softmax. FP32 throughout; each
// forward here is the one numerics of its block (the engine's results against llama.cpp's depend on it,
// tests/interop/llama_arch_test.cpp), and each backward is exact for it.
//
// RMSNorm (Zhang & Sennrich 2019, as ggml_rms_norm followed by a multiply by the gain):
//   n = x / sqrt(mean(x^2) + eps) .* g
// and with r = 1 / sqrt(mean(x^2) + eps) its backward
//   dg += r x .* dn;   dx = r (g .* dn) - x r^3 <g .* dn, x> / n
// RoPE (Su et al. 2021, RoFormer): pair i of each head, i < dims / 2, rotated by the angle
//   p * freq_scale / f_i * theta^(-2i / dims)
// (f_i the file's rope_freqs factors, else 1); the pair is the values (2i, 2i+1) in llama.cpp's NORM
// mode and (i, i + dims / 2) in its NEOX mode. Its backward is the transpose: the same pairs rotated by
// minus the angle.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "mixprec/types.hpp"

namespace mixprec::models {

// ---- RMSNorm ----

// r = 1 / sqrt(mean(x^2) + eps) of x[0..n), in ggml_rms_norm's arithmetic (ggml-cpu/ops.cpp): the
// squares in FP32 summed in double in order, the mean rounded to FP32, then 1.0f / sqrtf. The norms
// below then compute (x * r) * gain, as llama.cpp's graph does (ggml_rms_norm, then ggml_mul), so that
// their values are llama.cpp's bit for bit.
[[nodiscard]] inline float rms_scale(const float* x, index_t n, float eps) noexcept {
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const auto mean = static_cast<float>(sum / static_cast<double>(n));
  return 1.0f / std::sqrt(mean + eps);
}

// Each row of x (T x dim) normed and times gain (dim).
[[nodiscard]] inline row_matrix rms_norm_rows(const row_matrix& x, const Eigen::VectorXf& gain, float eps) {
  row_matrix out(x.rows(), x.cols());
  for (index_t p = 0; p < x.rows(); ++p)
    out.row(p) = (x.row(p) * rms_scale(&x(p, 0), x.cols(), eps)).cwiseProduct(gain.transpose());
  return out;
}

// The backward of rms_norm_rows: dL/dx (T x dim) from dn = dL/dn (T x dim); adds dL/dgain into dgain
// (sized and zeroed here when it is not dim long).
[[nodiscard]] inline row_matrix rms_norm_rows_backward(const row_matrix& x, const Eigen::VectorXf& gain, const row_matrix& dn,
                                                       Eigen::VectorXf& dgain, float eps) {
  const index_t dim = x.cols();
  if (dgain.size() != dim) dgain = Eigen::VectorXf::Zero(dim);
  row_matrix dx(x.rows(), dim);
  for (index_t p = 0; p < x.rows(); ++p) {
    const float r = rms_scale(&x(p, 0), dim, eps);  // as the forward computes it
    const Eigen::RowVectorXf gdn = dn.row(p).cwiseProduct(gain.transpose());
    dgain += (dn.row(p).cwiseProduct(x.row(p)) * r).transpose();
    const float dot = gdn.dot(x.row(p));
    dx.row(p) = gdn * r - x.row(p) * (r * r * r * dot / static_cast<float>(dim));
  }
  return dx;
}

// RMSNorm of each of `heads` heads of vec (gain.size() values each) times gain, in place ("qwen3"'s
// attn_q_norm / attn_k_norm); nothing when gain is empty.
inline void head_rms_norm(float* vec, int heads, const Eigen::VectorXf& gain, float eps) {
  if (!gain.size()) return;
  for (int h = 0; h < heads; ++h) {
    Eigen::Map<Eigen::VectorXf> x(vec + h * gain.size(), gain.size());
    x = (x * rms_scale(x.data(), x.size(), eps)).cwiseProduct(gain);
  }
}

// The backward of head_rms_norm on T rows: x (T x heads * head_size) the values before the norm, dy
// their gradient after it, turned into the gradient before it in place; adds dL/dgain into dgain (sized
// and zeroed here when it is not head_size long).
inline void head_rms_norm_backward(const row_matrix& x, const Eigen::VectorXf& gain, row_matrix& dy, Eigen::VectorXf& dgain, float eps) {
  const index_t hs = gain.size();
  if (dgain.size() != hs) dgain = Eigen::VectorXf::Zero(hs);
  for (index_t p = 0; p < x.rows(); ++p)
    for (index_t h = 0; h * hs < x.cols(); ++h) {
      const auto xs = x.row(p).segment(h * hs, hs);
      auto d = dy.row(p).segment(h * hs, hs);
      const float r = rms_scale(&x(p, h * hs), hs, eps);  // as head_rms_norm
      const Eigen::RowVectorXf gd = d.cwiseProduct(gain.transpose());
      dgain += (d.cwiseProduct(xs) * r).transpose();
      const float dot = gd.dot(xs);
      d = gd * r - xs * (r * r * r * dot / static_cast<float>(hs));
    }
}

// ---- softmax ----

// x[0..n) becomes softmax(x) in place (max subtracted first); n >= 1.
inline void softmax_in_place(float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

// ---- RoPE ----

// The rotation angles of one position, shared by every head and layer, and the rotation itself.
class rope_cache {
 public:
  enum class mode { norm, neox };  // llama.cpp's LLAMA_ROPE_TYPE_NORM and _NEOX

  rope_cache() = default;
  // dims: the rotated values of a head (even); theta: the frequency base; freq_scale: 1 / the linear
  // scaling factor; factors: dims / 2 divisors of the pairs' frequencies, or empty.
  rope_cache(int dims, float theta, float freq_scale, mode m, Eigen::VectorXf factors = {})
      : n_pairs_(static_cast<std::size_t>(dims / 2)), freq_scale_(freq_scale), mode_(m), factors_(std::move(factors)),
        theta_scale_(std::pow(theta, -2.0f / static_cast<float>(dims))), cos_(n_pairs_), sin_(n_pairs_) {}

  // The angles of position pos, computed as ggml's rope cache computes them (ggml-cpu's
  // ggml_rope_cache_init: pos times theta_scale = theta^(-2 / dims), i times over, in FP32), so that
  // they are llama.cpp's to the last bit (a pow per pair differs in the last bits, enough to turn a few
  // activations to the next 8-bit code in quantized products).
  void set(int pos) {
    float theta = static_cast<float>(pos);
    for (std::size_t i = 0; i < n_pairs_; ++i, theta *= theta_scale_) {
      const float ff = factors_.size() ? factors_[static_cast<index_t>(i)] : 1.0f;
      const float val = theta / ff * freq_scale_;
      cos_[i] = std::cos(val);
      sin_[i] = std::sin(val);
    }
  }

  // Rotates pair i of each of `heads` heads of vec (head_size values each) by the angles set() chose;
  // sign -1 rotates backwards (the transpose, for the backward pass).
  void rotate(float* vec, int heads, int head_size, float sign = 1.0f) const {
    const bool neox = mode_ == mode::neox;
    for (int h = 0; h < heads; ++h) {
      float* p = vec + h * head_size;
      for (std::size_t i = 0; i < n_pairs_; ++i) {
        float& a = p[neox ? i : 2 * i];
        float& b = p[neox ? i + n_pairs_ : 2 * i + 1];
        const float v0 = a, v1 = b, s = sign * sin_[i];
        a = v0 * cos_[i] - v1 * s;
        b = v0 * s + v1 * cos_[i];
      }
    }
  }

 private:
  std::size_t n_pairs_ = 0;
  float freq_scale_ = 1.0f;
  mode mode_ = mode::norm;
  Eigen::VectorXf factors_;
  float theta_scale_ = 1.0f;
  std::vector<float> cos_, sin_;
};

}  // namespace mixprec::models
