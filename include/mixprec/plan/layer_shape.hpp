// What the planner needs of a model: layer shapes (to plan) and weights by name (to quantize by a plan).
//
// Any type with a `name` member and a `weight()` that converts to row_matrix_ref is a WeightView: the
// library's own view, mixprec::layer (layer.hpp, listed by mixprec::model in model.hpp), or a user's
// own layer type, without conversion. A model is any range of WeightViews with a value_type.
#pragma once

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/model.hpp"

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
static_assert(WeightView<layer>);

// The shapes of a model's layers, in order (a mixprec::model, a std::vector<layer>, or a range of yours).
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
