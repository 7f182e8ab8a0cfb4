// layer: the one view of a quantizable layer of a user's model, shared by every part of the library
// (sensitivity/ analyses and the probe, plan/'s shapes_of and quantize_model, io/imatrix's importance):
// a name, the user's row-major FP32 weight (no copy) and optional calibration statistics of the layer's
// input. Through a const layer the library only reads the weight (weight() const is a read-only map);
// only code given a mutable layer (the probe, through std::span<layer>) writes it. (`data` itself is a
// plain float*, so that a layer can be built over any buffer.) model.hpp lists layers.
//
// The statistics serve the output-aware error proxy
//   ||W X - Q(W) X||_F^2 = trace(E G E^T),  E = Q(W) - W,  G = X X^T.
//
// Activations X are in_features x tokens, one token per column, column-major (W X is the layer's
// output, out_features x tokens). That is byte for byte the tokens x in_features row-major buffer that
// frameworks produce, so such a buffer is used as it is:
//   Eigen::Map<const Eigen::MatrixXf> x(acts.data(), in_features, tokens);
// A layer carries at most one statistic (pick by cost; n = out_features, m = in_features, t = tokens):
// - gram:        G = X X^T (m x m, double), from gram_from_activations or a gram_accumulator over
//                batches; the proxy costs n m^2 per candidate whatever t is, and q/k/v projections that
//                read the same input can share one G (it is held by shared_ptr);
// - activations: X itself (user-owned, not copied); the proxy costs n m t per candidate;
// - importance:  diag(G) (an llama.cpp imatrix-style vector, m entries); the proxy becomes
//                sum_ij E_ij^2 d_j, costing n m (exact only when the features are uncorrelated).
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>

#include <Eigen/Core>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"

namespace mixprec {

// Which calibration statistic a layer carries.
enum class layer_statistic { none, gram, activations, importance };

struct layer {
  using weight_map = Eigen::Map<row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  using const_weight_map = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  using activation_map = Eigen::Map<const Eigen::MatrixXf>;

  std::string name;
  float* data = nullptr;  // element (0, 0) of the user's weight (out_features x in_features, row-major)
  index_t rows = 0;       // out_features
  index_t cols = 0;       // in_features
  index_t stride = 0;     // floats from one row start to the next; 0 means cols (a dense matrix)

  std::shared_ptr<const Eigen::MatrixXd> gram;        // G = X X^T, cols x cols
  std::shared_ptr<const Eigen::VectorXd> importance;  // diag(G), cols entries
  const float* activations = nullptr;                 // X, cols x tokens, column-major (user-owned)
  index_t tokens = 0;

  // The weight, mapped onto the user's memory: read-only through a const layer, writable otherwise.
  [[nodiscard]] const_weight_map weight() const { return {data, rows, cols, Eigen::OuterStride<>(row_stride())}; }
  [[nodiscard]] weight_map weight() { return {data, rows, cols, Eigen::OuterStride<>(row_stride())}; }
  // X mapped onto the user's memory (0 x 0 when the layer has no activations).
  [[nodiscard]] activation_map activation_matrix() const {
    return activations ? activation_map(activations, cols, tokens) : activation_map(nullptr, 0, 0);
  }
  [[nodiscard]] index_t row_stride() const noexcept { return stride ? stride : cols; }
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
  // The statistic set (validate() rejects more than one).
  [[nodiscard]] layer_statistic statistic() const noexcept {
    if (gram) return layer_statistic::gram;
    if (activations) return layer_statistic::activations;
    if (importance) return layer_statistic::importance;
    return layer_statistic::none;
  }

  // Attaches G = X X^T (shared: one G can serve every layer reading the same input).
  layer& with_gram(std::shared_ptr<const Eigen::MatrixXd> g) {
    gram = std::move(g);
    return *this;
  }
  layer& with_gram(Eigen::MatrixXd g) { return with_gram(std::make_shared<const Eigen::MatrixXd>(std::move(g))); }
  // Attaches the diagonal importance vector diag(X X^T).
  layer& with_importance(std::shared_ptr<const Eigen::VectorXd> d) {
    importance = std::move(d);
    return *this;
  }
  layer& with_importance(Eigen::VectorXd d) {
    return with_importance(std::make_shared<const Eigen::VectorXd>(std::move(d)));
  }
  // Attaches X (cols x tokens, column-major; the memory must outlive the analysis).
  layer& with_activations(const float* x, index_t n_tokens) {
    activations = x;
    tokens = n_tokens;
    return *this;
  }
  layer& with_activations(const activation_map& x) {
    if (x.rows() != cols)
      throw error(errc::shape_mismatch, "layer '" + name + "': activations have " + std::to_string(x.rows()) +
                                            " features per token, expected " + std::to_string(cols));
    return with_activations(x.data(), x.cols());
  }
  layer& with_activations(const Eigen::MatrixXf& x) { return with_activations(activation_map(x.data(), x.rows(), x.cols())); }
  layer& with_activations(Eigen::MatrixXf&&) = delete;  // a view of a temporary would dangle
};

// A view of w (which must outlive the view); throws on an empty matrix.
[[nodiscard]] inline layer make_layer(std::string name, Eigen::Ref<row_matrix> w) {
  if (w.size() == 0) throw error(errc::empty_input, "layer '" + name + "': empty weight");
  layer l;
  l.name = std::move(name);
  l.data = w.data();
  l.rows = w.rows();
  l.cols = w.cols();
  l.stride = w.outerStride();
  return l;
}

// A view of rows x cols floats at data, rows `stride` floats apart (0: cols).
[[nodiscard]] inline layer make_layer(std::string name, float* data, index_t rows, index_t cols, index_t stride = 0) {
  if (data == nullptr || rows <= 0 || cols <= 0)
    throw error(errc::empty_input, "layer '" + name + "': no weight data (" + std::to_string(rows) + "x" +
                                       std::to_string(cols) + ")");
  layer l;
  l.name = std::move(name);
  l.data = data;
  l.rows = rows;
  l.cols = cols;
  l.stride = stride;
  return l;
}

// Sums X X^T over batches of activations (each in_features x tokens) in double, so that a Gram over
// many tokens never needs all of them in memory at once.
class gram_accumulator {
 public:
  explicit gram_accumulator(index_t in_features)
      : g_(Eigen::MatrixXd::Zero(checked(in_features), checked(in_features))) {}
  // Adds a batch X (in_features x tokens); throws on a shape mismatch or a non-finite value.
  template <class Derived>
  void add(const Eigen::MatrixBase<Derived>& x) {
    if (x.rows() != g_.rows())
      throw error(errc::shape_mismatch, "gram_accumulator: batch has " + std::to_string(x.rows()) +
                                            " features per token, expected " + std::to_string(g_.rows()));
    if (!x.allFinite()) throw error(errc::non_finite, "gram_accumulator: activations contain NaN or Inf");
    constexpr index_t chunk = 256;  // bounds the double copy of the batch
    for (index_t t0 = 0; t0 < x.cols(); t0 += chunk) {
      const Eigen::MatrixXd xd = x.middleCols(t0, std::min(chunk, x.cols() - t0)).template cast<double>();
      g_.selfadjointView<Eigen::Lower>().rankUpdate(xd);
    }
    tokens_ += x.cols();
  }
  [[nodiscard]] index_t tokens() const noexcept { return tokens_; }
  // G = sum of X X^T over every batch added (symmetric, both triangles filled).
  [[nodiscard]] Eigen::MatrixXd gram() const {
    Eigen::MatrixXd g = g_.selfadjointView<Eigen::Lower>();
    return g;
  }
  // diag(G): per input feature, the sum of its squares over every token (an importance vector).
  [[nodiscard]] Eigen::VectorXd importance() const { return g_.diagonal(); }

 private:
  static index_t checked(index_t in_features) {
    if (in_features <= 0) throw error(errc::empty_input, "gram_accumulator: in_features must be positive");
    return in_features;
  }

  Eigen::MatrixXd g_;  // lower triangle valid
  index_t tokens_ = 0;
};

// G = X X^T (in double) of activations X, in_features x tokens.
template <class Derived>
[[nodiscard]] Eigen::MatrixXd gram_from_activations(const Eigen::MatrixBase<Derived>& x) {
  if (x.size() == 0) throw error(errc::empty_input, "gram_from_activations: no activations");
  gram_accumulator acc(x.rows());
  acc.add(x);
  return acc.gram();
}

// diag(X X^T) (in double) of activations X, in_features x tokens.
template <class Derived>
[[nodiscard]] Eigen::VectorXd importance_from_activations(const Eigen::MatrixBase<Derived>& x) {
  if (x.size() == 0) throw error(errc::empty_input, "importance_from_activations: no activations");
  if (!x.allFinite()) throw error(errc::non_finite, "importance_from_activations: activations contain NaN or Inf");
  return x.template cast<double>().rowwise().squaredNorm();
}

// Checks one layer view: name, weight, and its statistic's shape and values.
inline void validate(const layer& l) {
  if (l.name.empty()) throw error(errc::invalid_argument, "a layer has no name");
  if (l.data == nullptr || l.rows <= 0 || l.cols <= 0)
    throw error(errc::empty_input, "layer '" + l.name + "': no weight data (" + std::to_string(l.rows) + "x" +
                                       std::to_string(l.cols) + ")");
  if (l.stride != 0 && l.stride < l.cols)
    throw error(errc::invalid_argument, "layer '" + l.name + "': row stride " + std::to_string(l.stride) +
                                            " is smaller than its " + std::to_string(l.cols) + " columns");
  const int n_stats = (l.gram ? 1 : 0) + (l.importance ? 1 : 0) + (l.activations ? 1 : 0);
  if (n_stats > 1)
    throw error(errc::invalid_argument,
                "layer '" + l.name + "': set at most one of gram, activations and importance");
  const std::string cols = std::to_string(l.cols);
  if (l.gram) {
    if (l.gram->rows() != l.cols || l.gram->cols() != l.cols)
      throw error(errc::shape_mismatch, "layer '" + l.name + "': Gram matrix is " + std::to_string(l.gram->rows()) +
                                            "x" + std::to_string(l.gram->cols()) + ", expected " + cols + "x" + cols);
    if (!l.gram->allFinite()) throw error(errc::non_finite, "layer '" + l.name + "': Gram matrix has NaN or Inf");
  }
  if (l.importance) {
    if (l.importance->size() != l.cols)
      throw error(errc::shape_mismatch, "layer '" + l.name + "': importance has " +
                                            std::to_string(l.importance->size()) + " entries, expected " + cols);
    if (!l.importance->allFinite() || (l.importance->array() < 0.0).any())
      throw error(errc::invalid_argument, "layer '" + l.name + "': importance must be finite and non-negative");
  }
  if (l.activations) {
    if (l.tokens <= 0)
      throw error(errc::empty_input, "layer '" + l.name + "': activations with " + std::to_string(l.tokens) + " tokens");
    if (!l.activation_matrix().allFinite())
      throw error(errc::non_finite, "layer '" + l.name + "': activations contain NaN or Inf");
  }
}

// Checks a model view: every layer valid, names unique.
inline void validate(std::span<const layer> layers) {
  std::unordered_set<std::string> names;
  for (const layer& l : layers) {
    validate(l);
    if (!names.insert(l.name).second) throw error(errc::invalid_argument, "layer name '" + l.name + "' appears twice");
  }
}

}  // namespace mixprec
