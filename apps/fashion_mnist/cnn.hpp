// A small convolutional network for 28x28 grey images, trained in C++ on Eigen: the model of the
// Fashion-MNIST app. Six quantizable layers of two kinds:
//   conv1 (1 -> c1) relu pool2 | conv2 (c1 -> c2) relu pool2 | conv3 (c2 -> c3) relu
//   | fc1 (c3*(side/4)^2 -> f1) relu | fc2 (f1 -> f2) relu | fc3 (f2 -> classes)
// Convolutions are 3x3, stride 1, zero padding 1, computed as im2col + GEMM.
//
// Layout: an activation of C channels over a batch of B images of H x W pixels is a column-major
// C x (B*H*W) matrix whose column b*H*W + y*W + x holds the C channels of one pixel. So im2col copies
// contiguous channel vectors, a convolution's weight columns are ordered (ky, kx, channel), and the
// flattening before fc1 is free: image b's block of H*W columns is one contiguous column of the
// (H*W*C) x B matrix fc1 reads.
//
// Weights are mixprec::row_matrix (outputs x inputs), the form mixprec's quantizers take, so a layer is
// quantized or fake-quantized without reshaping. Besides forward and backward, the network offers the
// exact Hessian-vector product of the loss with respect to one layer's weights: for a ReLU network the
// logits are piecewise linear in any single layer's weights, so that diagonal block of the Hessian is
// J^T H_CE J (the Gauss-Newton block), computed with one tangent pass and one backward pass.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <Eigen/Core>

#include <mixprec/types.hpp>
#include <mixprec/detail/parallel.hpp>
#include <mixprec/error.hpp>

namespace fashion {

using mixprec::index_t;
using mixprec::row_matrix;
using mat = Eigen::MatrixXf;  // activations, column-major

inline constexpr int n_layers = 6;
inline const std::array<std::string, n_layers> layer_names = {"conv1", "conv2", "conv3", "fc1", "fc2", "fc3"};

struct architecture {
  int side = 28;  // input images are side x side, side divisible by 4
  int c1 = 16, c2 = 32, c3 = 64, f1 = 128, f2 = 64, classes = 10;

  friend bool operator==(const architecture&, const architecture&) = default;
};

// Weights and biases of the six layers.
struct parameters {
  architecture arch;
  std::array<row_matrix, n_layers> w;
  std::array<Eigen::VectorXf, n_layers> b;

  [[nodiscard]] index_t weight_count() const {
    index_t n = 0;
    for (const auto& m : w) n += m.size();
    return n;
  }
};

// He-normal weights, zero biases, from a seed.
[[nodiscard]] inline parameters init_parameters(const architecture& a, std::uint64_t seed) {
  if (a.side < 4 || a.side % 4 != 0) throw mixprec::error(mixprec::errc::invalid_argument, "cnn: side must be a positive multiple of 4");
  const int s4 = a.side / 4;
  const std::array<std::pair<int, int>, n_layers> shapes = {{{a.c1, 9 * 1},
                                                             {a.c2, 9 * a.c1},
                                                             {a.c3, 9 * a.c2},
                                                             {a.f1, s4 * s4 * a.c3},
                                                             {a.f2, a.f1},
                                                             {a.classes, a.f2}}};
  parameters p;
  p.arch = a;
  std::mt19937_64 gen(seed);
  for (int l = 0; l < n_layers; ++l) {
    const auto [rows, cols] = shapes[static_cast<std::size_t>(l)];
    std::normal_distribution<float> dist(0.0f, std::sqrt(2.0f / static_cast<float>(cols)));
    p.w[static_cast<std::size_t>(l)].resize(rows, cols);
    for (index_t i = 0; i < p.w[static_cast<std::size_t>(l)].size(); ++i) p.w[static_cast<std::size_t>(l)].data()[i] = dist(gen);
    p.b[static_cast<std::size_t>(l)] = Eigen::VectorXf::Zero(rows);
  }
  return p;
}

namespace detail {

// cols: (9*C) x (B*H*W), rows ordered (ky, kx, c); zero outside the image.
inline void im2col(const mat& in, int channels, int batch, int h, int w, mat& cols) {
  cols.resize(9 * channels, static_cast<index_t>(batch) * h * w);
  const auto c = static_cast<std::size_t>(channels);
  for (int b = 0; b < batch; ++b)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        float* dst = cols.col((static_cast<index_t>(b) * h + y) * w + x).data();
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx, dst += c) {
            const int sy = y + ky - 1, sx = x + kx - 1;
            if (sy < 0 || sy >= h || sx < 0 || sx >= w)
              std::fill(dst, dst + c, 0.0f);
            else
              std::copy_n(in.col((static_cast<index_t>(b) * h + sy) * w + sx).data(), c, dst);
          }
      }
}

// The adjoint of im2col: sums each column entry back into the pixel it was copied from.
inline void col2im(const mat& cols, int channels, int batch, int h, int w, mat& out) {
  out.setZero(channels, static_cast<index_t>(batch) * h * w);
  const auto c = static_cast<index_t>(channels);
  for (int b = 0; b < batch; ++b)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const float* src = cols.col((static_cast<index_t>(b) * h + y) * w + x).data();
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx, src += c) {
            const int sy = y + ky - 1, sx = x + kx - 1;
            if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
            out.col((static_cast<index_t>(b) * h + sy) * w + sx) += Eigen::Map<const Eigen::VectorXf>(src, c);
          }
      }
}

// 2x2 max pooling, stride 2; idx holds, per output entry, the input column it came from.
inline void maxpool(const mat& in, int batch, int h, int w, mat& out, std::vector<index_t>& idx) {
  const int ho = h / 2, wo = w / 2;
  const index_t c = in.rows();
  out.resize(c, static_cast<index_t>(batch) * ho * wo);
  idx.resize(static_cast<std::size_t>(out.size()));
  for (int b = 0; b < batch; ++b)
    for (int y = 0; y < ho; ++y)
      for (int x = 0; x < wo; ++x) {
        const index_t o = (static_cast<index_t>(b) * ho + y) * wo + x;
        const index_t i00 = (static_cast<index_t>(b) * h + 2 * y) * w + 2 * x;
        const std::array<index_t, 4> src = {i00, i00 + 1, i00 + w, i00 + w + 1};
        for (index_t ch = 0; ch < c; ++ch) {
          index_t best = src[0];
          for (int k = 1; k < 4; ++k)
            if (in(ch, src[static_cast<std::size_t>(k)]) > in(ch, best)) best = src[static_cast<std::size_t>(k)];
          out(ch, o) = in(ch, best);
          idx[static_cast<std::size_t>(o * c + ch)] = best;
        }
      }
}

// Routes each output entry of a pooling (gradient or tangent) back (scatter) or forward (gather).
inline void unpool(const mat& d_out, const std::vector<index_t>& idx, index_t in_cols, mat& d_in) {
  d_in.setZero(d_out.rows(), in_cols);
  for (index_t o = 0; o < d_out.cols(); ++o)
    for (index_t ch = 0; ch < d_out.rows(); ++ch) d_in(ch, idx[static_cast<std::size_t>(o * d_out.rows() + ch)]) += d_out(ch, o);
}
inline void gather_pool(const mat& t_in, const std::vector<index_t>& idx, index_t out_cols, mat& t_out) {
  t_out.resize(t_in.rows(), out_cols);
  for (index_t o = 0; o < out_cols; ++o)
    for (index_t ch = 0; ch < t_in.rows(); ++ch) t_out(ch, o) = t_in(ch, idx[static_cast<std::size_t>(o * t_in.rows() + ch)]);
}

inline void relu(mat& m) { m = m.cwiseMax(0.0f); }
// g *= (a > 0), a the ReLU's output.
inline void relu_mask(const mat& a, mat& g) { g = (a.array() > 0.0f).select(g, 0.0f); }

}  // namespace detail

// Gradients (or any per-parameter quantity) in the parameters' shapes.
struct gradients {
  std::array<row_matrix, n_layers> w;
  std::array<Eigen::VectorXf, n_layers> b;

  void zero_like(const parameters& p) {
    for (std::size_t l = 0; l < n_layers; ++l) {
      w[l].setZero(p.w[l].rows(), p.w[l].cols());
      b[l].setZero(p.b[l].size());
    }
  }
  gradients& operator+=(const gradients& o) {
    for (std::size_t l = 0; l < n_layers; ++l) {
      w[l] += o.w[l];
      b[l] += o.b[l];
    }
    return *this;
  }
};

// One forward pass over a batch, keeping what backward and the tangent pass need.
class pass {
 public:
  // images: B x side^2 (one image per row, pixels in [0, 1]); returns the logits, classes x B.
  const mat& forward(const parameters& p, const Eigen::Ref<const row_matrix>& images) {
    const architecture& a = p.arch;
    batch_ = static_cast<int>(images.rows());
    const int s = a.side, s2 = s / 2, s4 = s / 4;
    if (images.cols() != static_cast<index_t>(s) * s)
      throw mixprec::error(mixprec::errc::shape_mismatch, "cnn: images have " + std::to_string(images.cols()) +
                                                              " pixels, the network takes " + std::to_string(s * s));
    // The input as 1 x (B*s*s), pixel order (a row-major image is already in that order).
    x0_.resize(1, images.size());
    for (index_t r = 0; r < images.rows(); ++r) x0_.middleCols(r * images.cols(), images.cols()) = images.row(r);
    conv(p, 0, x0_, 1, s, s, a1_);
    detail::maxpool(a1_, batch_, s, s, p1_, idx1_);
    conv(p, 1, p1_, a.c1, s2, s2, a2_);
    detail::maxpool(a2_, batch_, s2, s2, p2_, idx2_);
    conv(p, 2, p2_, a.c2, s4, s4, a3_);
    flat_ = Eigen::Map<const mat>(a3_.data(), static_cast<index_t>(a.c3) * s4 * s4, batch_);
    fc(p, 3, flat_, a4_, true);
    fc(p, 4, a4_, a5_, true);
    fc(p, 5, a5_, logits_, false);
    return logits_;
  }

  [[nodiscard]] const mat& logits() const noexcept { return logits_; }
  [[nodiscard]] int batch() const noexcept { return batch_; }

  // The layer's input as the GEMM sees it: im2col columns for a convolution, activations for fc.
  [[nodiscard]] const mat& layer_input(int l) const { return l < 3 ? cols_[static_cast<std::size_t>(l)] : l == 3 ? flat_ : l == 4 ? a4_ : a5_; }

  // Gradients of the loss whose gradient with respect to the logits is d_logits (classes x B), for
  // every layer at or above `lowest` (the others are left untouched).
  void backward(const parameters& p, const mat& d_logits, gradients& g, int lowest = 0) const {
    const architecture& a = p.arch;
    const int s = a.side, s2 = s / 2, s4 = s / 4;
    mat d = d_logits, din;
    for (int l = 5; l >= 3; --l) {
      const auto L = static_cast<std::size_t>(l);
      g.w[L].noalias() = d * layer_input(l).transpose();
      g.b[L] = d.rowwise().sum();
      if (l == lowest) return;
      din.noalias() = p.w[L].transpose() * d;
      if (l > 3) detail::relu_mask(l == 5 ? a5_ : a4_, din);
      d.swap(din);
    }
    // d is the gradient of the flattened conv3 output: view it as c3 x (B*s4*s4).
    mat d3 = Eigen::Map<const mat>(d.data(), a.c3, static_cast<index_t>(batch_) * s4 * s4);
    detail::relu_mask(a3_, d3);
    conv_backward(p, 2, d3, a.c2, s4, s4, g, din);
    if (lowest == 2) return;
    mat d2;
    detail::unpool(din, idx2_, static_cast<index_t>(batch_) * s2 * s2, d2);
    detail::relu_mask(a2_, d2);
    conv_backward(p, 1, d2, a.c1, s2, s2, g, din);
    if (lowest == 1) return;
    mat d1;
    detail::unpool(din, idx1_, static_cast<index_t>(batch_) * s * s, d1);
    detail::relu_mask(a1_, d1);
    const auto& c0 = cols_[0];
    g.w[0].noalias() = d1 * c0.transpose();
    g.b[0] = d1.rowwise().sum();
  }

  // The tangent of the logits when layer l's weights move along v (same shape as W_l), the other
  // parameters and the ReLU/pooling patterns of the last forward held fixed.
  [[nodiscard]] mat tangent(const parameters& p, int l, const row_matrix& v) const {
    const architecture& a = p.arch;
    const int s = a.side, s2 = s / 2, s4 = s / 4;
    mat t = v * layer_input(l), tmp, cols;
    if (l <= 0) {
      detail::relu_mask(a1_, t);
      detail::gather_pool(t, idx1_, static_cast<index_t>(batch_) * s2 * s2, tmp);
      detail::im2col(tmp, a.c1, batch_, s2, s2, cols);
      t.noalias() = p.w[1] * cols;
    }
    if (l <= 1) {
      detail::relu_mask(a2_, t);
      detail::gather_pool(t, idx2_, static_cast<index_t>(batch_) * s4 * s4, tmp);
      detail::im2col(tmp, a.c2, batch_, s4, s4, cols);
      t.noalias() = p.w[2] * cols;
    }
    if (l <= 2) {
      detail::relu_mask(a3_, t);
      tmp = Eigen::Map<const mat>(t.data(), static_cast<index_t>(a.c3) * s4 * s4, batch_);
      t.noalias() = p.w[3] * tmp;
    }
    if (l <= 3) {
      detail::relu_mask(a4_, t);
      tmp.noalias() = p.w[4] * t;
      t.swap(tmp);
    }
    if (l <= 4) {
      detail::relu_mask(a5_, t);
      tmp.noalias() = p.w[5] * t;
      t.swap(tmp);
    }
    return t;
  }

 private:
  void conv(const parameters& p, int l, const mat& in, int channels, int h, int w, mat& out) {
    auto& cols = cols_[static_cast<std::size_t>(l)];
    detail::im2col(in, channels, batch_, h, w, cols);
    out.noalias() = p.w[static_cast<std::size_t>(l)] * cols;
    out.colwise() += p.b[static_cast<std::size_t>(l)];
    detail::relu(out);
  }
  void fc(const parameters& p, int l, const mat& in, mat& out, bool relu) {
    out.noalias() = p.w[static_cast<std::size_t>(l)] * in;
    out.colwise() += p.b[static_cast<std::size_t>(l)];
    if (relu) detail::relu(out);
  }
  // d: gradient of the conv's pre-activation output; din: gradient of its input.
  void conv_backward(const parameters& p, int l, const mat& d, int channels, int h, int w, gradients& g, mat& din) const {
    const auto L = static_cast<std::size_t>(l);
    g.w[L].noalias() = d * cols_[L].transpose();
    g.b[L] = d.rowwise().sum();
    mat dcols;
    dcols.noalias() = p.w[L].transpose() * d;
    detail::col2im(dcols, channels, batch_, h, w, din);
  }

  int batch_ = 0;
  mat x0_, a1_, p1_, a2_, p2_, a3_, flat_, a4_, a5_, logits_;
  std::array<mat, 3> cols_;
  std::vector<index_t> idx1_, idx2_;
};

// Softmax probabilities of logits (classes x B), column by column.
[[nodiscard]] inline mat softmax(const mat& logits) {
  mat p = logits;
  for (index_t j = 0; j < p.cols(); ++j) {
    const float m = p.col(j).maxCoeff();
    p.col(j) = (p.col(j).array() - m).exp();
    p.col(j) /= p.col(j).sum();
  }
  return p;
}

// Mean cross-entropy of a batch and its gradient with respect to the logits, scaled by `weight`
// (a shard's share of the whole batch), with labels[j] the class of column j.
inline double cross_entropy(const mat& logits, std::span<const std::uint8_t> labels, float weight, mat& d_logits) {
  const mat p = softmax(logits);
  d_logits = p;
  double loss = 0.0;
  const auto n = static_cast<float>(logits.cols());
  for (index_t j = 0; j < logits.cols(); ++j) {
    const auto y = static_cast<index_t>(labels[static_cast<std::size_t>(j)]);
    loss -= std::log(std::max(static_cast<double>(p(y, j)), 1e-30));
    d_logits(y, j) -= 1.0f;
  }
  d_logits *= weight / n;
  return loss / static_cast<double>(n);
}

// One Adam step (Kingma and Ba 2015) for one parameter array: t is the 1-based step count.
struct adam_hyper {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};
template <class Param, class Grad, class Moment>
void adam_update(Param& param, const Grad& grad, Moment& m, Moment& v, long t, const adam_hyper& h) {
  const float c1 = 1.0f - std::pow(h.beta1, static_cast<float>(t)), c2 = 1.0f - std::pow(h.beta2, static_cast<float>(t));
  m = h.beta1 * m + (1.0f - h.beta1) * grad;
  v = h.beta2 * v + (1.0f - h.beta2) * grad.cwiseAbs2();
  param.array() -= h.lr * (m.array() / c1) / ((v.array() / c2).sqrt() + h.eps);
}

// Adam over all weights and biases.
class adam {
 public:
  adam_hyper hyper;

  explicit adam(const parameters& p) {
    m_.zero_like(p);
    v_.zero_like(p);
  }
  void step(parameters& p, const gradients& g) {
    ++t_;
    for (std::size_t l = 0; l < n_layers; ++l) {
      adam_update(p.w[l], g.w[l], m_.w[l], v_.w[l], t_, hyper);
      adam_update(p.b[l], g.b[l], m_.b[l], v_.b[l], t_, hyper);
    }
  }

 private:
  gradients m_, v_;
  long t_ = 0;
};

// Work split into a fixed number of shards (so results do not depend on the core count), run on up to
// that many threads by the library's pool (an exception in a shard reaches the caller).
inline constexpr int shards = 2;

template <class F>
void run_shards(int threads, F&& f) {
  const unsigned workers = mixprec::detail::worker_count(static_cast<unsigned>(std::max(1, threads)), shards);
  mixprec::detail::parallel_for(shards, workers, [&](std::size_t s, unsigned) { f(static_cast<int>(s)); });
}

[[nodiscard]] inline int default_threads() { return static_cast<int>(std::max(1u, std::min<unsigned>(shards, std::thread::hardware_concurrency()))); }

// The loss and its gradient over a batch (rows of images), computed in shards.
inline double loss_and_gradient(const parameters& p, const Eigen::Ref<const row_matrix>& images,
                                std::span<const std::uint8_t> labels, gradients& g, int threads = default_threads()) {
  const index_t n = images.rows();
  std::array<gradients, shards> part;
  std::array<double, shards> loss{};
  run_shards(threads, [&](int s) {
    const index_t b0 = n * s / shards, b1 = n * (s + 1) / shards;
    const auto S = static_cast<std::size_t>(s);
    part[S].zero_like(p);
    if (b1 == b0) return;
    pass fw;
    const mat& logits = fw.forward(p, images.middleRows(b0, b1 - b0));
    mat d;
    loss[S] = cross_entropy(logits, labels.subspan(static_cast<std::size_t>(b0), static_cast<std::size_t>(b1 - b0)),
                            static_cast<float>(b1 - b0) / static_cast<float>(n), d) *
              static_cast<double>(b1 - b0) / static_cast<double>(n);
    fw.backward(p, d, part[S]);
  });
  g = part[0];
  double total = loss[0];
  for (std::size_t s = 1; s < shards; ++s) {
    g += part[s];
    total += loss[s];
  }
  return total;
}

// The logits (classes x N) of every image (row of `images`), in chunks of `chunk` images.
[[nodiscard]] inline mat logits_of(const parameters& p, const row_matrix& images, int threads = default_threads(), index_t chunk = 500) {
  if (images.rows() == 0) throw mixprec::error(mixprec::errc::empty_input, "logits_of: no images");
  mat out(p.arch.classes, images.rows());
  run_shards(threads, [&](int s) {
    const index_t n = images.rows(), b0 = n * s / shards, b1 = n * (s + 1) / shards;
    pass fw;
    for (index_t c = b0; c < b1; c += chunk) {
      const index_t m = std::min(chunk, b1 - c);
      out.middleCols(c, m) = fw.forward(p, images.middleRows(c, m));
    }
  });
  return out;
}

// Fraction of columns of logits whose largest entry is the label.
[[nodiscard]] inline double accuracy_of(const mat& logits, std::span<const std::uint8_t> labels) {
  if (logits.cols() == 0 || static_cast<std::size_t>(logits.cols()) != labels.size())
    throw mixprec::error(mixprec::errc::shape_mismatch, "accuracy: logits and labels differ in count or are empty");
  index_t correct = 0;
  for (index_t j = 0; j < logits.cols(); ++j) {
    index_t arg = 0;
    logits.col(j).maxCoeff(&arg);
    correct += arg == labels[static_cast<std::size_t>(j)] ? 1 : 0;
  }
  return static_cast<double>(correct) / static_cast<double>(logits.cols());
}

// Fraction of images classified correctly.
[[nodiscard]] inline double accuracy(const parameters& p, const row_matrix& images, std::span<const std::uint8_t> labels,
                                     int threads = default_threads()) {
  if (static_cast<std::size_t>(images.rows()) != labels.size())
    throw mixprec::error(mixprec::errc::shape_mismatch, "accuracy: images and labels differ in count");
  return accuracy_of(logits_of(p, images, threads), labels);
}

// H v for the mean cross-entropy over `images` with respect to layer l's weights, v and the result
// flattened row-major (see the banner: exact for this network, away from the ReLU/pooling kinks).
class layer_hvp {
 public:
  // The Hessian of the cross-entropy with respect to the logits does not depend on the labels.
  layer_hvp(const parameters& p, int layer, row_matrix images) : p_(p), layer_(layer), images_(std::move(images)) {
    if (layer < 0 || layer >= n_layers) throw mixprec::error(mixprec::errc::invalid_argument, "layer_hvp: no layer " + std::to_string(layer));
    for (int s = 0; s < shards; ++s) {
      const index_t n = images_.rows(), b0 = n * s / shards, b1 = n * (s + 1) / shards;
      passes_[static_cast<std::size_t>(s)].forward(p_, images_.middleRows(b0, b1 - b0));
      probs_[static_cast<std::size_t>(s)] = softmax(passes_[static_cast<std::size_t>(s)].logits());
    }
  }

  void operator()(const Eigen::VectorXd& v, Eigen::VectorXd& hv) {
    const auto L = static_cast<std::size_t>(layer_);
    const row_matrix dir = Eigen::Map<const row_matrix>(v.cast<float>().eval().data(), p_.w[L].rows(), p_.w[L].cols());
    std::array<gradients, shards> part;
    const auto n = static_cast<float>(images_.rows());
    run_shards(threads, [&](int s) {
      const auto S = static_cast<std::size_t>(s);
      const pass& fw = passes_[S];
      if (fw.batch() == 0) return;
      const mat t = fw.tangent(p_, layer_, dir);
      const mat& pr = probs_[S];
      // H_CE t per image: p * t - p (p . t); the mean over the whole batch.
      mat u = pr.cwiseProduct(t);
      const Eigen::RowVectorXf pt = u.colwise().sum();
      u -= pr * pt.asDiagonal();
      u /= n;
      part[S].zero_like(p_);
      fw.backward(p_, u, part[S], layer_);
    });
    row_matrix sum = part[0].w[L];
    for (std::size_t s = 1; s < shards; ++s)
      if (part[s].w[L].size() != 0) sum += part[s].w[L];
    hv = Eigen::Map<const Eigen::VectorXf>(sum.data(), sum.size()).cast<double>();
  }

  int threads = default_threads();

 private:
  const parameters& p_;
  int layer_;
  row_matrix images_;
  std::array<pass, shards> passes_;
  std::array<mat, shards> probs_;
};

// Rows `order[first .. first+n)` of images and labels, gathered into a batch.
inline void gather_batch(const row_matrix& images, std::span<const std::uint8_t> labels, std::span<const index_t> order,
                         row_matrix& x, std::vector<std::uint8_t>& y) {
  x.resize(static_cast<index_t>(order.size()), images.cols());
  y.resize(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    x.row(static_cast<index_t>(i)) = images.row(order[i]);
    y[i] = labels[static_cast<std::size_t>(order[i])];
  }
}

struct train_options {
  int epochs = 4;
  index_t batch = 128;
  float lr = 2e-3f;          // peak; cosine decay to lr/20 over the run
  std::uint64_t seed = 1;    // shuffling (initialisation has its own seed)
  int threads = default_threads();
};

// The learning rate at step t of `total` under train_options' schedule.
[[nodiscard]] inline float cosine_lr(float peak, long t, long total) {
  const double pi = 3.141592653589793;
  const double f = total > 1 ? static_cast<double>(t) / static_cast<double>(total - 1) : 1.0;
  return static_cast<float>(peak * (0.05 + 0.95 * 0.5 * (1.0 + std::cos(pi * f))));
}

// Mini-batch Adam on the cross-entropy; on_step(epoch, step, steps_per_epoch, loss) after every step.
template <class OnStep>
void train(parameters& p, const row_matrix& images, std::span<const std::uint8_t> labels, const train_options& o, OnStep&& on_step) {
  if (images.rows() == 0 || static_cast<std::size_t>(images.rows()) != labels.size())
    throw mixprec::error(mixprec::errc::shape_mismatch, "train: images and labels differ in count or are empty");
  if (o.epochs < 1 || o.batch < 1) throw mixprec::error(mixprec::errc::invalid_argument, "train: epochs and batch must be >= 1");
  std::mt19937_64 gen(o.seed);
  std::vector<index_t> order(static_cast<std::size_t>(images.rows()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<index_t>(i);
  const index_t steps = images.rows() / o.batch;  // the last partial batch of each epoch is dropped
  adam opt(p);
  row_matrix x;
  std::vector<std::uint8_t> y;
  gradients g;
  long t = 0;
  for (int e = 0; e < o.epochs; ++e) {
    std::shuffle(order.begin(), order.end(), gen);
    for (index_t s = 0; s < steps; ++s, ++t) {
      gather_batch(images, labels, std::span<const index_t>(order).subspan(static_cast<std::size_t>(s * o.batch), static_cast<std::size_t>(o.batch)), x, y);
      const double loss = loss_and_gradient(p, x, y, g, o.threads);
      opt.hyper.lr = cosine_lr(o.lr, t, static_cast<long>(o.epochs) * steps);
      opt.step(p, g);
      on_step(e, s, steps, loss);
    }
  }
}

// Trained weights on disk: "MXCNN001", then int32 side, c1, c2, c3, f1, f2, classes, then per layer
// int64 rows, int64 cols, rows*cols floats (row-major), rows floats of bias; little-endian.
inline void save(const parameters& p, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw mixprec::error(mixprec::errc::io_error, "cannot write '" + path + "'");
  f.write("MXCNN001", 8);
  const architecture& a = p.arch;
  for (std::int32_t v : {a.side, a.c1, a.c2, a.c3, a.f1, a.f2, a.classes}) f.write(reinterpret_cast<const char*>(&v), 4);
  for (std::size_t l = 0; l < n_layers; ++l) {
    const std::int64_t rows = p.w[l].rows(), cols = p.w[l].cols();
    f.write(reinterpret_cast<const char*>(&rows), 8);
    f.write(reinterpret_cast<const char*>(&cols), 8);
    f.write(reinterpret_cast<const char*>(p.w[l].data()), static_cast<std::streamsize>(sizeof(float) * static_cast<std::size_t>(p.w[l].size())));
    f.write(reinterpret_cast<const char*>(p.b[l].data()), static_cast<std::streamsize>(sizeof(float) * static_cast<std::size_t>(rows)));
  }
  if (!f) throw mixprec::error(mixprec::errc::io_error, "writing '" + path + "' failed");
}

// Reads what save wrote, checking every shape against the architecture it names.
[[nodiscard]] inline parameters load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw mixprec::error(mixprec::errc::io_error, "cannot open '" + path + "'");
  auto fail = [&](const std::string& what) { return mixprec::error(mixprec::errc::parse_error, "'" + path + "': " + what); };
  char magic[8] = {};
  if (!f.read(magic, 8) || std::string(magic, 8) != "MXCNN001") throw fail("not a mixprec CNN weight file");
  std::array<std::int32_t, 7> v{};
  for (auto& x : v)
    if (!f.read(reinterpret_cast<char*>(&x), 4)) throw fail("truncated header");
  for (auto x : v)
    if (x < 1 || x > 4096) throw fail("absurd architecture");
  parameters p = init_parameters({v[0], v[1], v[2], v[3], v[4], v[5], v[6]}, 0);
  for (std::size_t l = 0; l < n_layers; ++l) {
    std::int64_t rows = 0, cols = 0;
    if (!f.read(reinterpret_cast<char*>(&rows), 8) || !f.read(reinterpret_cast<char*>(&cols), 8)) throw fail("truncated");
    if (rows != p.w[l].rows() || cols != p.w[l].cols()) throw fail("layer " + layer_names[l] + " has the wrong shape");
    f.read(reinterpret_cast<char*>(p.w[l].data()), static_cast<std::streamsize>(sizeof(float) * static_cast<std::size_t>(p.w[l].size())));
    f.read(reinterpret_cast<char*>(p.b[l].data()), static_cast<std::streamsize>(sizeof(float) * static_cast<std::size_t>(rows)));
    if (!f) throw fail("truncated in layer " + layer_names[l]);
    if (!p.w[l].allFinite() || !p.b[l].allFinite()) throw fail("non-finite weights in layer " + layer_names[l]);
  }
  if (f.peek() != std::char_traits<char>::eof()) throw fail("trailing bytes");
  return p;
}

}  // namespace fashion
