// A view of a user's model for sensitivity analysis: named weight matrices the user owns (no copies),
// each with optional calibration statistics of its input activations.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mixprec/config.hpp"
#include "mixprec/error.hpp"

namespace mixprec {

// One quantizable weight: (out x in) row-major floats owned by the user, plus optional input statistics
// for the output-aware proxy ||W X - Q(W) X||^2: the Gram matrix G = X^T X of its inputs (in x in, X
// holding one token per row), or only its diagonal (an importance vector, as llama.cpp's imatrix).
struct layer_ref {
  std::string name;
  float* data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  std::optional<Eigen::MatrixXd> gram;
  std::optional<Eigen::VectorXd> importance;

  // The weight as an Eigen map onto the user's memory.
  [[nodiscard]] Eigen::Map<row_matrix> weight() const { return {data, rows, cols}; }
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
};

// A layer_ref viewing w (which must outlive the view).
[[nodiscard]] inline layer_ref make_layer(std::string name, row_matrix& w) {
  if (w.size() == 0) throw error(errc::empty_input, "layer '" + name + "': empty weight");
  return {std::move(name), w.data(), w.rows(), w.cols(), std::nullopt, std::nullopt};
}

// The Gram matrix X^T X (in double) of activations X with one token per row.
template <class Derived>
[[nodiscard]] Eigen::MatrixXd gram_from_activations(const Eigen::MatrixBase<Derived>& x) {
  if (x.size() == 0) throw error(errc::empty_input, "gram_from_activations: no activations");
  const Eigen::MatrixXd xd = x.template cast<double>();
  Eigen::MatrixXd g = Eigen::MatrixXd::Zero(xd.cols(), xd.cols());
  g.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
  return g.selfadjointView<Eigen::Lower>();
}

// Checks a model view: names unique and non-empty, shapes positive, statistics sized to cols.
inline void validate(const std::vector<layer_ref>& layers) {
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const layer_ref& l = layers[i];
    if (l.name.empty()) throw error(errc::invalid_argument, "layer " + std::to_string(i) + " has no name");
    if (l.data == nullptr || l.rows <= 0 || l.cols <= 0)
      throw error(errc::empty_input, "layer '" + l.name + "': no weight data");
    if (l.gram && (l.gram->rows() != l.cols || l.gram->cols() != l.cols))
      throw error(errc::shape_mismatch, "layer '" + l.name + "': Gram matrix is " + std::to_string(l.gram->rows()) +
                                            "x" + std::to_string(l.gram->cols()) + ", expected " +
                                            std::to_string(l.cols) + "x" + std::to_string(l.cols));
    if (l.importance && l.importance->size() != l.cols)
      throw error(errc::shape_mismatch, "layer '" + l.name + "': importance has " +
                                            std::to_string(l.importance->size()) + " entries, expected " +
                                            std::to_string(l.cols));
    for (std::size_t j = 0; j < i; ++j)
      if (layers[j].name == l.name) throw error(errc::invalid_argument, "layer name '" + l.name + "' appears twice");
  }
}

}  // namespace mixprec
