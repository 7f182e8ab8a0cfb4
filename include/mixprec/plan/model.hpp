// The minimal model view the planner needs: layer shapes (to plan) and named weights (to apply a plan).
//
// Any type with a `name` member and a `weight()` that converts to row_matrix_ref is a WeightView, so a
// user's own layer type (or sensitivity/'s layer view) works without conversion; named_weight is the
// plain one provided here.
#pragma once

#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"

namespace mixprec {

// A layer as the planner sees it: a name and the shape of its weight (out_features x in_features).
struct layer_shape {
  std::string name;
  index_t rows = 0;
  index_t cols = 0;
  [[nodiscard]] index_t size() const noexcept { return rows * cols; }
  friend bool operator==(const layer_shape&, const layer_shape&) = default;
};

template <class V>
concept WeightView = requires(const V& v) {
  { v.name } -> std::convertible_to<std::string_view>;
  { v.weight() } -> std::convertible_to<row_matrix_ref>;
};

// A named view of a row-major FP32 weight the caller owns (no copy; the weight must outlive the view).
struct named_weight {
  using map_type = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

  std::string name;
  const float* data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t stride = 0;  // floats between row starts; 0 means cols

  [[nodiscard]] map_type weight() const { return {data, rows, cols, Eigen::OuterStride<>(stride ? stride : cols)}; }
};
static_assert(WeightView<named_weight>);

// A model as a list of named weights (views), what analyze_weights, shapes_of and quantize_model take.
class named_weights {
 public:
  using value_type = named_weight;
  using const_iterator = std::vector<named_weight>::const_iterator;

  named_weights() = default;
  named_weights(std::initializer_list<named_weight> layers) : layers_(layers) {}

  // Adds a view of w, which must outlive the model (a temporary is refused at compile time).
  named_weights& add(std::string name, const row_matrix& w) {
    layers_.push_back({std::move(name), w.data(), w.rows(), w.cols(), w.cols()});
    return *this;
  }
  named_weights& add(std::string name, row_matrix&& w) = delete;
  void push_back(named_weight w) { layers_.push_back(std::move(w)); }

  [[nodiscard]] std::size_t size() const noexcept { return layers_.size(); }
  [[nodiscard]] bool empty() const noexcept { return layers_.empty(); }
  [[nodiscard]] named_weight& operator[](std::size_t i) noexcept { return layers_[i]; }
  [[nodiscard]] const named_weight& operator[](std::size_t i) const noexcept { return layers_[i]; }
  [[nodiscard]] const_iterator begin() const noexcept { return layers_.begin(); }
  [[nodiscard]] const_iterator end() const noexcept { return layers_.end(); }

 private:
  std::vector<named_weight> layers_;
};

// A view of w, which must outlive it (a temporary is refused at compile time).
[[nodiscard]] inline named_weight weight_view(std::string name, const row_matrix& w) {
  return {std::move(name), w.data(), w.rows(), w.cols(), w.cols()};
}
named_weight weight_view(std::string name, row_matrix&& w) = delete;
// A view of rows x cols floats at data, rows `stride` floats apart (0: cols).
[[nodiscard]] inline named_weight weight_view(std::string name, const float* data, index_t rows, index_t cols,
                                              index_t stride = 0) {
  return {std::move(name), data, rows, cols, stride};
}

// The shapes of a model's layers, in order.
template <class Model>
  requires WeightView<typename Model::value_type>
[[nodiscard]] std::vector<layer_shape> shapes_of(const Model& model) {
  std::vector<layer_shape> out;
  for (const auto& l : model) {
    const auto w = l.weight();
    out.push_back({std::string(std::string_view(l.name)), w.rows(), w.cols()});
  }
  return out;
}

}  // namespace mixprec
